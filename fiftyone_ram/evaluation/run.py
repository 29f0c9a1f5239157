"""Tag evaluation as a native FiftyOne evaluation run: config, method, results and ``evaluate_tags``.

FiftyOne's ``evaluate_classifications`` refuses multi-label ``Classifications`` (voxel51/fiftyone #1723,
#2542). This run subclasses FiftyOne's *detection* evaluation classes instead, because a tag is an
image-level object: each ground-truth tag is matched or missed (TP / FN), each predicted tag is right or
wrong (TP / FP). Being ``type == "detection"`` is what lets the App's Model Evaluation panel show the run
(mAP, TP / FP / FN with click-to-filter, per-class precision / recall / F1, confusion matrix), and
subclassing FiftyOne's classes is what makes ``list_evaluations``, ``load_evaluation_results``,
``rename_evaluation`` and ``delete_evaluation`` work unchanged. Multi-label summaries that the panel has
no row for (CP, CR, CF1, top-k) go into the results' ``custom_metrics``, which the panel lists.

Written per sample: ``<key>_tp``, ``<key>_fp``, ``<key>_fn`` (ints, as FiftyOne's detection evaluation),
``<key>_missed`` (the ground-truth tags the model did not predict) and a ``<key>`` attribute ``"tp"`` /
``"fp"`` on each predicted tag and ``"tp"`` / ``"fn"`` on each ground-truth label (not for plain string
lists such as sample tags). Tags outside the evaluated vocabulary get no verdict.

Recording is all or nothing: the names are checked first (:mod:`fiftyone_ram.evaluation.keys`), the run is
registered only after its fields are written, and a failure while writing removes what was written. The run
keeps the label paths it wrote its attribute on, so that ``delete_evaluation`` deletes those and nothing else.
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
from fiftyone.utils.eval.detection import DetectionEvaluation, DetectionEvaluationConfig, DetectionResults

from fiftyone_ram.decision import check_threshold, check_thresholds, decide
from fiftyone_ram.evaluation import metrics as M
from fiftyone_ram.evaluation.keys import METHOD, EvalKeyError, KeyPlan, check_key
from fiftyone_ram.evaluation.vocabulary import VocabularyMapper, VocabularyReport
from fiftyone_ram.fields import (
    PREDICTION_LABEL_TYPES,
    TAG_LABEL_TYPES,
    FieldKind,
    FieldTags,
    field_kind,
    read_predictions,
    read_tags,
)
from fiftyone_ram.progress import Progress
from fiftyone_ram.tag_files import read_tag_list, read_thresholds

logger = logging.getLogger(__name__)

__all__ = ["EvalKeyError", "TagEvaluation", "TagEvaluationConfig", "TagEvaluationResults", "evaluate_tags"]

MISSING = "(none)"


# --------------------------------------------------------------------------------------------------
# Config and method


class TagEvaluationConfig(DetectionEvaluationConfig):
    """Settings of a tag evaluation (kept with the run; large inputs such as tag lists live in results).

    Args:
        pred_field: ``Classifications`` (or ``Classification``) field of predicted tags
        gt_field: ``Classifications``, ``Classification``, ``Detections``, ``Polylines`` or a list of
            strings (e.g. the sample ``tags``)
        threshold: ``None`` (the stored predictions count), a float, or where per-class thresholds came
            from (a file path, or ``"per-class"`` when given as an array)
        model_tags: where the model's tag list came from (a file path, ``"tagger"``, ``"list"``) or None
        mapping: user vocabulary mapping file, or ``"dict"`` when given as a dict
        normalize: case / plural normalisation of ground-truth names
        ties, empty_classes: AP conventions (see ``metrics``)
        top_k: k values for the top-k variants
        classes: ground-truth class names to evaluate (default: all that map)
        label_paths: the label paths the run wrote its ``<key>`` attribute on (set when it is recorded; runs
            recorded before this was kept have None, and their paths are read from the schema)
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
        self.label_paths = list(label_paths) if label_paths is not None else None

    @property
    def method(self) -> str:
        return METHOD


