"""Array metrics: AP / mAP against scikit-learn and upstream's formula, P/R/F1 and top-k by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

from fiftyone_ram.evaluation import metrics as M


def _random_problem(seed: int, n: int = 1500, c: int = 25, rate: float = 0.03, dtype=np.float64):
    """Tie-free scores (a random permutation of distinct values per class) and ~``rate`` positives."""
    rng = np.random.default_rng(seed)
    scores = np.stack([(rng.permutation(n) + 0.5) / n for _ in range(c)], axis=1).astype(dtype)
    targets = rng.random((n, c)) < rate
    targets[rng.integers(0, n, c), np.arange(c)] = True  # every class has a positive
    return scores, targets


def upstream_ap(scores: np.ndarray, targets: np.ndarray, order: np.ndarray) -> float:
    """Upstream's ``get_mAP`` formula for one class, given the descending order it sorted into."""
    hits = targets[order].astype(float)
    precision_at_rank = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_rank * hits).sum() / (hits.sum() + 1e-8))


def test_map_equals_sklearn_macro_on_tie_free_data():
    for dtype in (np.float64, np.float32):
        scores, targets = _random_problem(0, dtype=dtype)
        for k in range(scores.shape[1]):
            assert len(np.unique(scores[:, k])) == scores.shape[0], "the data must be tie-free"
        result = M.evaluate_arrays(scores, targets)
        expected = average_precision_score(targets, scores, average=None)
        np.testing.assert_allclose(result.ap, expected, rtol=0, atol=1e-9)
        assert result.mAP == pytest.approx(average_precision_score(targets, scores, average="macro"), abs=1e-9)


def test_memory_layouts_chunks_and_sparse_targets_give_the_same_numbers():
    scores, targets = _random_problem(1, n=700, c=13, rate=0.05, dtype=np.float32)
    reference = M.evaluate_arrays(scores, targets, thresholds=0.6, top_k=(2,))
    variants = [
        M.evaluate_arrays(np.asfortranarray(scores), targets, thresholds=0.6, top_k=(2,)),
        M.evaluate_arrays(scores, sp.csr_matrix(targets), thresholds=0.6, top_k=(2,), column_chunk=4, row_chunk=33),
        M.evaluate_arrays(scores, targets.astype(np.int8), thresholds=np.full(13, 0.6), top_k=(2,), column_chunk=1),
    ]
    for v in variants:
        np.testing.assert_array_equal(v.ap, reference.ap)
        np.testing.assert_array_equal(v.counts.tp, reference.counts.tp)
        np.testing.assert_array_equal(v.counts.fp, reference.counts.fp)
        np.testing.assert_array_equal(v.top_k[2].tp, reference.top_k[2].tp)
        np.testing.assert_array_equal(v.top_k[2].fp, reference.top_k[2].fp)


def test_ties_follow_upstreams_formula_with_a_stated_order():
    """Scores on a 0.05 grid tie a lot. Upstream sorts with ``np.argsort(s)[::-1]``, whose order among equal
    scores numpy leaves undefined; "pessimistic" is upstream's formula when tied negatives come first,
    "optimistic" when tied positives come first, and upstream's own argsort lands in between."""
    scores, targets = _random_problem(2, n=800, c=12, rate=0.08)
    scores = np.round(scores * 20) / 20
    ranked = M.rank_positives(scores, targets)
    pessimistic = M.average_precision(ranked, ties="pessimistic")
    optimistic = M.average_precision(ranked, ties="optimistic")
    for k in range(scores.shape[1]):
        s, t = scores[:, k], targets[:, k]
        # ascending by (score, key) then reversed, as upstream reverses an ascending argsort
        negatives_first = np.lexsort((1 - t.astype(int), s))[::-1]
        positives_first = np.lexsort((t.astype(int), s))[::-1]
        # upstream divides by P + 1e-8, we by P: a relative difference below 1e-8
        assert pessimistic[k] == pytest.approx(upstream_ap(s, t, negatives_first), rel=1e-7)
        assert optimistic[k] == pytest.approx(upstream_ap(s, t, positives_first), rel=1e-7)
        literal = upstream_ap(s, t, np.argsort(s)[::-1])
        assert pessimistic[k] - 1e-7 <= literal <= optimistic[k] + 1e-7
    assert (optimistic > pessimistic).any(), "the grid must create ties that matter"


