"""Tag evaluation as a FiftyOne classification evaluation: its job (:class:`EvaluateJob`), config, method
and results, and ``evaluate_tags``.

FiftyOne's ``evaluate_classifications`` refuses multi-label ``Classifications`` (voxel51/fiftyone #1723,
#2542), so the run is registered as what it is, a classification-type evaluation of its own method
(``ram-tags``): :class:`TagEvaluationConfig` / :class:`TagEvaluation` / :class:`TagEvaluationResults` subclass
FiftyOne's classification classes, the work is the method's ``evaluate_samples`` as in FiftyOne's own methods,
and ``list_evaluations``, ``load_evaluation_results``, ``rename_evaluation``, ``delete_evaluation`` and the App's
Model Evaluation panel work unchanged. Each (sample, tag) pair is one classification: a ground-truth tag
the model predicted is correct, one it missed has the prediction ``(none)``, a predicted tag the ground truth
lacks has the truth ``(none)``: so FiftyOne's per-class precision / recall / F1, confusion matrix and
correct / incorrect counts read as multi-label ones. The multi-label summaries (mAP, CP, CR, CF1, OP, OR, OF1,
top-k) are in :attr:`TagEvaluationResults.summary`; CP / CR / CF1 and top-k also in ``custom_metrics``, which
the panel lists.

Written per sample: ``<key>_tp``, ``<key>_fp``, ``<key>_fn`` (ints), ``<key>_missed`` (the ground-truth tags
the model did not predict) and a ``<key>`` attribute ``"tp"`` / ``"fp"`` on each predicted tag and ``"tp"`` /
``"fn"`` on each ground-truth label (not for plain string lists such as sample tags). Tags outside the evaluated
vocabulary get no verdict.

Which samples count is decided once, here, for every door: a sample whose image the tagger could not read
(``<pred>_error``) or that was never tagged (no ``<pred>`` value) is left out and reported
(:attr:`TagEvaluationResults.left_out`); predictions of classes absent from the ground truth are not in OP / OR
and are reported too. Recording is all or nothing and one at a time per key: the names are checked first
(:mod:`fiftyone_ram.evaluation.keys`), everything is computed before anything is written, two runs on one key
wait for each other (a lock in the database), and a failure while writing removes what was written.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import fiftyone.core.fields as fof
import fiftyone.core.validation as fov
from fiftyone.utils.eval.classification import (ClassificationEvaluation, ClassificationEvaluationConfig,
                                                ClassificationResults)

from fiftyone_ram.decision import check_threshold, check_thresholds, decide
from fiftyone_ram.evaluation import metrics as M
from fiftyone_ram.evaluation.keys import METHOD, EvalKeyError, KeyPlan, check_key
from fiftyone_ram.evaluation.mapping import MappingReport, NameMapper
from fiftyone_ram.fields import (
    PREDICTION_LABEL_TYPES,
    TAG_LABEL_TYPES,
    FieldKind,
    FieldTags,
    field_kind,
    read_predictions,
    read_tags,
)
from fiftyone_ram.evaluation.job import DEFAULT_EVAL_KEY, EvaluateJob, EvaluationError  # noqa: F401
from fiftyone_ram.progress import Progress
from fiftyone_ram.tag_files import read_tag_list, read_thresholds

logger = logging.getLogger(__name__)

__all__ = ["EvalKeyError", "EvaluateJob", "TagEvaluation", "TagEvaluationConfig", "TagEvaluationResults",
           "evaluate_tags"]

MISSING = "(none)"


def load_tag_evaluation(samples: Any, eval_key: str) -> TagEvaluationResults:
    """The results of tag evaluation ``eval_key``, or one line saying it is not there (deleted meanwhile, or
    another kind of evaluation)."""
    dataset = samples._root_dataset
    if eval_key not in dataset.list_evaluations():
        raise EvaluationError(f"no evaluation '{eval_key}' in dataset '{dataset.name}' (deleted meanwhile?): "
                              f"evaluate again")
    results = dataset.load_evaluation_results(eval_key)
    if not isinstance(results, TagEvaluationResults):
        raise EvaluationError(f"'{eval_key}' is not a tag evaluation (evaluate_tags): it has no tag results")
    return results


def check_evaluation(job: EvaluateJob, samples: Any) -> None:
    """What :func:`evaluate_tags` refuses before anything is written: fields of the wrong type, no sample to
    evaluate once the unreadable and untagged ones are left out, a key that is taken."""
    _check_fields(samples, job.pred_field, job.gt_field)
    view, left_out = evaluated_view(samples, job.pred_field)
    if view.count("id") == 0:
        raise EvaluationError(_nothing_left(samples, job.pred_field, left_out))
    if job.eval_key is not None:
        check_key(samples, TagEvaluationConfig(job.pred_field, job.gt_field).build(), job.eval_key,
                  overwrite=job.replace)


def run_evaluation(self: EvaluateJob, samples: Any, *, tagger: Any = None,
                   synonyms: Mapping[str, str] | None = None, label_system: Any = None, normalize: bool = True,
                   use_logits: bool = True, custom_metrics: Any = None,
                   progress: Progress | None = None) -> TagEvaluationResults:
    """Evaluate as ``job`` says (see :func:`evaluate_tags`). ``tagger``: a loaded tagger whose tag list (and
    thresholds) stand for ``model_tags`` (and the base of threshold tuning)."""
    from fiftyone_ram.driver import claims

    check_evaluation(self, samples)
    view, left_out = evaluated_view(samples, self.pred_field)
    tags, tags_source, tagger_thresholds = _resolve_model_tags(tagger if tagger is not None else self.model_tags)
    given = self.thresholds if self.thresholds is not None else self.threshold
    thresholds_cfg, per_class_thr = _resolve_threshold(given, tags)
    config = TagEvaluationConfig(
        self.pred_field, self.gt_field, threshold=thresholds_cfg, model_tags=tags_source,
        mapping=str(self.mapping) if self.mapping else None, normalize=normalize, ties=self.ties,
        empty_classes=self.empty_classes, top_k=self.top_k, classes=list(self.classes) or None,
        left_out=left_out, custom_metrics=[custom_metrics] if isinstance(custom_metrics, str) else custom_metrics)
    method = config.build()
    method.ensure_requirements()
    method.inputs = _Inputs(tags=tags, per_class_thr=per_class_thr, mapping=self.mapping, synonyms=synonyms,
                            label_system=label_system, use_logits=use_logits,
                            base_thresholds=per_class_thr if per_class_thr is not None else tagger_thresholds)
    method.progress = progress or (lambda fraction, stage: None)
    if self.eval_key is None:
        results = method.compute(view)
        method.compute_custom_metrics(view, None, results)
        return results
    dataset = samples._dataset
    # Two runs recording one key wait for each other: the second then sees the first's run (and replaces it
    # or refuses, as asked), never half of it.
    with claims.Holder() as holder, claims.dataset_lock(f"{dataset.name}/evaluation/{self.eval_key}", holder):
        plan = check_key(samples, method, self.eval_key, overwrite=self.replace)
        # Everything is computed before anything is written: a failed evaluation leaves an earlier run of
        # the same key as it was.
        results = method.compute(view, self.eval_key)
        method.progress(0.8, "recording verdicts")
        _record(method, view, plan, results)
    method.progress(1.0, "done")
    return results




def evaluate_tags(samples: Any, pred_field: str | None = None, gt_field: str = "ground_truth",
                  eval_key: str | None = None, *,
                  job: EvaluateJob | None = None, model_tags: Any = None, threshold: Any = None,
                  mapping: Mapping[str, str | None] | str | Path | None = None, progress: Progress | None = None,
                  **options: Any) -> TagEvaluationResults:
    """Evaluate predicted tags against ground truth and, with ``eval_key``, record a FiftyOne evaluation.

    ``samples``: a FiftyOne dataset or view of images; ``pred_field``: the ``Classifications`` field of predicted
    tags (``confidence`` = probability; optional ``logits`` over the model's tag list); ``gt_field``:
    ``Classifications``, ``Classification``, ``Detections`` / ``Polylines`` (their labels become image-level tags)
    or a list-of-strings field such as ``"tags"``; ``eval_key``: the key to record the run under (None: nothing is
    written). ``model_tags``: the model's tag list (a file, a list, or a loaded tagger); ``threshold``: None (the
    stored tags are the predictions), one number, or per-class thresholds aligned with ``model_tags`` (a file, an
    array, ``{tag: value}``); ``mapping``: ground-truth names to model tags (a file or a dict). Other ``options``:
    :class:`EvaluateJob`'s settings (``classes``, ``top_k``, ``ties``, ``empty_classes``, ``replace``) and
    :meth:`EvaluateJob.run`'s (``synonyms``, ``label_system``, ``normalize``, ``use_logits``, ``custom_metrics``).

    Scores for mAP: ``sigmoid(logit)`` where a sample stores logits and ``model_tags`` is known, else the
    stored confidence of a predicted tag, else ``-inf`` (a tag below the tagging threshold ranks below
    every stored score; ties among those follow ``ties``).
    """
    run_options = {k: options.pop(k) for k in ("synonyms", "label_system", "normalize", "use_logits",
                                                "custom_metrics") if k in options}
    tagger = None
    file_or_list = {}
    if hasattr(model_tags, "tag_list"):
        tagger = model_tags
    elif isinstance(model_tags, (list, tuple)):
        tagger = _TagList(list(model_tags))
    elif model_tags is not None:
        file_or_list["model_tags"] = str(model_tags)
    if isinstance(threshold, (str, Path)):
        file_or_list["thresholds"] = str(threshold)
    elif threshold is not None and not isinstance(threshold, (int, float)):
        run_options["_per_class"] = threshold
    elif threshold is not None:
        file_or_list["threshold"] = threshold
    if isinstance(mapping, Mapping):
        run_options["_mapping"] = mapping
    elif mapping is not None:
        file_or_list["mapping"] = str(mapping)
    if job is None:
        if "overwrite" in options:  # FiftyOne's word for a reused key
            options["replace"] = options.pop("overwrite")
        for name in ("classes", "top_k"):
            if options.get(name) is not None:
                options[name] = tuple(options[name])
            elif name in options:
                options.pop(name)
        job = EvaluateJob(pred_field=pred_field, gt_field=gt_field, eval_key=eval_key, **file_or_list, **options)
    return _run_with(job, samples, tagger, progress, run_options)


def evaluation_arrays(samples: Any, pred_field: str, gt_field: str, *, model_tags: Sequence[str],
                      classes: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The evaluated classes, the (samples × classes) scores and the 0/1 ground truth an evaluation of
    ``pred_field`` (logits over ``model_tags``) against ``gt_field`` works on: the same name mapping, classes
    and scores as :func:`evaluate_tags`, for tuning what needs every score (one threshold for all classes)."""
    tags = list(model_tags)
    gt = read_tags(samples, gt_field, role="ground-truth")
    pred = read_predictions(samples, pred_field, with_logits=True)
    mapper = NameMapper(tags)
    vocab = mapper.report(Counter(name for row in gt.names for name in set(row) if name))
    evaluated = _evaluated_classes(list(classes), mapper, vocab, tags)
    index = {c: j for j, c in enumerate(evaluated)}
    class_of = {name: index.get(r.tag) for name, r in vocab.resolutions.items()}
    targets = np.zeros((len(gt), len(evaluated)), dtype=bool)
    for i, row in enumerate(gt.names):
        columns = [class_of.get(name) for name in row]
        targets[i, [j for j in columns if j is not None]] = True
    scores, _ = _score_matrix(pred, evaluated, index, tags)
    return evaluated, scores, targets