class TagEvaluation(DetectionEvaluation):
    """Computes and records a tag evaluation (the fields are listed in the module docstring)."""

    def register_samples(self, samples: Any, eval_key: str | None, dynamic: bool = True) -> None:
        self.gt_field, self.pred_field = self.config.gt_field, self.config.pred_field
        if eval_key is None:
            return
        dataset = samples._dataset
        for suffix in ("tp", "fp", "fn"):
            dataset.add_sample_field(f"{eval_key}_{suffix}", fof.IntField)
        dataset.add_sample_field(f"{eval_key}_missed", fof.ListField, subfield=fof.StringField)
        for path in self._label_paths(samples):
            dataset.add_sample_field(f"{path}.{eval_key}", fof.StringField)

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
        """Embedded paths that carry per-label verdicts: those the run recorded, else (a new run, or one
        recorded before the paths were kept) those of its fields in the schema, skipping deleted ones."""
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


class TagEvaluationResults(DetectionResults):
    """Results of :func:`evaluate_tags`.

    FiftyOne's detection-results interface (``report()``, ``metrics()``, ``print_metrics()``,
    ``confusion_matrix()``, ``use_subset()``) works on the matched tag pairs; the multi-label numbers are
    in :attr:`summary` (mAP, CP, CR, CF1, OP, OR, OF1), :attr:`top_k` and :attr:`per_class`, and the
    positives' ranks in :attr:`ranked` (for PR curves and threshold tuning after a reload).
    """

    def __init__(
        self,
        samples: Any,
        config: TagEvaluationConfig,
        eval_key: str | None,
        matches: list[tuple],
        classes: Sequence[str] | None = None,
        missing: str | None = None,
        custom_metrics: dict | None = None,
        backend: Any = None,
        *,
        summary: dict[str, Any] | None = None,
        top_k: dict[str, Any] | None = None,
        per_class: dict[str, Any] | None = None,
        ranked: M.RankedPositives | dict | None = None,
        vocabulary: VocabularyReport | dict | None = None,
        model_tags: Sequence[str] | None = None,
        base_thresholds: Sequence[float] | None = None,
    ):
        super().__init__(samples, config, eval_key, matches, classes=classes, missing=missing,
                         custom_metrics=custom_metrics, backend=backend)
        self.summary = dict(summary or {})
        self.top_k = {str(k): v for k, v in (top_k or {}).items()}
        self.per_class = dict(per_class or {})
        self.ranked = M.RankedPositives.from_dict(ranked) if isinstance(ranked, dict) else ranked
        self.vocabulary = VocabularyReport.from_dict(vocabulary) if isinstance(vocabulary, dict) else vocabulary
        self.model_tags = list(model_tags) if model_tags is not None else None
        self.base_thresholds = np.asarray(base_thresholds, dtype=np.float32) if base_thresholds is not None else None

    # FiftyOne serialises every public attribute through ``attributes()``.
    def attributes(self) -> list[str]:
        return ["cls", "ytrue", "ypred", "ious", "confs", "ytrue_ids", "ypred_ids", "classes", "missing",
                "custom_metrics", "summary", "top_k", "per_class", "ranked", "vocabulary", "model_tags",
                "base_thresholds"]

    @classmethod
    def _from_dict(cls, d: dict, samples: Any, config: Any, eval_key: str, **kwargs: Any) -> "TagEvaluationResults":
        n = len(d["ytrue"])
        none = [None] * n
        matches = list(zip(d["ytrue"], d["ypred"], d.get("ious") or none, d.get("confs") or none,
                           d.get("ytrue_ids") or none, d.get("ypred_ids") or none))
        return cls(samples, config, eval_key, matches, classes=d.get("classes"), missing=d.get("missing"),
                   custom_metrics=d.get("custom_metrics"), summary=d.get("summary"), top_k=d.get("top_k"),
                   per_class=d.get("per_class"), ranked=d.get("ranked"), vocabulary=d.get("vocabulary"),
                   model_tags=d.get("model_tags"), base_thresholds=d.get("base_thresholds"), **kwargs)

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
            "vocabulary": self.vocabulary.to_dict() if self.vocabulary else None,
        })

    # ---- printing, plotting, tuning ---------------------------------------------------------

    def print_report(self, classes: Sequence[str] | None = None, digits: int = 3, top: int | None = None) -> None:
        """Print the multi-label report (summary, per-class table, vocabulary issues)."""
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


# --------------------------------------------------------------------------------------------------
# evaluate_tags