def test_sklearn_tie_convention_equals_sklearn_on_tied_data():
    scores, targets = _random_problem(3, n=900, c=10, rate=0.06)
    scores = np.round(scores * 10) / 10
    ap = M.average_precision(M.rank_positives(scores, targets), ties="sklearn")
    np.testing.assert_allclose(ap, average_precision_score(targets, scores, average=None), atol=1e-9)


def test_hand_computed_case():
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.4]])
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]], dtype=bool)
    r = M.evaluate_arrays(scores, targets, thresholds=0.5, top_k=(1,))
    # class 0 ranks + - + -: AP = (1/1 + 2/3) / 2; class 1 ranks its only positive first: AP = 1
    np.testing.assert_allclose(r.ap, [(1 + 2 / 3) / 2, 1.0])
    assert r.mAP == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    # at 0.5: class 0 predicts samples 0, 1 (TP 1, FP 1, FN 1); class 1 predicts 1, 2 (TP 1, FP 1, FN 0)
    assert r.counts.tp.tolist() == [1, 1] and r.counts.fp.tolist() == [1, 1] and r.counts.fn.tolist() == [1, 0]
    s = r.summary
    assert s["CP"] == pytest.approx(0.5) and s["CR"] == pytest.approx(0.75)
    assert s["CF1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)
    assert s["OP"] == pytest.approx(2 / 4) and s["OR"] == pytest.approx(2 / 3)
    assert s["OF1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    np.testing.assert_allclose(r.counts.f1(), [0.5, 2 / 3])
    # top-1 predicts class 0 for samples 0, 1 and class 1 for samples 2, 3
    top1 = r.top_k[1]
    assert top1.tp.tolist() == [1, 0] and top1.fp.tolist() == [1, 2] and top1.fn.tolist() == [1, 1]
    assert r.top_k_summary[1]["CP"] == pytest.approx(0.25) and r.top_k_summary[1]["OR"] == pytest.approx(1 / 3)


def test_classes_without_positives_are_left_out_or_zero():
    scores = np.array([[0.9, 0.8, 0.7], [0.1, 0.6, 0.2], [0.4, 0.3, 0.9]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)  # class 2 has no positive
    excluded = M.evaluate_arrays(scores, targets, thresholds=0.5, empty_classes="exclude")
    zero = M.evaluate_arrays(scores, targets, thresholds=0.5, empty_classes="zero")
    assert np.isnan(excluded.ap[2])
    assert excluded.mAP == pytest.approx((1.0 + 0.5) / 2)
    assert zero.mAP == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    # at 0.5 class 0 predicts sample 0 (P 1), class 1 samples 0 and 1 (P 1/2), class 2 samples 0 and 2
    assert excluded.summary["CP"] == pytest.approx((1.0 + 0.5) / 2)
    assert zero.summary["CP"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    # class 2's two false positives count in the overall precision either way
    assert excluded.summary["OP"] == zero.summary["OP"] == pytest.approx(2 / 5)


def test_missing_scores_rank_last_and_are_never_predicted():
    scores = np.array([[0.9, -np.inf], [-np.inf, 0.2], [0.3, -np.inf]], dtype=np.float32)
    targets = np.array([[1, 1], [1, 0], [0, 0]], dtype=bool)
    r = M.evaluate_arrays(scores, targets, thresholds=-1.0, top_k=(2,))
    # class 0: ranks +(0.9) -(0.3) +(-inf): AP = (1 + 2/3) / 2; class 1: its positive is unscored, tied
    # with one negative: pessimistic rank 3
    np.testing.assert_allclose(r.ap, [(1 + 2 / 3) / 2, 1 / 3], rtol=1e-12)
    assert r.counts.tp.tolist() == [1, 0] and r.counts.fp.tolist() == [1, 1]
    assert r.top_k[2].tp.tolist() == [1, 0] and r.top_k[2].fp.tolist() == [1, 1]


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        M.evaluate_arrays(np.array([[0.1, np.nan]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="shape"):
        M.evaluate_arrays(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="ties"):
        M.average_precision(M.rank_positives(np.zeros((1, 1)), np.ones((1, 1))), ties="random")


def test_pr_curve_points_are_exact():
    scores, targets = _random_problem(4, n=300, c=3, rate=0.1)
    scores = np.round(scores * 8) / 8  # with ties
    ranked = M.rank_positives(scores, targets)
    for k in range(3):
        curve = M.pr_curve(ranked, k)
        for t, p, r in zip(curve.thresholds, curve.precision, curve.recall):
            predicted = scores[:, k] >= t
            tp = (predicted & targets[:, k]).sum()
            assert p == pytest.approx(tp / predicted.sum()) and r == pytest.approx(tp / targets[:, k].sum())
