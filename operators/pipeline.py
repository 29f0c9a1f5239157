"""``run_pipeline``: the RAM paradigm on this dataset as one recorded pipeline (captions → tags → a first model →
generate and clean → review → retrain → fine-tune → evaluate, round after round).

Scheduled only (it trains models). Thin on purpose: the form is built from the pipeline spec's settings
(``PipelineJob``) and the starting model's choice, the stages' own settings come as a spec file or as JSON, and
the work is ``fiftyone_ram.pipeline.run``'s. The Pipeline panel shows the per-round report.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

#: The spec's settings the form shows, in order.
FORM_SETTINGS = ("output_dir", "prefix", "caption_field", "tag_field", "reference_field", "samples", "validation",
                 "validation_field", "finetune_view", "finetune_field", "rounds", "stages", "retrain_from", "review",
                 "accept_reasons", "min_outlier_score", "parser_tags")
#: Settings whose choices are fields of the dataset: (setting, kind of field).
FIELD_SETTINGS = {"caption_field": "text", "tag_field": "tags", "reference_field": "tags", "validation_field": "tags",
                  "finetune_field": "tags"}


class RunPipeline(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="run_pipeline",
            label="Run the RAM pipeline (Recognize Anything)",
            description="Parse captions, train, generate and clean tags, review, retrain and fine-tune, round after "
                        "round; every stage recorded, resumable",
            dynamic=True,
            allow_immediate_execution=False,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_input(self, ctx):
        from fiftyone_ram.app import field_choices as fc
        from fiftyone_ram.app import forms
        from fiftyone_ram.pipeline.spec import PipelineJob

        params = ctx.params
        inputs = types.Object()
        inputs.str("spec_file", required=False, label="Spec file (optional)",
                   description="A YAML or JSON pipeline spec on the machine that runs the pipeline; the fields "
                               "below replace its values")
        family, _ = forms.add_tagger_inputs(inputs, params, label="Starting model", precision=False)
        forms.add_vocabulary_inputs(inputs, params, family)
        choices = {"text": fc.text_fields(ctx.dataset),
                   "tags": fc.label_fields(ctx.dataset, fc.TAG_TYPES) + fc.string_list_fields(ctx.dataset)}
        for name in FORM_SETTINGS:
            kind = FIELD_SETTINGS.get(name)
            forms.add_setting(inputs, PipelineJob, name, params, required=name == "output_dir" and not
                              params.get("spec_file"), **({"choices": choices[kind]} if kind else {}))
        inputs.str("stage_settings", required=False, label="Stage settings (JSON, optional)",
                   description='The stages\' own settings, e.g. {"train": {"weak_start": true, "epochs": 4}, '
                               '"clean": {"regions_field": "detections"}} (keys: train, retrain, finetune, '
                               'generate, clean, evaluate)')
        inputs.bool("resume", default=False, label="Resume the pipeline of this prefix where it stopped")
        return types.Property(inputs, view=types.View(label="Run the RAM pipeline"))

    def execute(self, ctx):
        import json

        from fiftyone_ram.app import execution, forms
        from fiftyone_ram.pipeline.run import run
        from fiftyone_ram.pipeline.spec import PipelineError, PipelineJob

        params = ctx.params
        values = forms.form_values(PipelineJob, params, FORM_SETTINGS)
        if params.get("stage_settings"):
            try:
                values.update(json.loads(params["stage_settings"]))
            except json.JSONDecodeError as exc:
                raise PipelineError(f"stage settings: not valid JSON ({exc})") from None
        if (params.get("model") and not params.get("spec_file")) or params.get("checkpoint_path"):
            vocabulary = forms.vocabulary_from_form(params)
            values["model"] = forms.tagger_spec_from_form(params, vocabulary=vocabulary).to_dict()

        def work(progress):
            result = run(params.get("spec_file") or None, dataset=ctx.dataset.name,
                         resume=bool(params.get("resume")), progress=progress or False, **values)
            return result.to_dict()

        return execution.run(ctx, work, label="RAM pipeline")

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("status", label="Status")
        outputs.int("published", label="Last round published")
        outputs.str("waiting", label="Waiting for")
        return types.Property(outputs, view=types.View(label="Pipeline"))


def register(p):
    p.register(RunPipeline)
