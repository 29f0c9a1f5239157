"""Per-class thresholds: tuning them on an evaluated view, and reading / writing upstream's file format.

Upstream's threshold file (``ram_tag_list_threshold.txt``) is one float per line, aligned with the tag
list; ``load_tagger(thresholds=path)`` reads the same format. RAM's authors tuned theirs "on as many test
sets as possible" and users keep asking how (upstream issues #45, #115, #137); tuning on a labelled view
of one's own data answers that for a given domain.

Tuning uses only the stored ranks of the positives (see ``metrics.RankedPositives``): the F1-optimal
threshold of a class always sits at one of its positives' scores, because lowering a threshold between
two positives only adds false positives. The threshold written is halfway between that score and the
next lower score in the view (just below it when it is the lowest), so the same tags are predicted whether a
tagger compares with ``>`` or ``>=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fiftyone_ram.evaluation.metrics import RankedPositives, pr_curve
from fiftyone_ram.tag_files import read_thresholds, write_thresholds  # noqa: F401 (re-exported)


@dataclass
class ThresholdTuning:
    """Tuned thresholds aligned with the model's tag list, and what happened to each evaluated class."""

    tags: list[str]
    thresholds: np.ndarray
    table: list[dict[str, Any]] = field(default_factory=list)

    def write(self, path: str | Path) -> Path:
        return write_thresholds(path, self.thresholds)

    def tuned(self) -> list[dict[str, Any]]:
        return [row for row in self.table if row["status"] == "tuned"]


def tune_class_thresholds(
    ranked: RankedPositives,
    *,
    target_precision: float | None = None,
    min_positives: int = 1,
) -> list[dict[str, Any]]:
    """For each class of ``ranked``: the threshold that maximises F1, or with ``target_precision`` the
    lowest threshold whose precision reaches it (the most recall at that precision).

    Returns one row per class with ``threshold`` (None when not tuned), the precision / recall / F1 it
    gives on the view, and ``status``: ``tuned``, ``too_few_positives`` or ``target_unreachable``.
    Among equal F1 the highest threshold (fewest predictions) wins."""
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    rows = []
    for k in range(ranked.num_classes):
        curve = pr_curve(ranked, k)
        row: dict[str, Any] = {"support": int(curve.support), "threshold": None,
                               "precision": None, "recall": None, "f1": None}
        if curve.support < max(1, min_positives) or len(curve.thresholds) == 0:
            row["status"] = "too_few_positives"
            rows.append(row)
            continue
        if target_precision is None:
            i = int(np.argmax(curve.f1()))  # first maximum = highest threshold
        else:
            ok = np.flatnonzero(curve.precision >= target_precision)
            if ok.size == 0:
                row["status"] = "target_unreachable"
                rows.append(row)
                continue
            i = int(ok[-1])
        row.update(
            threshold=_between(curve.thresholds[i], curve.below[i]),
            precision=float(curve.precision[i]),
            recall=float(curve.recall[i]),
            f1=float(curve.f1()[i]),
            status="tuned",
        )
        rows.append(row)
    return rows


def tune_thresholds(
    results: Any,
    *,
    target_precision: float | None = None,
    min_positives: int = 1,
    base_thresholds: Any = None,
    tag_list: Sequence[str] | None = None,
) -> ThresholdTuning:
    """Tune the thresholds of an evaluation's classes and merge them into a full threshold list.

    Args:
        results: ``TagEvaluationResults``.
        base_thresholds: values for the classes the view cannot tune: a tagger (anything with
            ``.thresholds``; its ``.tag_list`` is then the default ``tag_list``), a threshold file, an array
            aligned with ``tag_list``, or a float. By default the per-class thresholds the evaluation used.
        tag_list: the tags the output is aligned with (default: the tagger's, else the evaluation's
            ``model_tags``); evaluated classes are matched to it by name.
    """
    if tag_list is None:
        tag_list = getattr(base_thresholds, "tag_list", None) or results.model_tags
    if not tag_list:
        raise ValueError(
            "no tag list to align the thresholds with: pass tag_list= or a tagger as base_thresholds=, or "
            "evaluate with model_tags="
        )
    tags = list(tag_list)
    if base_thresholds is None and tags != list(results.model_tags or []):
        raise ValueError("pass base_thresholds= for a tag list other than the evaluation's model_tags")
    base = _resolve_base(base_thresholds, results, len(tags))
    thresholds = base.astype(np.float32).copy()
    rows = tune_class_thresholds(results.ranked, target_precision=target_precision, min_positives=min_positives)
    index = {t: i for i, t in reversed(list(enumerate(tags)))}
    table = []
    for cls, row in zip(results.classes.tolist(), rows):
        i = index.get(cls)
        row = {"tag": cls, "model_index": i, "previous": float(thresholds[i]) if i is not None else None, **row}
        if row["status"] == "tuned" and i is None:
            row["status"] = "not_in_tag_list"
        elif row["status"] == "tuned":
            thresholds[i] = row["threshold"]
        table.append(row)
    return ThresholdTuning(tags=tags, thresholds=thresholds, table=table)