class _TagList:
    """A tag list given in memory, standing where a tagger's would."""

    def __init__(self, tags: list[str]) -> None:
        self.tag_list = tags


def _run_with(job: EvaluateJob, samples: Any, tagger: Any, progress: Progress | None,
              options: dict[str, Any]) -> TagEvaluationResults:
    """:meth:`EvaluateJob.run` with thresholds or a mapping given in memory (Python only: the job holds files)."""
    per_class, mapping = options.pop("_per_class", None), options.pop("_mapping", None)
    if per_class is None and mapping is None:
        return run_evaluation(job, samples, tagger=tagger, progress=progress, **options)
    _MEMORY.update(per_class=per_class, mapping=mapping)
    try:
        return run_evaluation(job, samples, tagger=tagger, progress=progress, **options)
    finally:
        _MEMORY.clear()


#: Thresholds or a mapping given in memory to :func:`evaluate_tags`, for the one run under way in this thread.
_MEMORY: dict[str, Any] = {}


def evaluated_view(samples: Any, pred_field: str) -> tuple[Any, dict[str, Any]]:
    """``samples`` without the images the tagger could not read (they have ``<pred>_error``) or never tagged,
    and what was left out (counts and a few file names), so that they are reported, not counted as misses."""
    from fiftyone_ram.driver.tagging import error_field

    left_out: dict[str, Any] = {}
    err = error_field(pred_field)
    if samples.get_field(err) is not None:
        unreadable = samples.exists(err)
        count = unreadable.count("id")
        if count:
            left_out["unreadable"] = count
            left_out["unreadable_files"] = [p.rsplit("/", 1)[-1] for p in unreadable.limit(10).values("filepath")]
            samples = samples.exists(err, False)
    untagged = samples.exists(pred_field, False).count("id")
    if untagged:
        left_out["untagged"] = untagged
        samples = samples.exists(pred_field)
    return samples, left_out


