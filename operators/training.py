"""``finetune_model``: fine-tune RAM, RAM++ or Tag2Text on the current view and write a model folder.

Delegated only (training takes minutes to days). Thin on purpose: ``fiftyone_ram.training.finetune`` does the
work, with upstream's recipe unless the form says otherwise.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

PARTS = ("backbone", "projection", "tagging_head", "captioning")


def _package():
    try:
        from fiftyone_ram.app import forms
        from fiftyone_ram.training import WEAK_START, finetune
    except ImportError as exc:
        raise ImportError(f"finetune_model needs the fiftyone-ram package: pip install fiftyone-ram ({exc})") from exc
    return forms, finetune, WEAK_START


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
        forms, _, _ = _package()
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Train on")
        choices = types.DropdownView()
        for key, label in forms.model_choices().items():
            choices.add_choice(key, label=label)
        inputs.enum("model", choices.values(), default=forms.default_model(), required=True, label="Model",
                    view=choices)
        model = ctx.params.get("model") or forms.default_model()
        complete = forms.add_tagger_options(inputs, ctx.params, family=forms.model_family(model),
                                            custom=model == forms.CUSTOM)
        inputs.str("output_dir", required=True, label="Output folder",
                   description="Model folder to write on the machine that runs the training")
        fields = sorted(ctx.dataset.get_field_schema()) if ctx.dataset is not None else []
        inputs.enum("tag_field", ["tags", *(f for f in fields if f != "tags")], required=False, label="Tags field",
                    description="Ground truth tags (Classifications, Classification, Detections or sample tags)")
        inputs.enum("caption_field", fields, required=False, label="Caption field (optional)")
        inputs.str("validation_tag", required=False, label="Validation sample tag (optional)",
                   description="Samples with this tag are scored after every epoch; the best epoch is kept")
        inputs.int("epochs", default=2, min=1, label="Epochs")
        inputs.int("batch_size", default=26, min=1, label="Batch size")
        inputs.float("lr", default=5e-6, label="Learning rate")
        inputs.list("freeze", types.Enum(list(PARTS)), required=False, label="Freeze")
        inputs.bool("grad_checkpointing", default=False, label="Gradient checkpointing (less memory)")
        inputs.enum("precision", ["fp32", "bf16", "auto"], default="fp32", label="Precision")
        inputs.bool("weak_start", default=False, label="Weak-start recipe",
                    description="For a random or far-off start instead of upstream's recipe (docs/training.md)")
        inputs.str("teacher", required=False, label="CLIP teacher (optional)",
                   description="Hub name or folder; default openai/clip-vit-base-patch16")
        inputs.bool("resume", default=False, label="Resume the run in the output folder")
        inputs.bool("overwrite", default=False, label="Replace the model files of a non-empty output folder")
        if not (ctx.params.get("tag_field") or ctx.params.get("caption_field")):
            inputs.view("what", types.Notice(label="Choose a tags field, a caption field or both"))
            complete = False
        if not complete:
            inputs.view("incomplete", types.Notice(label="Complete the form to fine-tune"))
        return types.Property(inputs, view=types.View(label="Fine-tune with Recognize Anything"))

    def execute(self, ctx):
        forms, finetune, weak_start = _package()
        params = ctx.params
        kwargs = forms.tagger_kwargs(params)
        model = params.get("model") or forms.default_model()
        model = kwargs.pop("config", None) or (kwargs.get("family") if model == forms.CUSTOM else model)
        # "precision" is the training's own field (it replaces the tagger options' field of that name)
        for unused in ("language", "classes", "caption", "confidence_thresh", "precision"):
            kwargs.pop(unused, None)
        options = dict(weak_start) if params.get("weak_start") else {}
        for key in ("epochs", "batch_size", "lr", "grad_checkpointing"):
            if params.get(key) is not None:
                options[key] = params[key]
        if params.get("precision") is not None:  # the form's training precision (autocast)
            options["train_precision"] = params["precision"]
        if params.get("freeze"):
            options["freeze"] = tuple(params["freeze"])
        if params.get("teacher"):
            options["teacher"] = params["teacher"]
        samples, validation = ctx.target_view(), None
        if params.get("validation_tag"):  # never trained on what it is validated on
            validation = ctx.dataset.match_tags(params["validation_tag"])
            samples = samples.match_tags(params["validation_tag"], bool=False)
        result = finetune(
            samples, params["output_dir"], model=model, checkpoint=kwargs.pop("checkpoint_path", None),
            tag_field=params.get("tag_field") or None, caption_field=params.get("caption_field") or None,
            validation=validation, resume_run=bool(params.get("resume")), overwrite=bool(params.get("overwrite")),
            progress=lambda fraction, label: ctx.set_progress(progress=fraction, label=label), **kwargs, **options)
        return {"output_dir": str(result.output_dir), "steps": result.steps, "best_epoch": result.best_epoch,
                "best_mAP": (result.best or {}).get("mAP")}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("output_dir", label="Model folder")
        outputs.int("steps", label="Steps")
        outputs.float("best_mAP", label="Best validation mAP")
        return types.Property(outputs, view=types.View(label="Fine-tuning finished"))


def register(p):
    p.register(FinetuneModel)
