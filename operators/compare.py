"""Operator ``compare_taggers``: the RAM paper's comparison (RAM, RAM++, Tag2Text beside CLIP, SigLIP, BLIP and
Grounding-DINO) on the current view, from the App.

Thin on purpose (FiftyOne re-executes plugin modules on every request): the form is built from the job's settings
(``CompareJob``), the work is ``fiftyone_ram.evaluation.compare``. It runs several models over the view, so it
is scheduled (delegated) by default where the App can schedule; when done it opens the Tag evaluation panel on
the comparison's evaluation runs (their PR curves overlaid, their figures side by side).
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

PANEL = "tag_evaluation_panel"
#: The settings the form shows, in order (the benchmark's are the command line's).
FORM_SETTINGS = ("name", "classes", "threshold_rule", "val_tag", "templates", "text_encoder", "batch_size", "device",
                 "rerun", "figure")
#: The table's columns: (key of a model's row, heading).
COLUMNS = (("model", "Model"), ("mAP", "mAP"), ("CP", "CP"), ("CR", "CR"), ("CF1", "CF1"), ("OP", "OP"),
           ("OR", "OR"), ("images_per_second", "Images/s"), ("peak_memory_mb", "Peak MB"))


class CompareTaggers(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="compare_taggers",
            label="Compare taggers (RAM, CLIP, SigLIP, BLIP, Grounding-DINO)",
            description="Score several taggers on this view, evaluate each, and compare them in one table",
            dynamic=True,
            execute_as_generator=True,  # immediate runs from the App show their progress and their failures
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
            resolve_execution_options_on_change=True,
        )

    def resolve_execution_options(self, ctx):
        """Scheduling is the default only where the App can schedule (see ``fiftyone_ram.app.execution``)."""
        from fiftyone_ram.app import execution

        return execution.execution_options(len(ctx.target_view()), prefer_delegated=True)

    def resolve_input(self, ctx):
        from fiftyone_ram.app import field_choices as fc
        from fiftyone_ram.app import forms
        from fiftyone_ram.evaluation.compare_job import CompareJob

        params = ctx.params
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Compare taggers on")
        models = forms.add_setting(inputs, CompareJob, "models", params)
        bad = _bad_model(params.get("models"))
        if bad:
            models.invalid, models.error_message = True, bad
        gt_fields = fc.label_fields(ctx.dataset, fc.TAG_TYPES) + fc.string_list_fields(ctx.dataset)
        if not gt_fields:
            inputs.view("no_gt", types.Warning(label="No ground truth in this dataset (Classifications, "
                                                     "Detections, ... or a list of strings)"))
            return types.Property(inputs)
        default = CompareJob.default("gt_field")
        forms.add_setting(inputs, CompareJob, "gt_field", params, choices=gt_fields,
                          **({"default": default} if default in gt_fields else {}))
        forms.add_settings(inputs, CompareJob, FORM_SETTINGS, params)
        inputs.bool("open_panel", default=True, label="Open the Tag evaluation panel when done")
        return types.Property(inputs, view=types.View(label="Compare taggers"))

    def execute(self, ctx):
        from fiftyone_ram.app import execution, forms
        from fiftyone_ram.evaluation.compare_job import CompareJob

        params = ctx.params
        job = forms.job_from_form(CompareJob, params, ("models", "gt_field", *FORM_SETTINGS))

        def work(progress):
            from fiftyone_ram.evaluation import compare

            comparison = compare(ctx.target_view(), job=job, progress=progress)
            return {"name": job.name, "models": comparison.shown_rows(), "eval_keys": [m.eval_key for m in comparison.models],
                    "figure": str(comparison.figure), "tuned_on": comparison.tuned_on}

        def show(result):
            yield ctx.trigger("reload_dataset")
            if params.get("open_panel", True):
                keys = result["eval_keys"]
                yield from execution.show_panel(ctx, self, PANEL,
                                                {"eval_key": keys[0], "chosen": True, "compare_keys": keys})
            yield ctx.ops.show_output(outputs=self.resolve_output(ctx).to_json(), results=result)

        return execution.run(ctx, work, label="Comparing taggers", show=show)

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("name", label="Comparison")
        table = types.TableView()
        for key, label in COLUMNS:
            table.add_column(key, label=label)
        outputs.list("models", types.Object(), label="Models (figures in %)", view=table)
        outputs.str("tuned_on", label="Thresholds tuned on")
        outputs.str("figure", label="PR-curve figure")
        return types.Property(outputs, view=types.View(label="Comparison"))


def _bad_model(values) -> str | None:
    """The one line a model entry of the form is refused with (None: all parse)."""
    from fiftyone_ram.comparators import parse_choices
    from fiftyone_ram.errors import OptionError

    if not values:
        return None
    try:
        parse_choices([v for v in values if v])
    except OptionError as exc:
        return str(exc)
    return None


def register(p) -> None:
    p.register(CompareTaggers)