def _nothing_left(samples: Any, pred_field: str, left_out: dict[str, Any]) -> str:
    if not left_out:
        return f"nothing to evaluate: the {'view' if samples is not samples._dataset else 'dataset'} has no samples"
    parts = [f"{left_out[k]} {k}" for k in ("unreadable", "untagged") if left_out.get(k)]
    return (f"nothing to evaluate: every sample is left out ({', '.join(parts)} in '{pred_field}'); tag the "
            f"samples first")


# --------------------------------------------------------------------------------------------------
# Config and method


class TagEvaluationConfig(ClassificationEvaluationConfig):
    """Settings of a tag evaluation (kept with the run; large inputs such as tag lists live in results).

    Args:
        pred_field: ``Classifications`` (or ``Classification``) field of predicted tags
        gt_field: ``Classifications``, ``Classification``, ``Detections``, ``Polylines`` or a list of
            strings (e.g. the sample ``tags``)
        threshold: ``None`` (the stored predictions count), a float, or where per-class thresholds came
            from (a file path, or ``"per-class"`` when given as an array)
        model_tags: where the model's tag list came from (a file path, ``"tagger"``, ``"list"``) or None
        mapping: the name mapping file, or None
        normalize: case / plural normalisation of ground-truth names
        ties, empty_classes: AP conventions (see ``metrics``)
        top_k: k values for the top-k variants
        classes: ground-truth class names to evaluate (default: all that map)
        left_out: what was left out of the evaluated samples, and why (see :func:`evaluated_view`)
        label_paths: the label paths the run wrote its ``<key>`` attribute on (set when it is recorded)
    """

    def __init__(
        self,
        pred_field: str,
        gt_field: str,
        threshold: float | str | None = None,
        model_tags: str | None = None,
        mapping: str | None = None,
        normalize: bool = True,
        ties: str = "pessimistic",
        empty_classes: str = "exclude",
        top_k: Sequence[int] = (1, 3),
        classes: Sequence[str] | None = None,
        left_out: Mapping[str, Any] | None = None,
        custom_metrics: Any = None,
        label_paths: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(pred_field, gt_field, custom_metrics=custom_metrics, **kwargs)
        M._check_choice("ties", ties, M.TIES)
        M._check_choice("empty_classes", empty_classes, M.EMPTY_CLASSES)
        self.threshold = threshold
        self.model_tags = model_tags
        self.mapping = mapping
        self.normalize = bool(normalize)
        self.ties = ties
        self.empty_classes = empty_classes
        self.top_k = sorted({int(k) for k in top_k})
        self.classes = list(classes) if classes is not None else None
        self.left_out = dict(left_out or {})
        self.label_paths = list(label_paths) if label_paths is not None else None

    @property
    def method(self) -> str:
        return METHOD


class TagEvaluation(ClassificationEvaluation):
    """Computes and records a tag evaluation (the fields are listed in the module docstring).

    ``inputs`` (the tag list, thresholds and mapping the config only names) and ``progress`` are set by
    :meth:`EvaluateJob.run` before :meth:`evaluate_samples`."""

    def __init__(self, config: TagEvaluationConfig) -> None:
        super().__init__(config)
        self.inputs = _Inputs(tags=None, per_class_thr=None, mapping=None, synonyms=None, label_system=None,
                              use_logits=True, base_thresholds=None)
        self.progress: Progress = lambda fraction, stage: None

    def register_samples(self, samples: Any, eval_key: str) -> None:
        dataset = samples._dataset
        for suffix in ("tp", "fp", "fn"):
            dataset.add_sample_field(f"{eval_key}_{suffix}", fof.IntField)
        dataset.add_sample_field(f"{eval_key}_missed", fof.ListField, subfield=fof.StringField)
        for path in self._label_paths(samples):
            dataset.add_sample_field(f"{path}.{eval_key}", fof.StringField)

    def evaluate_samples(self, samples: Any, eval_key: str | None = None, classes: Any = None, missing: Any = None,
                         progress: Any = None) -> TagEvaluationResults:
        """Every number of the evaluation of ``samples``; with ``eval_key`` (a registered run, as FiftyOne's
        methods are called), the verdicts are written too. ``classes`` / ``missing`` are the config's."""
        results = self.compute(samples, eval_key)
        if eval_key is not None:
            self.write_verdicts(samples, eval_key, results)
        return results

    def compute(self, samples: Any, eval_key: str | None = None) -> TagEvaluationResults:
        """:meth:`evaluate_samples` without writing: the results of a run to be recorded under ``eval_key``."""
        return _evaluate(self, samples, eval_key)

    def write_verdicts(self, samples: Any, eval_key: str, results: TagEvaluationResults) -> None:
        """The per-sample counts and per-label verdicts of ``results`` under ``eval_key`` (public FiftyOne
        writes: ``set_values`` per sample field, ``set_label_values`` by label id)."""
        verdicts = results._verdicts
        for suffix in ("tp", "fp", "fn", "missed"):
            samples.set_values(f"{eval_key}_{suffix}", verdicts.values[suffix])
        for tags_, key in ((verdicts.pred, "pred"), (verdicts.gt, "gt")):
            if tags_.label_path is not None:
                _set_label_attribute(samples, tags_, eval_key, verdicts.values[key])

    def get_fields(self, samples: Any, eval_key: str, include_custom_metrics: bool = True) -> list[str]:
        fields = [f"{eval_key}_{s}" for s in ("tp", "fp", "fn", "missed")]
        fields += [f"{path}.{eval_key}" for path in self._label_paths(samples)]
        if include_custom_metrics:
            fields.extend(self.get_custom_metric_fields(samples, eval_key))
        return fields

    def cleanup(self, samples: Any, eval_key: str) -> None:
        dataset = samples._dataset
        fields = [f for f in self.get_fields(dataset, eval_key, include_custom_metrics=False)
                  if dataset.get_field(f) is not None]
        dataset.delete_sample_fields(fields, error_level=1)
        self.cleanup_custom_metrics(samples, eval_key)
        samples._delete_empty_sidebar_group(eval_key)

    def _label_paths(self, samples: Any) -> list[str]:
        """Embedded paths that carry per-label verdicts: those the run recorded, else (a new run) those of its
        fields in the schema, skipping deleted ones."""
        if self.config.label_paths is not None:
            return list(self.config.label_paths)
        paths = []
        for field in (self.config.pred_field, self.config.gt_field):
            try:
                kind, label_type = field_kind(samples, field, TAG_LABEL_TYPES, "label", allow_strings=True)
            except ValueError:
                continue
            if kind == "list":
                paths.append(f"{field}.{label_type._LABEL_LIST_FIELD}")
            elif kind == "single":
                paths.append(field)
        return paths


# --------------------------------------------------------------------------------------------------
# Results


class TagEvaluationResults(ClassificationResults):
    """Results of :func:`evaluate_tags`.

    FiftyOne's classification-results interface (``report()``, ``metrics()``, ``print_metrics()``,
    ``confusion_matrix()``, ``use_subset()``) works on the (sample, tag) pairs; the multi-label numbers are in
    :attr:`summary` (mAP, CP, CR, CF1, OP, OR, OF1), :attr:`top_k` and :attr:`per_class`, the positives' ranks
    in :attr:`ranked` (for PR curves and threshold tuning after a reload), and what was left out of the
    evaluated samples in :attr:`left_out`.
    """

    def __init__(self, samples: Any, config: TagEvaluationConfig, eval_key: str | None, ytrue: Sequence[str],
                 ypred: Sequence[str], confs: Sequence[float | None] | None = None, weights: Any = None,
                 ytrue_ids: Any = None, ypred_ids: Any = None, classes: Sequence[str] | None = None,
                 missing: str | None = None, custom_metrics: dict | None = None, backend: Any = None, *,
                 summary: dict[str, Any] | None = None, top_k: dict[str, Any] | None = None,
                 per_class: dict[str, Any] | None = None, ranked: M.RankedPositives | dict | None = None,
                 mapping: MappingReport | dict | None = None, model_tags: Sequence[str] | None = None,
                 base_thresholds: Sequence[float] | None = None):
        super().__init__(samples, config, eval_key, ytrue, ypred, confs=confs, weights=weights,
                         ytrue_ids=ytrue_ids, ypred_ids=ypred_ids, classes=classes, missing=missing,
                         custom_metrics=custom_metrics, backend=backend)
        self.summary = dict(summary or {})
        self.top_k = {str(k): v for k, v in (top_k or {}).items()}
        self.per_class = dict(per_class or {})
        self.ranked = M.RankedPositives.from_dict(ranked) if isinstance(ranked, dict) else ranked
        self.mapping = MappingReport.from_dict(mapping) if isinstance(mapping, dict) else mapping
        self.model_tags = list(model_tags) if model_tags is not None else None
        self.base_thresholds = np.asarray(base_thresholds, dtype=np.float32) if base_thresholds is not None else None
        self._verdicts: _Verdicts | None = None  # what evaluate_samples found per sample (not stored)

    # FiftyOne serialises every public attribute through ``attributes()``.
    def attributes(self) -> list[str]:
        return ["cls", "ytrue", "ypred", "confs", "ytrue_ids", "ypred_ids", "classes", "missing",
                "custom_metrics", "summary", "top_k", "per_class", "ranked", "mapping", "model_tags",
                "base_thresholds"]

    @classmethod
    def _from_dict(cls, d: dict, samples: Any, config: Any, eval_key: str, **kwargs: Any) -> "TagEvaluationResults":
        return cls(samples, config, eval_key, d["ytrue"], d["ypred"], confs=d.get("confs"),
                   ytrue_ids=d.get("ytrue_ids"), ypred_ids=d.get("ypred_ids"), classes=d.get("classes"),
                   missing=d.get("missing"), custom_metrics=d.get("custom_metrics"), summary=d.get("summary"),
                   top_k=d.get("top_k"), per_class=d.get("per_class"), ranked=d.get("ranked"),
                   mapping=d.get("mapping"), model_tags=d.get("model_tags"), base_thresholds=d.get("base_thresholds"),
                   **kwargs)

    @property
    def left_out(self) -> dict[str, Any]:
        """The samples left out of the evaluation (unreadable, untagged) and their counts."""
        return dict(getattr(self.config, "left_out", None) or {})

    # ---- multi-label metrics ------------------------------------------------------------------

    def mAP(self, classes: Sequence[str] | None = None) -> float:
        """mAP (the evaluation's tie and empty-class conventions) over all or the given classes."""
        if classes is None:
            return float(self.summary.get("mAP", float("nan")))
        ap = self.average_precision()
        return M.mean_average_precision(np.array([ap[c] for c in classes]), empty_classes=self.config.empty_classes)

    def average_precision(self, ties: str | None = None) -> dict[str, float]:
        """Per-class AP (NaN without positives), optionally under another tie convention."""
        if ties is None:
            values = self.per_class.get("ap", [])
        else:
            values = M.average_precision(self.ranked, ties=ties).tolist()
        return {c: (float(v) if v is not None else float("nan")) for c, v in zip(self.classes.tolist(), values)}

    def class_counts(self) -> M.ClassCounts:
        return M.ClassCounts.from_dict(self.per_class)

    def pr_curve(self, cls: str) -> M.PRCurve:
        return M.pr_curve(self.ranked, self.classes.tolist().index(cls))

    def to_json_dict(self) -> dict[str, Any]:
        """Everything the CLI prints with ``--json`` (NaN becomes null)."""
        classes = self.classes.tolist()
        rows = []
        for i, c in enumerate(classes):
            row = {"class": c}
            for key in ("ap", "tp", "fp", "fn", "support", "precision", "recall", "f1", "threshold"):
                values = self.per_class.get(key)
                if values is not None:
                    row[key] = values[i]
            rows.append(row)
        return _json_safe({
            "eval_key": self.key,
            "pred_field": self.config.pred_field,
            "gt_field": self.config.gt_field,
            "method": self.config.method,
            "ties": self.config.ties,
            "empty_classes": self.config.empty_classes,
            "summary": self.summary,
            "top_k": self.top_k,
            "per_class": rows,
            "left_out": self.left_out,
            "mapping": self.mapping.to_dict() if self.mapping else None,
        })

    # ---- printing, plotting, tuning ---------------------------------------------------------

    def print_report(self, classes: Sequence[str] | None = None, digits: int = 3, top: int | None = None) -> None:
        """Print the multi-label report (summary, per-class table, mapping issues, what was left out)."""
        from fiftyone_ram.evaluation.report import format_report

        print(format_report(self, classes=classes, digits=digits, top=top))

    def plot_pr_curves(self, classes: Sequence[str] | None = None, backend: str = "plotly", **kwargs: Any) -> Any:
        """Interpolated PR curves (FiftyOne's ``plot_pr_curves``); default: the three best classes."""
        from fiftyone_ram.evaluation.plots import plot_pr_curves

        return plot_pr_curves(self, classes=classes, backend=backend, **kwargs)

    def plot_class_metrics(self, metric: str = "ap", classes: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """A per-class bar chart of ``ap``, ``precision``, ``recall``, ``f1`` or ``support``."""
        from fiftyone_ram.evaluation.plots import plot_class_metrics

        return plot_class_metrics(self, metric=metric, classes=classes, **kwargs)

    def tune_thresholds(self, **kwargs: Any) -> Any:
        """See :func:`fiftyone_ram.evaluation.thresholds.tune_thresholds`."""
        from fiftyone_ram.evaluation.thresholds import tune_thresholds

        return tune_thresholds(self, **kwargs)


def _record(method: TagEvaluation, samples: Any, plan: KeyPlan, results: TagEvaluationResults) -> None:
    """Write the verdicts and register the run, all or nothing: on any failure, what this call wrote goes."""
    dataset, key = samples._dataset, plan.key
    if plan.replaces:
        dataset.delete_evaluation(key)  # its cleanup deletes exactly the fields that run wrote
    method.config.label_paths = method._label_paths(samples)
    registered = False
    try:
        method.register_samples(samples, key)
        method.write_verdicts(samples, key, results)
        method.register_run(samples, key, overwrite=False)
        registered = True
        method.compute_custom_metrics(samples, key, results)
        method.save_run_results(samples, key, results)
        method.add_fields_to_sidebar_group(samples, key, omit_fields=(method.config.pred_field,
                                                                      method.config.gt_field))
    except BaseException:
        if registered:
            dataset.delete_evaluation(key)  # also its fields (cleanup)
        else:
            method.cleanup(samples, key)  # the names were free before this call: every one of them is ours
        raise


@dataclass
class _Inputs:
    tags: list[str] | None
    per_class_thr: np.ndarray | None
    mapping: Any
    synonyms: Mapping[str, str] | None
    label_system: Any
    use_logits: bool
    base_thresholds: np.ndarray | None


def _evaluate(method: TagEvaluation, samples: Any, eval_key: str | None) -> TagEvaluationResults:
    """All the numbers, and the per-sample / per-label verdicts to write (on the results); nothing is written
    here."""
    config: TagEvaluationConfig = method.config
    inputs, progress = method.inputs, method.progress
    if _MEMORY.get("per_class") is not None or _MEMORY.get("mapping") is not None:
        inputs = _from_memory(inputs, config)
    progress(0.0, "reading labels")
    gt = read_tags(samples, config.gt_field, role="ground-truth")
    pred = read_predictions(samples, config.pred_field, with_logits=inputs.use_logits and inputs.tags is not None)
    n = len(gt)

    progress(0.2, "mapping names")
    counts = Counter(name for row in gt.names for name in set(row) if name)
    mapper = NameMapper(inputs.tags, mapping=inputs.mapping, synonyms=inputs.synonyms,
                              label_system=inputs.label_system, normalize=config.normalize,
                              observed_tags=(t for row in pred.names for t in row))
    vocab = mapper.report(counts)
    classes = _evaluated_classes(config.classes, mapper, vocab, inputs.tags)
    index = {c: j for j, c in enumerate(classes)}
    c = len(classes)
    tag_index = {t: i for i, t in reversed(list(enumerate(inputs.tags or [])))}  # first occurrence wins

    # Ground-truth positives: one (sample, class) pair per class present, and each label's class.
    class_of_name = {nm: index.get(r.tag) for nm, r in vocab.resolutions.items()}
    gt_class = [[class_of_name.get(nm) for nm in row] for row in gt.names]
    positives = _unique_pairs((i, j) for i, row in enumerate(gt_class) for j in row if j is not None)

    progress(0.35, "collecting scores")
    scores, source = _score_matrix(pred, classes, index, inputs.tags)
    pred_class = [[index.get(t) for t in row] for row in pred.names]
    thr = _thresholds_for(classes, inputs.per_class_thr, config.threshold, inputs.tags)
    if thr is not None and source == "confidences":
        logger.warning("no logits stored in '%s': a threshold can only drop stored tags, not add tags that "
                       "were below the tagging threshold", config.pred_field)
    if thr is None:
        predicted = _unique_pairs((i, j) for i, row in enumerate(pred_class) for j in row if j is not None)
    else:
        decided = decide(scores, thr)  # the tagger's own rule: strictly above the threshold
        rows = np.repeat(np.arange(len(decided)), [len(cols) for cols in decided])
        cols = np.concatenate(decided) if decided else np.zeros(0, np.int64)
        predicted = np.stack([rows, cols], axis=1).astype(np.int64)

    progress(0.5, "computing metrics")
    import scipy.sparse as sp

    targets = sp.csr_matrix((np.ones(len(positives), bool), (positives[:, 0], positives[:, 1])), shape=(n, c))
    arrays = M.evaluate_arrays(scores, targets, top_k=config.top_k, ties=config.ties,
                               empty_classes=config.empty_classes)
    counts_c = M.counts_from_pairs(c, positives, predicted)
    summary = {
        "mAP": arrays.mAP,
        **M.summarize_counts(counts_c, empty_classes=config.empty_classes),
        "num_samples": n,
        "num_classes": c,
        "num_classes_with_positives": int((counts_c.support > 0).sum()),
        "num_positives": int(len(positives)),
        "num_predicted": int(len(predicted)),
        "num_unevaluated_predictions": int(sum(j is None for row in pred_class for j in row)),
        "score_source": source,
        "threshold": config.threshold,
    }
    per_class = {
        "ap": arrays.ap.tolist(),
        **counts_c.to_dict(),
        "support": counts_c.support.tolist(),
        "precision": counts_c.precision().tolist(),
        "recall": counts_c.recall().tolist(),
        "f1": counts_c.f1().tolist(),
        "threshold": thr.astype(float).tolist() if thr is not None else None,
        "model_index": [tag_index.get(x) for x in classes] if inputs.tags else None,
    }
    top_k = {str(k): {**v, "per_class": arrays.top_k[k].to_dict()} for k, v in arrays.top_k_summary.items()}

    progress(0.7, "matching tags")
    matches, verdicts = _match(gt, pred, gt_class, pred_class, positives, predicted, classes, n)
    ytrue, ypred, confs, ytrue_ids, ypred_ids = (list(column) for column in zip(*matches)) if matches else \
        ([], [], [], [], [])
    results = TagEvaluationResults(
        samples, config, eval_key, ytrue, ypred, confs=confs, ytrue_ids=ytrue_ids, ypred_ids=ypred_ids,
        classes=classes, missing=MISSING, backend=method, summary=summary, top_k=top_k, per_class=per_class,
        ranked=arrays.ranked, mapping=vocab, model_tags=inputs.tags, base_thresholds=inputs.base_thresholds)
    results.custom_metrics = _panel_rows(summary, top_k)
    results._verdicts = verdicts
    return results


def _from_memory(inputs: _Inputs, config: TagEvaluationConfig) -> _Inputs:
    """``inputs`` with thresholds or a mapping :func:`evaluate_tags` was given in memory."""
    import dataclasses

    per_class, mapping = _MEMORY.get("per_class"), _MEMORY.get("mapping")
    changes: dict[str, Any] = {}
    if per_class is not None:
        config.threshold, values = _resolve_threshold(per_class, inputs.tags)
        changes.update(per_class_thr=values, base_thresholds=values)
    if mapping is not None:
        config.mapping = "dict"
        changes["mapping"] = mapping
    return dataclasses.replace(inputs, **changes)


def _evaluated_classes(wanted: Sequence[str] | None, mapper: NameMapper, vocab: MappingReport,
                       tags: list[str] | None) -> list[str]:
    if wanted is not None:
        names = [mapper.resolve(w).tag for w in wanted]
        missing = [w for w, t in zip(wanted, names) if t is None]
        if missing:
            logger.warning("classes not in the model's vocabulary, left out: %s", ", ".join(missing[:20]))
        names = [t for t in names if t is not None]
    else:
        names = [r.tag for r in vocab.resolutions.values() if r.tag is not None]
    unique = list(dict.fromkeys(names))
    if tags:
        order = {t: i for i, t in enumerate(tags)}
        unique.sort(key=lambda t: (order.get(t, len(order)), t))
    else:
        unique.sort()
    return unique


def _unique_pairs(pairs: Any) -> np.ndarray:
    arr = np.array(sorted(set(pairs)), dtype=np.int64)
    return arr.reshape(-1, 2)


def _score_matrix(
    pred: FieldTags, classes: list[str], index: dict[str, int], tags: list[str] | None
) -> tuple[np.ndarray, str]:
    """(N, C) float32 scores: sigmoid of stored logits, else stored confidences, else -inf."""
    n, c = len(pred), len(classes)
    scores = np.full((n, c), -np.inf, dtype=np.float32)
    with_logits = 0
    if pred.logits is not None and tags:
        tag_index = {t: i for i, t in reversed(list(enumerate(tags)))}
        cols = np.array([tag_index.get(x, -1) for x in classes], dtype=np.int64)
        known = cols >= 0
        for i, logits in enumerate(pred.logits):
            if logits is None:
                continue
            logits = np.asarray(logits).ravel()
            if logits.shape[0] != len(tags):
                raise ValueError(
                    f"sample {i} of '{pred.field}' stores {logits.shape[0]} logits but model_tags has "
                    f"{len(tags)} tags; pass the tag list the logits were computed over"
                )
            scores[i, known] = _sigmoid(logits[cols[known]])
            with_logits += 1
    for i, (names, confs) in enumerate(zip(pred.names, pred.confidences)):
        if pred.logits is not None and tags and pred.logits[i] is not None:
            continue
        for name, conf in zip(names, confs):
            j = index.get(name)
            if j is not None:
                # A stored tag without a confidence is a hard prediction: it ranks with certainty.
                value = 1.0 if conf is None else float(conf)
                scores[i, j] = max(scores[i, j], value)
    source = "logits" if with_logits == n and n else ("mixed" if with_logits else "confidences")
    return scores, source


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """In float64, then rounded: recovers a tagger's float32 probability exactly from its logit."""
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))).astype(np.float32)


