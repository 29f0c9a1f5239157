"""``tag_images``: tag the dataset, the current view or the selected samples with RAM, RAM++ or Tag2Text.

Thin on purpose (FiftyOne re-executes plugin modules on every request): the work is done by
``fiftyone_ram.fiftyone`` (the installed package), imported inside the methods.
"""

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

EXISTING = {"resume": "Tag only the samples without labels", "overwrite": "Replace their labels"}


def _package():
    try:
        import fiftyone_ram.fiftyone as forf
        import fiftyone_ram.driver as frd
        from fiftyone_ram.app import forms
    except ImportError as exc:
        raise ImportError(f"tag_images needs the fiftyone-ram package: pip install fiftyone-ram ({exc})") from exc
    return forf, frd, forms


class TagImages(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="tag_images",
            label="Tag images (Recognize Anything)",
            description="Tag images with RAM, RAM++ or Tag2Text: one label per tag with its confidence",
            dynamic=True,
            execute_as_generator=True,  # immediate runs from the App stream their progress
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
            resolve_execution_options_on_change=True,  # the target view's size decides
        )

    def resolve_execution_options(self, ctx):
        from fiftyone_ram.app import execution

        return execution.execution_options(len(ctx.target_view()))

    def resolve_input(self, ctx):
        _, _, forms = _package()
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Tag")

        model_choices = types.DropdownView()
        for key, label in forms.model_choices().items():
            model_choices.add_choice(key, label=label)
        inputs.enum("model", model_choices.values(), default=forms.default_model(), required=True,
                    label="Model", view=model_choices)
        model = ctx.params.get("model") or forms.default_model()
        complete = forms.add_tagger_options(inputs, ctx.params, family=forms.model_family(model),
                                            custom=model == forms.CUSTOM)

        field = inputs.str("label_field", default="ram", required=True, label="Output field",
                           description="Classifications field for the tags; unreadable images get "
                                       "<field>_error")
        label_field = ctx.params.get("label_field") or "ram"
        if label_field in ctx.dataset.get_field_schema():
            existing = types.RadioGroup()
            for key, label in EXISTING.items():
                existing.add_choice(key, label=label)
            prop = inputs.enum("existing", existing.values(), required=True,
                               label=f"'{label_field}' already exists", view=existing)
            if ctx.params.get("existing") not in EXISTING:
                prop.invalid = True
                prop.error_message = "Choose whether to resume or to replace the existing labels"
                complete = False
        elif not label_field.isidentifier():
            field.invalid = True
            field.error_message = "Use letters, digits and underscores"
            complete = False

        inputs.bool("sample_tags", default=False, label="Also add the tags to the samples' tags",
                    description="Added to each sample's tags (existing tags are kept)")
        inputs.bool("store_logits", default=False, label="Store logits")
        inputs.int("batch_size", default=8, min=1, label="Batch size")
        inputs.int("num_workers", default=None, min=0, required=False, label="Image loading workers",
                   description="Delegated runs only (immediate runs load in the App's process)")
        forms.add_engine_options(inputs, ctx, "tagging")
        from fiftyone_ram.app import execution

        if not execution.add_execution_notice(inputs, len(ctx.target_view()), _cli_command(ctx, label_field)):
            complete = False
        if not complete:
            inputs.view("incomplete", types.Notice(label="Complete the form to tag"))
        return types.Property(inputs, view=types.View(label="Tag images with Recognize Anything"))

    def execute(self, ctx):
        """Tag the target view. From the App's form an immediate run streams its progress (a generator of
        progress messages, then the summary); a delegated run reports through ``ctx.set_progress``; a Python
        caller gets the summary as the result."""
        forf, frd, forms = _package()
        from fiftyone_ram.errors import UserError
        from fiftyone_ram.app import execution

        params = ctx.params
        view = ctx.target_view()
        label_field = params.get("label_field") or "ram"
        count = len(view)
        if not ctx.delegated and count > execution.immediate_limit():
            raise UserError(execution.too_large_message(count, _cli_command(ctx, label_field)))
        model_name = params.get("model") or forms.default_model()
        kwargs = forms.tagger_kwargs(params)
        if model_name != forms.CUSTOM:
            kwargs["model"] = model_name

        engine, ray_options = forms.engine_options(params, ctx.delegated)

        def work(progress):
            model = forf.load_model(**kwargs)
            report = None
            if progress is not None:
                report = fo.report_progress(lambda pb: progress(pb.progress, "Tagging"), dt=1.0)
            existing = params.get("existing")
            summary = frd.tag_samples(
                view, model, label_field,
                overwrite=existing == "overwrite", resume=existing == "resume",
                sample_tags=bool(params.get("sample_tags")), store_logits=bool(params.get("store_logits")),
                batch_size=params.get("batch_size") or 8,
                # Immediate runs execute inside the App server: no worker processes there (@voxel51/zoo does
                # the same)
                num_workers=params.get("num_workers") if ctx.delegated else 0,
                engine=engine, ray_options=ray_options, progress=report)
            return _result(summary)

        if execution.streams_progress(ctx):
            return execution.stream_progress(ctx, work, label="Tagging", finish=lambda result: self._show(ctx, result))
        result = work((lambda fraction, label: ctx.set_progress(progress=fraction, label=label))
                      if ctx.delegated else None)
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return result

    def _show(self, ctx, result):
        """The end of a streamed run: reload the grid and show the summary in the form."""
        yield ctx.trigger("reload_dataset")
        yield ctx.ops.show_output(outputs=self.resolve_output(ctx).to_json(), results=result)

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("label_field", label="Field")
        outputs.int("tagged", label="Tagged")
        outputs.int("skipped", label="Already tagged (skipped)")
        outputs.int("failed_count", label="Unreadable images (see <field>_error)")
        return types.Property(outputs, view=types.View(label="Tagging finished"))


def _result(summary) -> dict:
    result = summary.to_dict()
    result["failed_count"] = len(summary.failed)
    result["failed"] = dict(list(summary.failed.items())[:100])  # the error field holds them all
    return result


def _cli_command(ctx, label_field: str) -> str:
    """The command that tags the same dataset outside the App (for views too large to tag inside it)."""
    return f"fiftyone-ram tag --dataset {ctx.dataset.name} --field {label_field} --resume"


def register(p):
    p.register(TagImages)
