"""Operators ``evaluate_tags``, ``plot_tag_pr_curves`` and ``tune_tag_thresholds``: tag-quality evaluation
from the App.

Thin on purpose: the work is ``fiftyone_ram.evaluation`` (imported when an operator runs, since FiftyOne
re-executes plugin modules on every request); what is shown is prepared by ``fiftyone_ram.evaluation.tables``
(rounded figures, PR-curve traces). A run is a regular FiftyOne evaluation; the operator opens the plugin's
"Tag evaluation" panel (``operators/panels.py``), which shows it the way multi-label results read.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

PANEL = "tag_evaluation_panel"
SUMMARY_KEYS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
COUNT_LABELS = {"num_samples": "Samples evaluated", "num_classes": "Classes", "tp": "True positives",
                "fp": "False positives", "fn": "False negatives"}
REPLACE = {"replace": "Replace it", "rename": "Keep it (choose another key above)"}


def _eval_key_input(inputs, ctx, label: str = "Evaluation") -> str | None:
    from fiftyone_ram.evaluation.tables import tag_evaluation_keys

    keys = tag_evaluation_keys(ctx.dataset)
    if not keys:
        inputs.view("no_runs", types.Warning(label="No tag evaluation yet: run 'Evaluate tags' first"))
        return None
    inputs.enum("eval_key", keys, required=True, default=keys[-1], label=label, view=types.DropdownView())
    key = ctx.params.get("eval_key")
    return key if key in keys else keys[-1]


class EvaluateTags(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="evaluate_tags",
            label="Evaluate tags (mAP, precision, recall)",
            description="Multi-label tag evaluation recorded as a FiftyOne evaluation run",
            dynamic=True,
            execute_as_generator=True,  # immediate runs from the App show their progress and their failures
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=False,
        )

    def resolve_input(self, ctx):
        from fiftyone_ram.app import field_choices as fc
        from fiftyone_ram.app import forms
        from fiftyone_ram.evaluation.job import DEFAULT_EVAL_KEY, EvaluateJob

        params = ctx.params
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Evaluate")
        _say_which_samples(inputs, ctx)
        pred_fields = fc.label_fields(ctx.dataset, fc.PREDICTION_TYPES)
        if not pred_fields:
            inputs.view("none", types.Warning(label="No Classifications field with predicted tags in this dataset"))
            return types.Property(inputs)
        pred_default = fc.prediction_default(ctx.dataset, pred_fields)
        forms.add_setting(inputs, EvaluateJob, "pred_field", params, default=pred_default,
                          choices=pred_fields)
        pred = params.get("pred_field") or pred_default
        gt_fields = [f for f in fc.label_fields(ctx.dataset, fc.TAG_TYPES) + fc.string_list_fields(ctx.dataset)
                     if f != pred and not f.endswith("_missed")]
        if not gt_fields:
            inputs.view("no_gt", types.Warning(label="No other field to use as ground truth"))
            return types.Property(inputs)
        gt_default = fc.ground_truth_default(ctx.dataset, gt_fields, pred)
        gt = forms.add_setting(inputs, EvaluateJob, "gt_field", params, choices=gt_fields,
                               **({"default": gt_default} if gt_default else {}))
        if params.get("gt_field") in fc.related_fields(ctx.dataset, pred):
            gt.invalid = False
            inputs.view("gt_related", types.Warning(
                label=f"'{params['gt_field']}' and '{pred}' come from one another",
                description="Evaluating one against the other measures how much a run changed them, not tag "
                            "quality"))
        key = forms.add_setting(inputs, EvaluateJob, "eval_key", params, default=DEFAULT_EVAL_KEY, required=True)
        eval_key = params.get("eval_key") or DEFAULT_EVAL_KEY
        method = _method_of(ctx.dataset, eval_key)
        if not eval_key.isidentifier():
            key.invalid, key.error_message = True, "The key must be a valid Python identifier"
        elif method is not None and method != _tag_method():
            key.invalid = True
            key.error_message = f"'{eval_key}' is another evaluation's key ({method}): choose another"
        elif method is not None:
            inputs.view("exists", types.Warning(
                label=f"An evaluation '{eval_key}' exists",
                description="Replacing it deletes its results and its per-sample fields"))
            choice = types.RadioGroup()
            for value, text in REPLACE.items():
                choice.add_choice(value, label=text)
            prop = inputs.enum("existing", choice.values(), required=True, label="The existing evaluation",
                               view=choice)
            if params.get("existing") != "replace":
                prop.invalid, prop.error_message = True, "Choose 'Replace it' or give another key"
        forms.add_settings(inputs, EvaluateJob, ("threshold", "model_tags", "mapping", "top_k", "ties",
                                                 "empty_classes"), params)
        inputs.bool("open_panel", default=True, label="Open the Tag evaluation panel when done")
        return types.Property(inputs, view=types.View(label="Evaluate tags"))

    def execute(self, ctx):
        from fiftyone_ram.app import execution, forms
        from fiftyone_ram.evaluation.job import DEFAULT_EVAL_KEY, EvaluateJob
        from fiftyone_ram.evaluation.tables import summary_figures

        params = ctx.params
        job = forms.job_from_form(EvaluateJob, params, ("pred_field", "gt_field", "threshold", "model_tags",
                                                        "mapping", "top_k", "ties", "empty_classes"),
                                  eval_key=params.get("eval_key") or DEFAULT_EVAL_KEY,
                                  # an existing run goes only when the user chose so
                                  replace=params.get("existing") == "replace")

        def work(progress):
            from fiftyone_ram.evaluation.run import evaluate_tags

            results = evaluate_tags(ctx.target_view(), job=job, progress=progress)
            out = {"eval_key": results.key, **summary_figures(results), **_left_out(results)}
            unmapped = results.mapping.unmapped() if results.mapping else []
            if unmapped:
                out["unmapped"] = ", ".join(unmapped)
            return out

        def show(result):
            yield ctx.trigger("reload_dataset")
            if params.get("open_panel", True):
                yield from execution.show_panel(ctx, self, PANEL, {"eval_key": result["eval_key"], "chosen": True})
            yield from execution.show_result(ctx, self, result)

        return execution.run(ctx, work, label="Evaluating", show=show)

    def resolve_output(self, ctx):
        from fiftyone_ram.evaluation.tables import SUMMARY_LABELS

        results = ctx.results or {}
        outputs = types.Object()
        outputs.str("eval_key", label="Evaluation key")
        for key, label in SUMMARY_LABELS.items():
            if results.get(key) is not None or not results:
                outputs.float(key, label=label)
        for key, label in COUNT_LABELS.items():
            outputs.int(key, label=label)
        for key, label in LEFT_OUT_LABELS.items():
            if results.get(key) or not results:
                outputs.str(key, label=label)
        if results.get("unmapped"):
            outputs.str("unmapped", label="Ground-truth classes not in the model's vocabulary")
        return types.Property(outputs, view=types.View(label="Tag evaluation"))


#: What the evaluation leaves out, as the output shows it (every door reports the same: see the results).
LEFT_OUT_LABELS = {"unreadable": "Left out: unreadable images", "untagged": "Left out: never tagged",
                   "other_predictions": "Not in OP / OR: predictions of classes absent from the ground truth"}


def _left_out(results) -> dict:
    left = results.left_out
    out = {}
    if left.get("unreadable"):
        files = ", ".join(left.get("unreadable_files") or [])
        out["unreadable"] = f"{left['unreadable']} (reason in '{results.config.pred_field}_error')" + (
            f": {files}" if files else "")
    if left.get("untagged"):
        out["untagged"] = str(left["untagged"])
    other = results.summary.get("num_unevaluated_predictions")
    if other:
        out["other_predictions"] = str(other)
    return out


class PlotTagPRCurves(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(name="plot_tag_pr_curves", label="Tag PR curves",
                                  description="Precision-recall curves of a tag evaluation's classes",
                                  dynamic=True, execute_as_generator=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        key = _eval_key_input(inputs, ctx)
        if key is None:
            return types.Property(inputs)
        classes = ctx.dataset.load_evaluation_results(key).classes.tolist()
        inputs.list("classes", types.String(), label="Classes (empty: the three with the best AP)",
                    view=types.AutocompleteView(multiple=True, allow_user_input=False, allow_duplicates=False,
                                                choices=[types.Choice(c, label=c) for c in classes]))
        return types.Property(inputs, view=types.View(label="Tag PR curves"))

    def execute(self, ctx):
        from fiftyone_ram.app import execution
        from fiftyone_ram.errors import UserError
        from fiftyone_ram.evaluation.run import load_tag_evaluation
        from fiftyone_ram.evaluation.tables import pr_traces

        def work(progress):
            results = load_tag_evaluation(ctx.dataset, ctx.params["eval_key"])
            classes = [c for c in ctx.params.get("classes") or [] if c]
            unknown = sorted(set(classes) - set(results.classes.tolist()))
            if unknown:
                raise UserError(f"not evaluated in '{results.key}': {', '.join(unknown)}")
            return {"eval_key": results.key, "curves": pr_traces(results, classes or None)}

        return execution.run(ctx, work, label="PR curves", show=lambda result: execution.show_result(ctx, self, result))

    def resolve_output(self, ctx):
        from fiftyone_ram.evaluation.tables import PR_LAYOUT

        outputs = types.Object()
        outputs.str("eval_key", label="Evaluation key")
        outputs.plot("curves", label="Precision-recall", layout=PR_LAYOUT,
                     data=(ctx.results or {}).get("curves"))
        return types.Property(outputs, view=types.View(label="Precision-recall curves"))


class TuneTagThresholds(foo.Operator):
    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(name="tune_tag_thresholds", label="Tune tag thresholds",
                                  description="Per-class thresholds that maximise F1 (or reach a precision) on "
                                              "an evaluated view; written as a threshold file", dynamic=True,
                                  execute_as_generator=True)

    def resolve_input(self, ctx):
        from pathlib import Path

        inputs = types.Object()
        key = _eval_key_input(inputs, ctx)
        if key is None:
            return types.Property(inputs)
        results = ctx.dataset.load_evaluation_results(key)
        inputs.float("target_precision", label="Target precision (optional)", min=0.0, max=1.0,
                     description="Empty: the F1-optimal threshold; a value: the lowest threshold reaching it")
        inputs.int("min_positives", default=1, min=1, label="Fewest positives a class needs to be tuned")
        if not results.model_tags:
            inputs.str("tag_list", required=True, label="Model tag list file",
                       description="The tagger's tag list (the threshold file is aligned with it)")
        if results.base_thresholds is None:
            inputs.str("base_thresholds", required=True, label="Thresholds of the other classes",
                       description="The model's threshold file, or one number, for the classes this view "
                                   "cannot tune")
        out = inputs.str("output", label="Write to (optional)",
                         description="A threshold file (one per line) for load_tagger(thresholds=...); empty: "
                                     "only show the table")
        path = ctx.params.get("output")
        if path and Path(path).expanduser().exists():
            inputs.bool("overwrite", default=False, label=f"Replace the existing {Path(path).name}")
            if not ctx.params.get("overwrite"):
                out.invalid, out.error_message = True, "The file exists: tick 'Replace' or choose another path"
        return types.Property(inputs, view=types.View(label="Tune tag thresholds"))

    def execute(self, ctx):
        from fiftyone_ram.app import execution

        return execution.run(ctx, lambda progress: self._tune(ctx), label="Tuning thresholds",
                             show=lambda result: execution.show_result(ctx, self, result))

    def _tune(self, ctx):
        from pathlib import Path

        from fiftyone_ram.errors import UserError
        from fiftyone_ram.evaluation.run import load_tag_evaluation
        from fiftyone_ram.evaluation.tables import rounded
        from fiftyone_ram.tag_files import read_tag_list

        p = ctx.params
        results = load_tag_evaluation(ctx.dataset, p["eval_key"])
        kwargs = {"target_precision": p.get("target_precision"), "min_positives": p.get("min_positives") or 1}
        if p.get("tag_list"):
            kwargs["tag_list"] = read_tag_list(Path(p["tag_list"]).expanduser())
        if p.get("base_thresholds"):
            base = p["base_thresholds"]
            try:
                kwargs["base_thresholds"] = float(base)
            except ValueError:
                kwargs["base_thresholds"] = str(Path(base).expanduser())
        try:
            tuning = results.tune_thresholds(**kwargs)
        except (ValueError, OSError) as exc:
            raise UserError(str(exc).splitlines()[0]) from exc
        written = None
        if p.get("output"):
            path = Path(p["output"]).expanduser()
            if path.exists() and not p.get("overwrite"):
                raise UserError(f"{path} exists: tick 'Replace' or choose another path")
            written = str(tuning.write(path))
        rows = [{"tag": r["tag"], "previous": rounded(r["previous"]), "threshold": rounded(r["threshold"]),
                 "precision": rounded(r["precision"]), "recall": rounded(r["recall"]), "f1": rounded(r["f1"]),
                 "support": r["support"]} for r in tuning.tuned()]
        out = {"eval_key": results.key, "tuned": len(rows), "untuned": len(tuning.table) - len(rows),
               "thresholds": rows}
        if written:
            out["written"] = written
        return out

    def resolve_output(self, ctx):
        results = ctx.results or {}
        outputs = types.Object()
        outputs.str("eval_key", label="Evaluation key")
        outputs.int("tuned", label="Classes tuned")
        outputs.int("untuned", label="Classes left as they were (too few positives / target unreachable)")
        if results.get("written") or not results:
            outputs.str("written", label="Threshold file written")
        table = types.TableView()
        for column, label in (("tag", "Tag"), ("previous", "Before"), ("threshold", "Tuned"),
                              ("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"),
                              ("support", "Positives")):
            table.add_column(column, label=label)
        outputs.list("thresholds", types.Object(), label="Tuned thresholds", view=table)
        return types.Property(outputs, view=types.View(label="Tuned thresholds"))


def _tag_method() -> str:
    from fiftyone_ram.evaluation.keys import METHOD

    return METHOD


def _method_of(dataset, key: str) -> str | None:
    """The method of the evaluation recorded under ``key``; None when the key is free."""
    if key not in dataset.list_evaluations():
        return None
    return getattr(dataset.get_evaluation_info(key).config, "method", None) or "?"


def _say_which_samples(inputs, ctx) -> None:
    """After a drill-down the App's target defaults to the filtered view: say so, with the counts."""
    if getattr(ctx.view, "_stages", None) and ctx.params.get("view_target") in (None, "CURRENT_VIEW"):
        inputs.view("target_note", types.Notice(
            label=f"The current view is evaluated ({len(ctx.view)} of {len(ctx.dataset)} samples); choose the "
                  "entire dataset above to evaluate everything"))


def register(p) -> None:
    p.register(EvaluateTags)
    p.register(PlotTagPRCurves)
    p.register(TuneTagThresholds)