def _thresholds_for(
    classes: list[str], per_class: np.ndarray | None, threshold: Any, tags: list[str] | None
) -> np.ndarray | None:
    if per_class is not None:
        lookup = {t: v for t, v in reversed(list(zip(tags, per_class)))}
        missing = [x for x in classes if x not in lookup]
        if missing:
            raise ValueError(f"no threshold for evaluated classes {missing[:10]}: they are not in model_tags")
        return np.array([lookup[x] for x in classes], dtype=np.float32)
    if isinstance(threshold, (int, float)):
        return np.full(len(classes), threshold, dtype=np.float32)
    return None


@dataclass
class _Verdicts:
    """Per sample: counts and missed tags; per label of both fields: "tp" / "fp" / "fn" or None."""

    gt: FieldTags
    pred: FieldTags
    values: dict[str, list]


def _match(gt: FieldTags, pred: FieldTags, gt_class: list, pred_class: list, positives: np.ndarray,
           predicted: np.ndarray, classes: list[str], n: int) -> tuple[list[tuple], _Verdicts]:
    """One ``(truth, prediction, confidence, truth id, prediction id)`` pair per (sample, tag), and the
    verdicts: a missed tag is predicted as :data:`MISSING`, a tag the truth lacks is truly :data:`MISSING`."""
    pos_by_sample = _group(positives, n)
    pred_by_sample = _group(predicted, n)
    matches: list[tuple] = []
    verdicts: dict[str, list] = {"tp": [], "fp": [], "fn": [], "missed": [], "pred": [], "gt": []}
    for i in range(n):
        pos, prd = pos_by_sample[i], pred_by_sample[i]
        # The first label of a class stands for it (its confidence and id go into the match).
        first_pred: dict[int, int] = {}
        for li, j in enumerate(pred_class[i]):
            if j is not None:
                first_pred.setdefault(j, li)
        first_gt: dict[int, int] = {}
        for li, j in enumerate(gt_class[i]):
            if j is not None:
                first_gt.setdefault(j, li)
        for j in sorted(pos | prd):
            gl, pl = first_gt.get(j), first_pred.get(j)
            conf = pred.confidences[i][pl] if pl is not None else None
            gid = gt.ids[i][gl] if gl is not None else None
            pid = pred.ids[i][pl] if pl is not None else None
            if j in pos and j in prd:
                matches.append((classes[j], classes[j], conf, gid, pid))
            elif j in pos:
                matches.append((classes[j], MISSING, None, gid, None))
            else:
                matches.append((MISSING, classes[j], conf, None, pid))
        verdicts["tp"].append(len(pos & prd))
        verdicts["fp"].append(len(prd - pos))
        verdicts["fn"].append(len(pos - prd))
        verdicts["missed"].append([classes[j] for j in sorted(pos - prd)])
        verdicts["pred"].append([None if j is None or j not in prd else ("tp" if j in pos else "fp")
                                 for j in pred_class[i]])
        verdicts["gt"].append([None if j is None else ("tp" if j in prd else "fn") for j in gt_class[i]])
    return matches, _Verdicts(gt, pred, verdicts)