def evaluate_tags(
    samples: Any,
    pred_field: str,
    gt_field: str = "ground_truth",
    eval_key: str | None = None,
    *,
    model_tags: Any = None,
    threshold: Any = None,
    mapping: Mapping[str, str | None] | str | Path | None = None,
    synonyms: Mapping[str, str] | None = None,
    label_system: Any = None,
    normalize: bool = True,
    classes: Sequence[str] | None = None,
    ties: str = "pessimistic",
    empty_classes: str = "exclude",
    top_k: Sequence[int] = (1, 3),
    use_logits: bool = True,
    custom_metrics: Any = None,
    overwrite: bool = True,
    progress: Progress | None = None,
) -> TagEvaluationResults:
    """Evaluate predicted tags against ground truth and, with ``eval_key``, record a FiftyOne evaluation.

    Args:
        samples: a FiftyOne dataset or view of images
        pred_field: ``Classifications`` field of predicted tags (``confidence`` = probability; optional
            ``logits`` over the model's tag list)
        gt_field: ground truth: ``Classifications``, ``Classification``, ``Detections`` / ``Polylines``
            (their labels become image-level tags) or a list-of-strings field such as ``"tags"``
        eval_key: key to store the run under (fields ``<key>_tp`` etc.); None stores nothing
        model_tags: the model's tag list (a list, a tag-list file, or a tagger with ``.tag_list``); needed
            to read ``logits`` and to report ground-truth classes the model lacks
        threshold: None = the stored tags are the predictions; a float, or per-class thresholds aligned
            with ``model_tags`` (array, threshold file, ``{tag: value}``), re-decide from the scores
        mapping, synonyms, label_system, normalize: vocabulary mapping (see ``vocabulary``)
        classes: ground-truth class names to evaluate (default: every one that maps to a model tag)
        ties, empty_classes: AP conventions (see ``metrics``)
        top_k: k values for the top-k variants (each sample predicts its k best-scored classes)
        use_logits: read ``Classifications.logits`` when stored (full scores for mAP)
        custom_metrics: FiftyOne ``EvaluationMetric`` operators to compute as well
        overwrite: replace an earlier tag evaluation recorded under ``eval_key`` (FiftyOne's convention for
            a reused key); False refuses it. Names that belong to anything else (another evaluation, the
            user's fields and label attributes) are refused either way
        progress: ``callable(fraction, stage)`` told about each stage

    Scores for mAP: ``sigmoid(logit)`` where a sample stores logits and ``model_tags`` is known, else the
    stored confidence of a predicted tag, else ``-inf`` (a tag below the tagging threshold ranks below
    every stored score; ties among those follow ``ties``).
    """
    _check_fields(samples, pred_field, gt_field)
    tags, tags_source, tagger_thresholds = _resolve_model_tags(model_tags)
    thresholds_cfg, per_class_thr = _resolve_threshold(threshold, tags)
    config = TagEvaluationConfig(
        pred_field, gt_field, threshold=thresholds_cfg, model_tags=tags_source,
        mapping=str(mapping) if isinstance(mapping, (str, Path)) else ("dict" if mapping else None),
        normalize=normalize, ties=ties, empty_classes=empty_classes, top_k=top_k, classes=classes,
        custom_metrics=[custom_metrics] if isinstance(custom_metrics, str) else custom_metrics,
    )
    method = config.build()
    method.ensure_requirements()
    plan = check_key(samples, method, eval_key, overwrite=overwrite) if eval_key is not None else None
    inputs = _Inputs(tags=tags, per_class_thr=per_class_thr, mapping=mapping, synonyms=synonyms,
                     label_system=label_system, use_logits=use_logits,
                     base_thresholds=per_class_thr if per_class_thr is not None else tagger_thresholds)
    progress = progress or (lambda fraction, stage: None)
    # Everything is computed before anything is written: a failed evaluation leaves an earlier run of the
    # same key as it was.
    results, verdicts = _evaluate(method, samples, eval_key, inputs, progress)
    if plan is None:
        method.compute_custom_metrics(samples, eval_key, results)
    else:
        progress(0.8, "recording verdicts")
        _record(method, samples, plan, results, verdicts)
    progress(1.0, "done")
    return results


def _record(method: TagEvaluation, samples: Any, plan: KeyPlan, results: TagEvaluationResults,
            verdicts: "_Verdicts") -> None:
    """Write the verdicts and register the run, all or nothing: on any failure, what this call wrote goes."""
    dataset, key = samples._dataset, plan.key
    if plan.replaces:
        dataset.delete_evaluation(key)  # its cleanup deletes exactly the fields that run wrote
    method.config.label_paths = method._label_paths(samples)
    registered = False
    try:
        method.register_samples(samples, key)
        _write_verdicts(samples, key, verdicts)
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


