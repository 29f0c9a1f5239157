"""Multi-label tagging metrics on a (samples × classes) score array: AP / mAP, P/R/F1 at thresholds, top-k.

Why this is written by hand: scikit-learn's ``average_precision_score`` builds the full precision-recall
curve of every class from an argsort of the whole score column (≈10 ms per class at 20,000 samples, so
≈45 s for RAM's 4585 classes). Average precision only needs, for each *positive*, how many scores lie
above it and how many tie with it. With 1% positives that is found by sorting the class's scores once
(numpy's SIMD float sort, no argsort or gather) restricted to values at or above the lowest positive,
then binary-searching the few positives into it. Columns are processed in small transposed blocks, so
the extra memory is a few MB whatever the array size.

Conventions (documented in README_SECTION.md):

* AP of a class = mean over its positives of the precision at the positive's rank (non-interpolated, as
  upstream ``ram/utils/metrics.py`` and scikit-learn); we divide by the number of positives exactly,
  upstream adds 1e-8 to the divisor (a relative difference of at most 1e-8).
* Ties (``ties=``): ``"pessimistic"`` (default) ranks tied negatives before tied positives, i.e. the
  upstream formula with the least favourable order of equal scores; ``"optimistic"`` the opposite;
  ``"sklearn"`` scores each group of equal scores as one threshold, exactly as scikit-learn. Upstream
  sorts with numpy's unstable argsort, so its value on tied data is some order in between.
* Classes without positives (``empty_classes=``): ``"exclude"`` (default) leaves them out of mAP and of
  the macro averages CP / CR; ``"zero"`` counts them as AP 0, P 0, R 0, as upstream does.
* A sample predicts a class when its score is strictly above the threshold: the tagger's own rule
  (:mod:`fiftyone_ram.decision`; upstream's ``batch_inference.py`` writes ``>=``, which differs only for a
  score exactly equal to its threshold). Missing scores are ``-inf``: ranked below every real score and
  never predicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

import numpy as np

Ties = Literal["pessimistic", "optimistic", "sklearn"]
EmptyClasses = Literal["exclude", "zero"]
TIES: tuple[str, ...] = ("pessimistic", "optimistic", "sklearn")
EMPTY_CLASSES: tuple[str, ...] = ("exclude", "zero")

#: Columns per transposed block: 128 × 20,000 float32 is 10 MB and keeps the transpose cache-friendly.
DEFAULT_COLUMN_CHUNK = 128
#: Rows per block for the row-wise (top-k) pass.
DEFAULT_ROW_CHUNK = 1024


# --------------------------------------------------------------------------------------------------
# Containers


@dataclass(frozen=True)
class RankedPositives:
    """Where each positive of each class ranks among that class's scores.

    This is everything AP, PR curves and threshold tuning need, and it is small (one row per positive),
    so evaluation runs store it instead of the score array. Per class, positives are in descending
    score order; class ``k`` owns rows ``offsets[k]:offsets[k + 1]``.
    """

    offsets: np.ndarray  # (C + 1,) int64
    scores: np.ndarray  # (P,) the positives' scores, exactly (input precision), descending within a class
    n_above: np.ndarray  # (P,) samples (positive or not) scoring strictly higher
    n_tied: np.ndarray  # (P,) samples scoring exactly the same, this positive included
    below: np.ndarray  # (P,) highest score strictly below this one (-inf if none)
    num_samples: int

    @property
    def num_classes(self) -> int:
        return len(self.offsets) - 1

    @property
    def support(self) -> np.ndarray:
        return np.diff(self.offsets)

    def class_rows(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "offsets": self.offsets.tolist(),
            "scores": self.scores.astype(float).tolist(),
            "n_above": self.n_above.tolist(),
            "n_tied": self.n_tied.tolist(),
            "below": self.below.astype(float).tolist(),
            "num_samples": int(self.num_samples),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RankedPositives":
        return cls(
            offsets=np.asarray(d["offsets"], dtype=np.int64),
            scores=np.asarray(d["scores"], dtype=np.float64),
            n_above=np.asarray(d["n_above"], dtype=np.int64),
            n_tied=np.asarray(d["n_tied"], dtype=np.int64),
            below=np.asarray(d["below"], dtype=np.float64),
            num_samples=int(d["num_samples"]),
        )

    def subset(self, classes: Sequence[int]) -> "RankedPositives":
        """The same data restricted to (and reordered as) the given class indices."""
        classes = np.asarray(classes, dtype=np.int64)
        rows = [np.arange(self.offsets[k], self.offsets[k + 1]) for k in classes]
        idx = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        sizes = np.array([len(r) for r in rows], dtype=np.int64)
        return RankedPositives(
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            scores=self.scores[idx],
            n_above=self.n_above[idx],
            n_tied=self.n_tied[idx],
            below=self.below[idx],
            num_samples=self.num_samples,
        )


@dataclass(frozen=True)
class ClassCounts:
    """Per-class true positives, false positives and false negatives of one prediction rule."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @property
    def support(self) -> np.ndarray:
        return self.tp + self.fn

    @property
    def predicted(self) -> np.ndarray:
        return self.tp + self.fp

    def precision(self) -> np.ndarray:
        return _safe_div(self.tp, self.predicted)

    def recall(self) -> np.ndarray:
        return _safe_div(self.tp, self.support)

    def f1(self) -> np.ndarray:
        return _safe_div(2 * self.tp, self.predicted + self.support)

    def subset(self, classes: Sequence[int]) -> "ClassCounts":
        classes = np.asarray(classes, dtype=np.int64)
        return ClassCounts(self.tp[classes], self.fp[classes], self.fn[classes])

    def to_dict(self) -> dict[str, list[int]]:
        return {"tp": self.tp.tolist(), "fp": self.fp.tolist(), "fn": self.fn.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassCounts":
        return cls(*(np.asarray(d[k], dtype=np.int64) for k in ("tp", "fp", "fn")))


@dataclass
class ArrayEvaluation:
    """Everything :func:`evaluate_arrays` measured."""

    ranked: RankedPositives
    ap: np.ndarray  # (C,) NaN where the class has no positives
    mAP: float
    counts: ClassCounts | None  # at the thresholds, if any were given
    summary: dict[str, float]  # CP, CR, CF1, OP, OR, OF1 at the thresholds
    top_k: dict[int, ClassCounts] = field(default_factory=dict)
    top_k_summary: dict[int, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Average precision


def average_precision(ranked: RankedPositives, *, ties: Ties = "pessimistic") -> np.ndarray:
    """AP of every class (NaN for classes without positives), from the positives' ranks."""
    _check_choice("ties", ties, TIES)
    support = ranked.support
    prec = _precision_at_positives(ranked, ties)
    class_of = np.repeat(np.arange(ranked.num_classes), support)
    sums = np.bincount(class_of, weights=prec, minlength=ranked.num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, sums / np.maximum(support, 1), np.nan)


def mean_average_precision(ap: np.ndarray, *, empty_classes: EmptyClasses = "exclude") -> float:
    """mAP over classes; classes without positives (NaN AP) are left out or count as 0."""
    _check_choice("empty_classes", empty_classes, EMPTY_CLASSES)
    ap = np.asarray(ap, dtype=float)
    if empty_classes == "zero":
        return float(np.nan_to_num(ap, nan=0.0).mean()) if ap.size else float("nan")
    valid = ap[~np.isnan(ap)]
    return float(valid.mean()) if valid.size else float("nan")


def _tie_groups(ranked: RankedPositives) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per positive: its class, the positives of its class scoring strictly higher, its tie-group size."""
    total = len(ranked.scores)
    class_of = np.repeat(np.arange(ranked.num_classes), ranked.support)
    if total == 0:
        empty = np.zeros(0, np.int64)
        return class_of, empty, empty
    new_group = np.ones(total, dtype=bool)
    new_group[1:] = (ranked.scores[1:] != ranked.scores[:-1]) | (class_of[1:] != class_of[:-1])
    group_id = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, total))
    pos_above = starts[group_id] - ranked.offsets[class_of]
    return class_of, pos_above, sizes[group_id]


def _precision_at_positives(ranked: RankedPositives, ties: str) -> np.ndarray:
    class_of, pos_above, group_size = _tie_groups(ranked)
    if len(class_of) == 0:
        return np.zeros(0)
    index_in_class = np.arange(len(class_of)) - ranked.offsets[class_of]
    j = index_in_class - pos_above + 1  # 1-based position of this positive inside its tie group
    n_above = ranked.n_above.astype(np.float64)
    if ties == "optimistic":
        return (pos_above + j) / (n_above + j)
    if ties == "pessimistic":
        tied_negatives = ranked.n_tied - group_size
        return (pos_above + j) / (n_above + tied_negatives + j)
    return (pos_above + group_size) / (n_above + ranked.n_tied)


# --------------------------------------------------------------------------------------------------
# Precision-recall curves


@dataclass(frozen=True)
class PRCurve:
    """One point per distinct positive score ``s``: predict every sample scoring ``>= s``."""

    thresholds: np.ndarray  # descending
    precision: np.ndarray
    recall: np.ndarray
    tp: np.ndarray
    predicted: np.ndarray
    below: np.ndarray  # highest score strictly below each threshold
    support: int

    def f1(self) -> np.ndarray:
        return _safe_div(2 * self.tp, self.predicted + self.support)

    def interpolated(self, recall_points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """COCO-style precision envelope at fixed recall points (for plotting)."""
        if recall_points is None:
            recall_points = np.linspace(0.0, 1.0, 101)
        if self.support == 0 or len(self.recall) == 0:
            return recall_points, np.zeros_like(recall_points)
        envelope = np.maximum.accumulate(self.precision[::-1])[::-1]
        idx = np.searchsorted(self.recall, recall_points, side="left")
        out = np.zeros_like(recall_points, dtype=float)
        ok = idx < len(envelope)
        out[ok] = envelope[idx[ok]]
        return recall_points, out


def pr_curve(ranked: RankedPositives, k: int) -> PRCurve:
    """Exact precision-recall curve of class ``k`` at each of its positives' scores."""
    rows = ranked.class_rows(k)
    scores = ranked.scores[rows]
    support = len(scores)
    finite = np.isfinite(scores)
    if support == 0 or not finite.any():
        z = np.zeros(0)
        return PRCurve(z, z, z, z.astype(np.int64), z.astype(np.int64), z, support)
    # Last positive of each tie group: there the whole group and everything above it is predicted.
    last = np.ones(support, dtype=bool)
    last[:-1] = scores[1:] != scores[:-1]
    last &= finite
    tp = np.flatnonzero(last) + 1
    predicted = (ranked.n_above[rows] + ranked.n_tied[rows])[last]
    return PRCurve(
        thresholds=scores[last].astype(float),
        precision=tp / predicted,
        recall=tp / support,
        tp=tp,
        predicted=predicted,
        below=ranked.below[rows][last].astype(float),
        support=support,
    )


# --------------------------------------------------------------------------------------------------
# Precision / recall / F1 summaries


def summarize_counts(counts: ClassCounts, *, empty_classes: EmptyClasses = "exclude") -> dict[str, float]:
    """CP, CR, CF1 (macro, F1 = harmonic mean of CP and CR as in ML-GCN and the RAM++ paper) and
    OP, OR, OF1 (micro, over every evaluated class, including predictions of classes without positives)."""
    _check_choice("empty_classes", empty_classes, EMPTY_CLASSES)
    use = counts.support > 0 if empty_classes == "exclude" else np.ones(len(counts.tp), dtype=bool)
    cp = float(counts.precision()[use].mean()) if use.any() else float("nan")
    cr = float(counts.recall()[use].mean()) if use.any() else float("nan")
    tp, predicted, support = int(counts.tp.sum()), int(counts.predicted.sum()), int(counts.support.sum())
    op = tp / predicted if predicted else 0.0
    orr = tp / support if support else 0.0
    return {
        "CP": cp,
        "CR": cr,
        "CF1": _harmonic(cp, cr),
        "OP": op,
        "OR": orr,
        "OF1": _harmonic(op, orr),
        "tp": tp,
        "fp": int(counts.fp.sum()),
        "fn": int(counts.fn.sum()),
    }


def counts_from_pairs(num_classes: int, positives: np.ndarray, predicted: np.ndarray) -> ClassCounts:
    """Counts from (sample, class) index pairs, shape (n, 2), each pair listed once."""
    pos_key = positives[:, 0].astype(np.int64) * num_classes + positives[:, 1]
    pred_key = predicted[:, 0].astype(np.int64) * num_classes + predicted[:, 1]
    hit = np.isin(pred_key, pos_key, assume_unique=True)
    tp = np.bincount(predicted[hit, 1], minlength=num_classes)
    fp = np.bincount(predicted[~hit, 1], minlength=num_classes)
    fn = np.bincount(positives[:, 1], minlength=num_classes) - tp
    return ClassCounts(tp.astype(np.int64), fp.astype(np.int64), fn.astype(np.int64))


# --------------------------------------------------------------------------------------------------
# The array pass


def evaluate_arrays(
    scores: np.ndarray,
    targets: Any,
    *,
    thresholds: float | np.ndarray | None = None,
    top_k: Sequence[int] = (),
    ties: Ties = "pessimistic",
    empty_classes: EmptyClasses = "exclude",
    column_chunk: int = DEFAULT_COLUMN_CHUNK,
    row_chunk: int = DEFAULT_ROW_CHUNK,
) -> ArrayEvaluation:
    """mAP, per-class AP and P/R/F1 (at ``thresholds`` and top-k) from scores and 0/1 targets.

    Args:
        scores: (N, C) float array, any memory order (float64 is kept, other floats become float32).
            ``-inf`` means no score.
        targets: (N, C) bool/0-1 array or a scipy sparse matrix of the same shape.
        thresholds: a float or a (C,) array; a class is predicted when ``score > threshold``.
        top_k: values of k for which the k highest-scored classes of each sample are predicted
            (all classes tying with the k-th score are included).
    """
    _check_choice("ties", ties, TIES)
    scores = _check_scores(scores)
    n, c = scores.shape
    targets = _Targets(targets, (n, c))
    thr = None if thresholds is None else _broadcast_thresholds(thresholds, c, _work_dtype(scores))

    ranked_parts: list[tuple[np.ndarray, ...]] = []
    support = np.zeros(c, dtype=np.int64)
    tp = np.zeros(c, dtype=np.int64)
    predicted = np.zeros(c, dtype=np.int64)
    for c0, block, positives in _column_blocks(scores, targets, column_chunk):
        if thr is not None:
            predicted[c0 : c0 + len(block)] = np.count_nonzero(block > thr[c0 : c0 + len(block), None], axis=1)
        for j, pos in enumerate(positives):
            k = c0 + j
            support[k] = len(pos)
            if len(pos) == 0:
                continue
            part = _rank_column(block[j], pos)
            ranked_parts.append(part)
            if thr is not None:
                tp[k] = np.count_nonzero(part[0] > thr[k])

    ranked = _assemble_ranked(ranked_parts, support, n)
    ap = average_precision(ranked, ties=ties)
    result = ArrayEvaluation(
        ranked=ranked,
        ap=ap,
        mAP=mean_average_precision(ap, empty_classes=empty_classes),
        counts=None,
        summary={},
    )
    if thr is not None:
        result.counts = ClassCounts(tp, predicted - tp, support - tp)
        result.summary = summarize_counts(result.counts, empty_classes=empty_classes)
    if top_k:
        result.top_k = top_k_counts(scores, targets, top_k, row_chunk=row_chunk)
        result.top_k_summary = {
            k: summarize_counts(v, empty_classes=empty_classes) for k, v in result.top_k.items()
        }
    return result


def rank_positives(scores: np.ndarray, targets: Any, *, column_chunk: int = DEFAULT_COLUMN_CHUNK) -> RankedPositives:
    """The positives' ranks alone (see :func:`evaluate_arrays`)."""
    return evaluate_arrays(scores, targets, column_chunk=column_chunk).ranked


def top_k_counts(
    scores: np.ndarray, targets: Any, ks: Sequence[int], *, row_chunk: int = DEFAULT_ROW_CHUNK
) -> dict[int, ClassCounts]:
    """Counts when each sample predicts its k highest-scored classes (ties with the k-th included)."""
    scores = _check_scores(scores)
    n, c = scores.shape
    if not isinstance(targets, _Targets):
        targets = _Targets(targets, (n, c))
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks):
        raise ValueError(f"top-k values must be >= 1, got {ks}")
    kk = [min(k, c) for k in ks]
    out = {k: [np.zeros(c, np.int64), np.zeros(c, np.int64)] for k in ks}  # tp, predicted
    support = np.zeros(c, dtype=np.int64)
    for r0 in range(0, n if c else 0, row_chunk):
        r1 = min(n, r0 + row_chunk)
        block = np.asarray(scores[r0:r1], dtype=_work_dtype(scores))
        # One partition at the largest k; the k-th values for smaller k come from sorting that small tail.
        top = np.partition(block, c - kk[-1], axis=1)[:, c - kk[-1] :]
        top = np.sort(top, axis=1)[:, ::-1]
        rows, cols = targets.rows(r0, r1)
        support += np.bincount(cols, minlength=c)
        scored = block > -np.inf
        for k, kc in zip(ks, kk):
            pred = (block >= top[:, kc - 1, None]) & scored
            out[k][1] += np.count_nonzero(pred, axis=0)
            hit = pred[rows, cols]
            out[k][0] += np.bincount(cols[hit], minlength=c)
    return {k: ClassCounts(tp, pred - tp, support - tp) for k, (tp, pred) in out.items()}


def _rank_column(col: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ranks of one class's positives in its score column (see module docstring)."""
    asc = col[pos]
    asc.sort()
    lowest = asc[0]
    at_or_above = col >= lowest
    candidates = col[at_or_above]  # everything that can outrank or tie a positive
    candidates.sort()
    m = len(candidates)
    first_ge = np.searchsorted(candidates, asc, side="left")
    n_above = m - np.searchsorted(candidates, asc, side="right")
    n_tied = m - first_ge - n_above
    below = candidates[np.maximum(first_ge - 1, 0)]
    if m < len(col):  # the lowest positives' neighbour below lies outside the candidates
        below[first_ge == 0] = np.max(col, where=~at_or_above, initial=-np.inf)
    else:
        below[first_ge == 0] = -np.inf
    return asc[::-1], n_above[::-1], n_tied[::-1], below[::-1]


def _assemble_ranked(parts: list[tuple[np.ndarray, ...]], support: np.ndarray, n: int) -> RankedPositives:
    if parts:
        scores, n_above, n_tied, below = (np.concatenate(x) for x in zip(*parts))
    else:
        scores = below = np.zeros(0, np.float32)
        n_above = n_tied = np.zeros(0, np.int64)
    count = np.int32 if n < 2**31 else np.int64  # one row per positive: keep it compact
    return RankedPositives(
        offsets=np.concatenate([[0], np.cumsum(support)]).astype(np.int64),
        scores=scores,
        n_above=n_above.astype(count, copy=False),
        n_tied=n_tied.astype(count, copy=False),
        below=below,
        num_samples=n,
    )


def _column_blocks(
    scores: np.ndarray, targets: "_Targets", chunk: int
) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """Transposed blocks of ``chunk`` columns with each column's positives.

    A Fortran-ordered (or transposed C-ordered) array is read in place; otherwise each block is copied
    into one reused buffer, which is where the memory bound comes from. float64 input stays float64:
    rounding it to float32 would create ties that change AP."""
    n, c = scores.shape
    dtype = _work_dtype(scores)
    in_place = scores.dtype == dtype and scores.flags.f_contiguous
    buf = None if in_place else np.empty((min(chunk, c), n), dtype=dtype)
    for c0 in range(0, c, chunk):
        c1 = min(c, c0 + chunk)
        if in_place:
            block = scores[:, c0:c1].T
        else:
            block = buf[: c1 - c0]
            np.copyto(block, scores[:, c0:c1].T, casting="same_kind")
        if np.isnan(block.min()):  # min propagates NaN without allocating a mask
            raise ValueError(f"scores contain NaN (columns {c0}..{c1 - 1}); use -inf for a missing score")
        yield c0, block, targets.columns(c0, c1)


class _Targets:
    """0/1 targets (dense or scipy sparse) kept as the (row, column) list of positives.

    With 1% positives this list is small, and one row-major scan of a dense array is far cheaper than
    strided scans of its column blocks."""

    def __init__(self, targets: Any, shape: tuple[int, int]):
        if hasattr(targets, "tocoo") and hasattr(targets, "nnz"):  # scipy.sparse
            if tuple(targets.shape) != shape:
                raise ValueError(f"targets have shape {targets.shape}, scores {shape}")
            coo = targets.tocsr().tocoo()  # canonical: row-major, duplicates summed
            keep = coo.data != 0
            rows, cols = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
        else:
            dense = np.asarray(targets)
            if dense.shape != shape:
                raise ValueError(f"targets have shape {dense.shape}, scores {shape}")
            rows, cols = np.nonzero(dense)  # row-major order
        self.shape = shape
        self._rows, self._cols = rows, cols
        by_col = np.argsort(cols, kind="stable")
        self._rows_by_col = rows[by_col]
        self._col_bounds = np.searchsorted(cols[by_col], np.arange(shape[1] + 1))
        self._row_bounds = np.searchsorted(rows, np.arange(shape[0] + 1))

    def columns(self, c0: int, c1: int) -> list[np.ndarray]:
        b = self._col_bounds
        return [self._rows_by_col[b[k] : b[k + 1]] for k in range(c0, c1)]

    def rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """(row within the block, column) of every positive in rows r0..r1."""
        a, b = self._row_bounds[r0], self._row_bounds[r1]
        return self._rows[a:b] - r0, self._cols[a:b]


# --------------------------------------------------------------------------------------------------
# Small helpers


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D (samples, classes) array, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float32)
    return scores


def _work_dtype(scores: np.ndarray) -> type:
    return np.float64 if scores.dtype == np.float64 else np.float32


def _broadcast_thresholds(thresholds: float | np.ndarray, c: int, dtype: type = np.float32) -> np.ndarray:
    """Thresholds in the scores' precision: upstream compares float32 scores with float32 thresholds."""
    thr = np.asarray(thresholds, dtype=dtype)
    if thr.ndim == 0:
        return np.full(c, thr, dtype=dtype)
    if thr.shape != (c,):
        raise ValueError(f"thresholds must be a float or have one value per class ({c}), got shape {thr.shape}")
    return thr


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _harmonic(a: float, b: float) -> float:
    if np.isnan(a) or np.isnan(b):
        return float("nan")
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