def _group(pairs: np.ndarray, n: int) -> list[set[int]]:
    out: list[set[int]] = [set() for _ in range(n)]
    for i, j in pairs.tolist():
        out[i].add(j)
    return out


def _set_label_attribute(samples: Any, tags_: FieldTags, attr: str, values: list[list[str | None]]) -> None:
    """Write one attribute on many labels by id (FiftyOne's ``set_label_values`` with sample ids, its fastest
    form). ``None`` means "no verdict" and is not written (the run's fields were just declared)."""
    sample_ids = samples.values("id")
    updates = [{"sample_id": sample_id, "label_id": label_id, "value": value}
               for sample_id, row_ids, row_values in zip(sample_ids, tags_.ids, values)
               for label_id, value in zip(row_ids, row_values or ()) if value is not None and label_id is not None]
    if updates:
        samples.set_label_values(f"{tags_.label_path}.{attr}", updates)


def _panel_rows(summary: dict[str, Any], top_k: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows the Model Evaluation panel lists under its own metrics (its ``custom_metrics`` section)."""
    rows = {}
    labels = {"CP": "CP (mean per-class precision)", "CR": "CR (mean per-class recall)",
              "CF1": "CF1 (harmonic mean of CP, CR)"}
    for key, label in labels.items():
        rows[f"fiftyone-ram/{key}"] = {"key": key, "value": _finite(summary.get(key)), "label": label,
                                       "lower_is_better": False}
    for k, s in top_k.items():
        for key in ("CP", "CR", "CF1", "OF1"):
            rows[f"fiftyone-ram/top{k}_{key}"] = {"key": f"top{k}_{key}", "value": _finite(s.get(key)),
                                                   "label": f"top-{k} {key}", "lower_is_better": False}
    return rows


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _check_fields(samples: Any, pred_field: str, gt_field: str) -> tuple[FieldKind, FieldKind]:
    """Validate both fields up front; raises ``ValueError`` naming the field and the accepted types."""
    fov.validate_non_grouped_collection(samples)
    if samples.media_type != "image":
        raise ValueError(f"tag evaluation works on image collections; this one holds {samples.media_type!r} media")
    pred = field_kind(samples, pred_field, PREDICTION_LABEL_TYPES, "prediction", allow_strings=False)
    gt = field_kind(samples, gt_field, TAG_LABEL_TYPES, "ground-truth", allow_strings=True)
    if pred_field == gt_field:
        raise ValueError(f"'{pred_field}' is given as both the prediction and the ground-truth field")
    return pred, gt


def _resolve_model_tags(model_tags: Any) -> tuple[list[str] | None, str | None, np.ndarray | None]:
    """(tag list, how it was given, the tagger's thresholds if a tagger was given)."""
    if model_tags is None:
        return None, None, None
    if hasattr(model_tags, "tag_list"):
        thresholds = getattr(model_tags, "thresholds", None)
        thresholds = np.asarray(thresholds, np.float32) if thresholds is not None else None
        return list(model_tags.tag_list), "tagger", thresholds
    if isinstance(model_tags, (str, Path)):
        return read_tag_list(Path(model_tags)), str(model_tags), None
    tags = [str(t) for t in model_tags]
    if len(set(tags)) != len(tags):
        dupes = [t for t, k in Counter(tags).items() if k > 1]
        logger.warning("model_tags has repeated names %s; the first occurrence is used", dupes[:10])
    return tags, "list", None


def _resolve_threshold(threshold: Any, tags: list[str] | None) -> tuple[Any, np.ndarray | None]:
    """(what the config records, per-class values aligned with ``tags`` or None)."""
    if threshold is None or isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        return (check_threshold(threshold, "threshold") if threshold is not None else None), None
    if tags is None:
        raise ValueError("per-class thresholds need model_tags (the tag list they are aligned with)")
    if isinstance(threshold, (str, Path)):
        return str(threshold), read_thresholds(Path(threshold), len(tags))
    if isinstance(threshold, Mapping):
        default = np.full(len(tags), np.inf, dtype=np.float32)  # a tag without a value is never predicted
        position = {t: i for i, t in reversed(list(enumerate(tags)))}
        for t, v in threshold.items():
            if t not in position:
                raise ValueError(f"threshold given for '{t}', which is not in model_tags")
            default[position[t]] = check_threshold(v, f"threshold of {t!r}")
        return "per-class", default
    values = np.asarray(threshold, dtype=np.float32)
    if values.shape != (len(tags),):
        raise ValueError(f"per-class thresholds have shape {values.shape}; model_tags has {len(tags)} tags")
    return "per-class", check_thresholds(values, "per-class thresholds")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
