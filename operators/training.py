"""``finetune_model``: fine-tune RAM, RAM++ or Tag2Text on the current view and write a model folder.

Scheduled only (training takes minutes to days). Thin on purpose: the form is built from the fine-tuning job's
settings and the recipe's (``FinetuneJob``, ``FinetuneSettings``), the work is ``fiftyone_ram.training``'s. The
recipe's fields are per recipe (upstream's, or the weak-start one): each shows its own values, so that choosing
the weak start is never undone by the other recipe's pre-filled numbers.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

#: The recipe's settings the form shows (the rest keep the recipe's values).
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "head_lr", "freeze", "grad_checkpointing", "train_precision",
                 "teacher")


def _recipe_key(weak: bool, name: str) -> str:
    return f"{'weak' if weak else 'upstream'}_{name}"


class FinetuneModel(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="finetune_model",
            label="Fine-tune a tagger (Recognize Anything)",
            description="Fine-tune RAM, RAM++ or Tag2Text on this view's tags or captions; writes a model folder",
            dynamic=True,
            allow_immediate_execution=False,
            allow_delegated_execution=True,
            default_choice_to_delegated=True,
        )

    def resolve_input(self, ctx):
        from fiftyone_ram.app import field_choices as fc
        from fiftyone_ram.app import forms
        from fiftyone_ram.training.job import FinetuneJob
        from fiftyone_ram.training.settings import WEAK_START, FinetuneSettings

        params = ctx.params
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Train on")
        family, complete = forms.add_tagger_inputs(inputs, params, precision=False)
        forms.add_vocabulary_inputs(inputs, params, family)  # new tags are learned from their CLIP queries
        forms.add_setting(inputs, FinetuneJob, "output_dir", params, required=True,
                          description="The model folder to write, on the machine that runs the training")
        tag_fields = fc.label_fields(ctx.dataset, fc.TAG_TYPES) + fc.string_list_fields(ctx.dataset)
        forms.add_setting(inputs, FinetuneJob, "tag_field", params, choices=tag_fields)
        forms.add_setting(inputs, FinetuneJob, "caption_field", params, choices=fc.text_fields(ctx.dataset))
        inputs.str("validation_tag", required=False, label="Validation sample tag (optional)",
                   description="Samples with this tag are scored after every epoch (never trained on); the best "
                               "epoch is kept and its thresholds tuned")
        forms.add_setting(inputs, FinetuneJob, "validation_field", params, required=False, choices=tag_fields)
        forms.add_setting(inputs, FinetuneJob, "weak_start", params)
        weak = bool(params.get("weak_start"))
        recipe = FinetuneSettings.from_dict(WEAK_START if weak else {})
        for name in RECIPE_FIELDS:
            value = getattr(recipe, name)
            changes = {} if value in (None, ()) else {"default": list(value) if isinstance(value, tuple) else value}
            forms.add_setting(inputs, FinetuneSettings, name, params, key=_recipe_key(weak, name), **changes)
        inputs.bool("resume", default=False, label="Resume the run in the output folder")
        inputs.bool("overwrite", default=False, label="Replace a previous run's files in the output folder")
        if not (params.get("tag_field") or params.get("caption_field")):
            inputs.view("what", types.Notice(label="Choose a tags field, a caption field or both"))
            complete = False
        if not complete:
            inputs.view("incomplete", types.Notice(label="Complete the form to fine-tune"))
        return types.Property(inputs, view=types.View(label="Fine-tune with Recognize Anything"))

    def execute(self, ctx):
        from fiftyone_ram.app import execution, forms
        from fiftyone_ram.training.job import FinetuneJob

        params = ctx.params
        weak = bool(params.get("weak_start"))
        # The form keys each recipe's values apart (switching recipes shows its defaults); a caller of
        # execute_operator may give the plain names.
        given = {name: params.get(_recipe_key(weak, name), params.get(name)) for name in RECIPE_FIELDS}
        changes = {name: value for name, value in given.items() if value not in (None, "")}
        if "freeze" in changes:
            changes["freeze"] = tuple(changes["freeze"])
        names = ("output_dir", "tag_field", "caption_field", "validation_field", "weak_start")
        job = forms.job_from_form(FinetuneJob, params, names,
                                  resume=bool(params.get("resume")), overwrite=bool(params.get("overwrite")),
                                  changes=changes)

        def work(progress):
            samples, validation = ctx.target_view(), None
            if params.get("validation_tag"):  # never trained on what it is validated on
                validation = ctx.dataset.match_tags(params["validation_tag"])
                samples = samples.match_tags(params["validation_tag"], bool=False)
            model = forms.tagger_spec_from_form(params, vocabulary=forms.vocabulary_from_form(params))
            result = job.run(samples, model, validation=validation,
                             progress=progress or False)
            return {"output_dir": str(result.output_dir), "steps": result.steps, "best_epoch": result.best_epoch,
                    "best_mAP": (result.best or {}).get("mAP")}

        return execution.run(ctx, work, label="Fine-tuning")

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("output_dir", label="Model folder")
        outputs.int("steps", label="Steps")
        outputs.float("best_mAP", label="Best validation mAP")
        return types.Property(outputs, view=types.View(label="Fine-tuning finished"))


def register(p):
    p.register(FinetuneModel)
