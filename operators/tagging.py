"""``tag_images``: tag the dataset, the current view or the selected samples with RAM, RAM++ or Tag2Text.

Thin on purpose (FiftyOne re-executes plugin modules on every request): the form is built from the tagging job's
settings and the model choice (``fiftyone_ram.app.forms``), the work is ``fiftyone_ram.driver``'s, imported
inside the methods.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

EXISTING = {"resume": "Tag only the samples without labels", "overwrite": "Replace their labels"}


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
        from fiftyone_ram.app import execution, forms
        from fiftyone_ram.app.field_choices import label_fields
        from fiftyone_ram.driver.tagging import TagJob

        params = ctx.params
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Tag")
        family, complete = forms.add_tagger_inputs(inputs, params, thresholds=False)
        complete = forms.add_output_options(inputs, params, family) and complete
        forms.add_vocabulary_inputs(inputs, params, family)

        field = forms.add_setting(inputs, TagJob, "label_field", params)
        label_field = params.get("label_field") or TagJob.default("label_field")
        schema = ctx.dataset.get_field_schema()
        if not label_field.isidentifier():
            field.invalid, field.error_message = True, "Use letters, digits and underscores"
            complete = False
        elif label_field in schema and label_field not in label_fields(ctx.dataset, ("Classifications",)):
            field.invalid = True
            field.error_message = f"'{label_field}' holds something else than tags: choose another name"
            complete = False
        elif label_field in schema:
            existing = types.RadioGroup()
            for key, text in EXISTING.items():
                existing.add_choice(key, label=text)
            prop = inputs.enum("existing", existing.values(), required=True,
                               label=f"'{label_field}' already exists", view=existing)
            if params.get("existing") not in EXISTING:
                prop.invalid = True
                prop.error_message = "Choose whether to resume or to replace the existing labels"
                complete = False
        forms.add_settings(inputs, TagJob, ("sample_tags", "store_logits", "batch_size", "num_workers"), params)
        forms.add_executor_inputs(inputs, ctx, "tagging")
        if not execution.add_execution_notice(inputs, len(ctx.target_view()), _cli_command(ctx, label_field)):
            complete = False
        if not complete:
            inputs.view("incomplete", types.Notice(label="Complete the form to tag"))
        return types.Property(inputs, view=types.View(label="Tag images with Recognize Anything"))

    def execute(self, ctx):
        """Tag the target view. From the App's form an immediate run streams its progress, then the summary; a
        scheduled run reports through ``ctx.set_progress``; a Python caller gets the summary as the result. A
        failure is one line wherever the run was started (``fiftyone_ram.app.execution.run``)."""
        from fiftyone_ram.app import execution, forms
        from fiftyone_ram.driver.tagging import TagJob
        from fiftyone_ram.errors import UserError
        from fiftyone_ram.fiftyone import load_model

        params = ctx.params
        view = ctx.target_view()
        existing = params.get("existing")
        job = forms.job_from_form(TagJob, params, ("label_field", "sample_tags", "store_logits", "batch_size",
                                                   "num_workers"),
                                  resume=existing == "resume", overwrite=existing == "overwrite",
                                  # Immediate runs execute inside the App server: no worker processes there
                                  **({} if ctx.delegated else {"num_workers": 0}),
                                  **forms.executor_values(params, ctx.delegated))
        if not ctx.delegated and len(view) > execution.immediate_limit():
            raise UserError(execution.too_large_message(len(view), _cli_command(ctx, job.label_field)))

        def work(progress):
            job.check(view)  # before the model loads: an empty view, a field of another type...
            model = load_model(**forms.model_kwargs(params))
            summary = job.run(view, model, progress=progress or False)
            if summary.problem:
                raise UserError(summary.problem)
            return _result(summary)

        return execution.run(ctx, work, label="Tagging",
                             show=lambda result: execution.show_result(ctx, self, result, reload=True))

    def resolve_output(self, ctx):
        from fiftyone_ram.driver.tagging import TagJob, error_field

        field = (ctx.results or {}).get("label_field") or ctx.params.get("label_field") or TagJob.default("label_field")
        outputs = types.Object()
        outputs.str("label_field", label="Field")
        outputs.int("tagged", label="Tagged")
        outputs.int("skipped", label="Already tagged (skipped)")
        outputs.int("failed_count", label=f"Unreadable images (the reason is in each one's '{error_field(field)}')")
        outputs.int("untagged", label="Not tagged (their batch failed in the model)")
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
