"""Operator ``evaluate_tags``: tag-quality evaluation from the App.

Thin on purpose: the work is ``fiftyone_ram.evaluation.evaluate_tags`` (imported when the operator runs,
since FiftyOne re-executes plugin modules on every request). The run it records is a regular FiftyOne
evaluation, so its results appear in the Model Evaluation panel, which the operator opens when it ran
immediately; the returned figures are also shown in the operator's output.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

_PRED_TYPES = ("Classifications", "Classification")
_GT_TYPES = ("Classifications", "Classification", "Detections", "Polylines")
_PANEL = "model_evaluation_panel_builtin"


class EvaluateTags(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="evaluate_tags",
            label="Evaluate tags (mAP, precision, recall)",
            description="Multi-label tag evaluation recorded as a FiftyOne evaluation run",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=False,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Evaluate")
        pred_fields = _label_fields(ctx, _PRED_TYPES)
        gt_fields = _label_fields(ctx, _GT_TYPES) + _string_list_fields(ctx)
        if not pred_fields:
            inputs.view("none", types.Warning(label="No Classifications field with predicted tags in this dataset"))
            return types.Property(inputs)
        inputs.enum("pred_field", pred_fields, required=True, label="Predicted tags", default=pred_fields[0],
                    view=types.DropdownView())
        inputs.enum("gt_field", gt_fields, required=True, label="Ground truth",
                    description="Classifications, Classification, Detections / Polylines (as image-level tags) "
                                "or a list of strings such as the sample tags",
                    view=types.DropdownView())
        key = inputs.str("eval_key", required=True, label="Evaluation key", default="eval_tags")
        eval_key = ctx.params.get("eval_key")
        if eval_key is not None and (not eval_key.isidentifier()):
            key.invalid = True
            key.error_message = "The key must be a valid Python identifier"
        elif eval_key and eval_key in ctx.dataset.list_evaluations():
            from fiftyone_ram.evaluation.keys import METHOD

            method = getattr(ctx.dataset.get_evaluation_info(eval_key).config, "method", None)
            if method != METHOD:
                key.invalid = True
                key.error_message = f"'{eval_key}' is another evaluation's key ({method}): choose another"
            else:
                inputs.view("replaces", types.Notice(label=f"'{eval_key}' holds a tag evaluation already: it will "
                                                           f"be replaced (choose another key to keep it)"))
        inputs.float("threshold", label="Threshold (optional)",
                     description="Leave empty to judge the stored tags; a value re-decides tags from the scores")
        inputs.str("model_tags", label="Model tag list file (optional)",
                   description="One tag per line, aligned with stored logits; lets absent classes be reported")
        inputs.str("mapping", label="Vocabulary mapping file (optional)",
                   description="JSON object or CSV / TSV rows 'gt_name,model_name'")
        inputs.str("top_k", label="Top-k values", default="1,3")
        inputs.enum("ties", ["pessimistic", "optimistic", "sklearn"], default="pessimistic", label="Tied scores",
                    view=types.DropdownView())
        inputs.enum("empty_classes", ["exclude", "zero"], default="exclude", label="Classes without positives",
                    view=types.DropdownView())
        inputs.bool("open_panel", default=True, label="Open the Model Evaluation panel when done")
        return types.Property(inputs, view=types.View(label="Evaluate tags"))

    def execute(self, ctx):
        from fiftyone_ram.evaluation import evaluate_tags

        p = ctx.params
        top_k = [int(k) for k in str(p.get("top_k") or "").replace(" ", "").split(",") if k]
        results = evaluate_tags(
            ctx.target_view(),
            p["pred_field"],
            p["gt_field"],
            eval_key=p["eval_key"],
            threshold=p.get("threshold"),
            model_tags=p.get("model_tags") or None,
            mapping=p.get("mapping") or None,
            top_k=top_k,
            ties=p.get("ties", "pessimistic"),
            empty_classes=p.get("empty_classes", "exclude"),
            progress=lambda fraction, stage: ctx.set_progress(progress=fraction, label=stage),
        )
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
            if p.get("open_panel", True):
                ctx.ops.open_panel(_PANEL, layout="horizontal")
        s = results.summary
        out = {k: _number(s.get(k)) for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")}
        out.update(eval_key=results.key, num_samples=s["num_samples"], num_classes=s["num_classes"],
                   tp=s["tp"], fp=s["fp"], fn=s["fn"],
                   unmapped=", ".join(results.vocabulary.unmapped()) if results.vocabulary else "")
        return out

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("eval_key", label="Evaluation key")
        for key, label in (("mAP", "mAP"), ("CP", "CP (per-class precision)"), ("CR", "CR (per-class recall)"),
                           ("CF1", "CF1"), ("OP", "OP (overall precision)"), ("OR", "OR (overall recall)"),
                           ("OF1", "OF1")):
            outputs.float(key, label=label)
        for key, label in (("num_samples", "Samples"), ("num_classes", "Classes"), ("tp", "True positives"),
                           ("fp", "False positives"), ("fn", "False negatives")):
            outputs.int(key, label=label)
        outputs.str("unmapped", label="Ground-truth classes not in the model's vocabulary")
        return types.Property(outputs, view=types.View(label="Tag evaluation"))


def _label_fields(ctx, type_names: tuple[str, ...]) -> list[str]:
    import fiftyone.core.fields as fof

    schema = ctx.dataset.get_field_schema()
    return sorted(
        name for name, field in schema.items()
        if isinstance(field, fof.EmbeddedDocumentField) and field.document_type.__name__ in type_names
    )


def _string_list_fields(ctx) -> list[str]:
    import fiftyone.core.fields as fof

    schema = ctx.dataset.get_field_schema()
    return sorted(
        name for name, field in schema.items()
        if isinstance(field, fof.ListField) and isinstance(field.field, fof.StringField)
    )


def _number(x):
    return None if x is None or x != x else float(x)


def register(p) -> None:
    p.register(EvaluateTags)