def _between(score: float, below: float) -> float:
    """A float32 threshold that keeps ``score`` and drops ``below`` under both ``>`` and ``>=``.

    When the two are adjacent float32 values no such number exists; then ``below`` is returned, which is
    right for the tagger's strict ``>`` (``load_tagger`` reads these files)."""
    s = np.float32(score)
    if not np.isfinite(below):
        return float(np.nextafter(s, np.float32(-np.inf)))
    b = np.float32(below)
    mid = np.float32((float(score) + float(below)) / 2.0)
    return float(mid) if b < mid < s else float(b)


def _resolve_base(base: Any, results: Any, n: int) -> np.ndarray:
    if base is None:
        base = getattr(results, "base_thresholds", None)
        if base is None:
            raise ValueError(
                "pass base_thresholds= (the model's threshold file, a tagger or a float) for the classes "
                "this view cannot tune; the evaluation used no per-class thresholds to start from"
            )
    if hasattr(base, "thresholds") and not isinstance(base, np.ndarray):
        base = base.thresholds
    if isinstance(base, (str, Path)):
        return read_thresholds(Path(base), n)
    values = np.asarray(base, dtype=np.float32)
    if values.ndim == 0:
        return np.full(n, values, dtype=np.float32)
    if values.shape != (n,):
        raise ValueError(f"base thresholds have {values.size} values but the model has {n} tags")
    return values


#: Candidate thresholds of :func:`tune_global_threshold`: quantiles of the positives' scores.
GLOBAL_CANDIDATES = 256


def tune_global_threshold(scores: np.ndarray, targets: np.ndarray, *,
                          candidates: int = GLOBAL_CANDIDATES) -> dict[str, Any]:
    """The one threshold for all classes that maximises CF1 (the harmonic mean of CP and CR over the classes with
    positives) on ``scores`` (N, C) against 0/1 ``targets`` (N, C): the RAM paper's unified threshold per model.

    The candidates are just below ``candidates`` quantiles of the positives' scores (a tag is predicted when its
    score is strictly above the threshold); among equal CF1 the highest threshold wins. Returns ``threshold``,
    ``CP``, ``CR`` and ``CF1`` on these scores (``threshold`` None when no class has a finite positive score)."""
    scores = np.asarray(scores, dtype=np.float32)
    targets = np.asarray(targets, dtype=bool)
    use = targets.any(axis=0)
    positive = scores[targets & np.isfinite(scores)]
    if not use.any() or positive.size == 0:
        return {"threshold": None, "CP": None, "CR": None, "CF1": None}
    levels = np.unique(np.quantile(positive.astype(np.float64), np.linspace(0.0, 1.0, candidates)).astype(np.float32))
    grid = np.clip(np.nextafter(levels, np.float32(-np.inf)), 0.0, 1.0)  # ascending
    columns = np.flatnonzero(use)
    # Per class (column) and candidate: how many samples, and how many positives, score strictly above it.
    predicted = np.stack([len(scores) - np.searchsorted(np.sort(scores[:, k]), grid, side="right")
                          for k in columns], axis=1)
    tp = np.stack([targets[:, k].sum() - np.searchsorted(np.sort(scores[targets[:, k], k]), grid, side="right")
                   for k in columns], axis=1)
    cp = np.divide(tp, predicted, out=np.zeros(tp.shape), where=predicted > 0).mean(axis=1)
    cr = (tp / targets[:, columns].sum(axis=0)).mean(axis=1)
    cf1 = np.divide(2 * cp * cr, cp + cr, out=np.zeros(len(grid)), where=cp + cr > 0)
    best = len(grid) - 1 - int(np.argmax(cf1[::-1]))  # the highest threshold among equal CF1
    return {"threshold": float(grid[best]), "CP": float(cp[best]), "CR": float(cr[best]), "CF1": float(cf1[best])}
