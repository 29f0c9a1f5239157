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