def _evaluate(method: TagEvaluation, samples: Any, eval_key: str | None, inputs: _Inputs,
              progress: Progress) -> tuple[TagEvaluationResults, "_Verdicts"]:
    """All the numbers, and the per-sample / per-label verdicts to write; nothing is written here."""
    config: TagEvaluationConfig = method.config
    progress(0.0, "reading labels")
    gt = read_tags(samples, config.gt_field, role="ground-truth")
    pred = read_predictions(samples, config.pred_field, with_logits=inputs.use_logits and inputs.tags is not None)
    n = len(gt)

    progress(0.2, "mapping vocabulary")
    counts = Counter(name for row in gt.names for name in set(row) if name)
    mapper = VocabularyMapper(inputs.tags, mapping=inputs.mapping, synonyms=inputs.synonyms,
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
    results = TagEvaluationResults(
        samples, config, eval_key, matches, classes=classes, missing=MISSING, backend=method,
        summary=summary, top_k=top_k, per_class=per_class, ranked=arrays.ranked, vocabulary=vocab,
        model_tags=inputs.tags, base_thresholds=inputs.base_thresholds,
    )
    results.custom_metrics = _panel_rows(summary, top_k)
    return results, verdicts


def _evaluated_classes(wanted: Sequence[str] | None, mapper: VocabularyMapper, vocab: VocabularyReport,
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
    """FiftyOne-style match tuples ``(gt, pred, iou, confidence, gt_id, pred_id)`` and the verdicts.

    A tag is image-level, so a matched pair gets IoU 1 (as FiftyOne gives full-image boxes)."""
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
                matches.append((classes[j], classes[j], 1.0, conf, gid, pid))
            elif j in pos:
                matches.append((classes[j], MISSING, None, None, gid, None))
            else:
                matches.append((MISSING, classes[j], None, conf, None, pid))
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


def _write_verdicts(samples: Any, eval_key: str, verdicts: _Verdicts) -> None:
    _set_sample_fields(samples, {f"{eval_key}_{s}": verdicts.values[s] for s in ("tp", "fp", "fn", "missed")})
    for tags_, key in ((verdicts.pred, "pred"), (verdicts.gt, "gt")):
        if tags_.label_path is not None:
            _set_label_attribute(samples, tags_, eval_key, verdicts.values[key])


def _set_sample_fields(samples: Any, columns: dict[str, list]) -> None:
    """Several sample fields in one update per sample (``set_values`` would send one per field)."""
    from datetime import datetime

    from pymongo import UpdateOne

    now = datetime.utcnow()
    ops = [UpdateOne({"_id": sid}, {"$set": {**{f: col[i] for f, col in columns.items()}, "last_modified_at": now}})
           for i, sid in enumerate(samples.values("_id"))]
    if ops:
        samples._dataset._bulk_write(ops)


def _set_label_attribute(samples: Any, tags_: FieldTags, attr: str, values: list[list[str | None]]) -> None:
    """Write one attribute on many labels, one database update per distinct value.

    FiftyOne's ``set_values`` on a label-list attribute sends one update per label: for 10,000 samples
    with ~20 tags each that is ~200,000 round trips (35 s here). Grouping the labels by verdict and
    updating them with an array filter takes ~2 s. Labels are matched by id, so only this collection's
    labels change; ``None`` means "no verdict" and is not written (the run's fields were just reset)."""
    from datetime import datetime

    from bson import ObjectId
    from pymongo import UpdateMany

    groups: dict[str, list[ObjectId]] = {}
    for row_ids, row_values in zip(tags_.ids, values):
        for label_id, value in zip(row_ids, row_values or ()):
            if value is not None and label_id is not None:
                groups.setdefault(value, []).append(ObjectId(label_id))
    path, now, ops = tags_.label_path, datetime.utcnow(), []
    for value, ids in groups.items():
        for start in range(0, len(ids), 50_000):  # keeps each command far below MongoDB's 16 MB
            chunk = ids[start : start + 50_000]
            if tags_.kind == "list":
                ops.append(UpdateMany({f"{path}._id": {"$in": chunk}},
                                      {"$set": {f"{path}.$[label].{attr}": value, "last_modified_at": now}},
                                      array_filters=[{"label._id": {"$in": chunk}}]))
            else:
                ops.append(UpdateMany({f"{path}._id": {"$in": chunk}},
                                      {"$set": {f"{path}.{attr}": value, "last_modified_at": now}}))
    if ops:
        samples._dataset._bulk_write(ops)  # FiftyOne's own writer: also refreshes samples held in memory


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
