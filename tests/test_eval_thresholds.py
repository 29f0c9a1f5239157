"""Threshold tuning against brute force, and upstream's threshold-file format."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fiftyone_ram.evaluation import metrics as M
from fiftyone_ram.evaluation.thresholds import tune_class_thresholds, tune_thresholds, write_thresholds
from fiftyone_ram.tag_files import read_thresholds


def _problem(seed: int = 0, n: int = 400, c: int = 8):
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < 0.15
    scores = np.clip(rng.normal(0.35, 0.15, (n, c)) + 0.3 * targets, 0, 1).astype(np.float32)
    scores = np.round(scores * 50) / 50  # ties, as two-decimal sigmoids would have
    return scores.astype(np.float32), targets


def _prf(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = (predicted & truth).sum()
    return tp / max(predicted.sum(), 1), tp / truth.sum(), 2 * tp / (predicted.sum() + truth.sum())


def test_best_f1_threshold_matches_brute_force_with_either_comparison():
    scores, targets = _problem()
    rows = tune_class_thresholds(M.rank_positives(scores, targets))
    for k, row in enumerate(rows):
        s, t = scores[:, k], targets[:, k]
        best = max(_prf(s >= c, t)[2] for c in np.unique(s))
        assert row["status"] == "tuned" and row["f1"] == pytest.approx(best)
        thr = np.float32(row["threshold"])
        for predicted in (s >= thr, s > thr):  # upstream's batch rule and generate_tag's strict rule
            p, r, f = _prf(predicted, t)
            assert (p, r, f) == pytest.approx((row["precision"], row["recall"], row["f1"]))


def test_target_precision_gives_the_most_recall_at_that_precision():
    scores, targets = _problem(1)
    rows = tune_class_thresholds(M.rank_positives(scores, targets), target_precision=0.6)
    for k, row in enumerate(rows):
        s, t = scores[:, k], targets[:, k]
        feasible = [_prf(s >= c, t) for c in np.unique(s) if _prf(s >= c, t)[0] >= 0.6]
        if not feasible:
            assert row["status"] == "target_unreachable" and row["threshold"] is None
            continue
        assert row["precision"] >= 0.6
        assert row["recall"] == pytest.approx(max(r for _, r, _ in feasible))
    assert any(r["status"] == "tuned" for r in rows)


def test_tuned_thresholds_merge_into_the_full_list_and_round_trip_the_file(tmp_path):
    scores, targets = _problem(2, c=4)
    targets[:, 3] = False
    targets[0, 3] = True  # one positive only
    full_list = ["a", "b", "c", "d", "e", "f"]
    results = SimpleNamespace(ranked=M.rank_positives(scores, targets), classes=np.array(["b", "c", "d", "f"]),
                              model_tags=full_list, base_thresholds=None)
    base = np.array([0.65, 0.8, 0.9, 0.7, 0.55, 0.6], dtype=np.float32)
    tuning = tune_thresholds(results, base_thresholds=base, min_positives=2)
    status = {row["tag"]: row["status"] for row in tuning.table}
    assert status == {"b": "tuned", "c": "tuned", "d": "tuned", "f": "too_few_positives"}
    untouched = [0, 4, 5]
    np.testing.assert_array_equal(tuning.thresholds[untouched], base[untouched])
    assert all(tuning.thresholds[full_list.index(r["tag"])] == np.float32(r["threshold"]) for r in tuning.tuned())
    path = tuning.write(tmp_path / "tuned.txt")
    assert len(path.read_text().splitlines()) == len(full_list)
    np.testing.assert_array_equal(read_thresholds(path, len(full_list)), tuning.thresholds)
    with pytest.raises(ValueError, match="base_thresholds"):
        tune_thresholds(SimpleNamespace(**{**results.__dict__, "base_thresholds": None}), tag_list=full_list[:5])


def test_threshold_files_are_exact_for_float32(tmp_path):
    values = np.random.default_rng(3).random(50).astype(np.float32)
    values[:3] = [0.65, 0.8, 1.0]
    path = write_thresholds(tmp_path / "t.txt", values)
    assert path.read_text().splitlines()[:3] == ["0.65", "0.8", "1"]  # upstream's look where it is exact
    np.testing.assert_array_equal(read_thresholds(path, 50), values)
    with pytest.raises(ValueError):
        write_thresholds(tmp_path / "bad.txt", [0.5, np.nan])


def test_a_positive_with_the_lowest_score_is_kept_by_a_strict_comparison():
    scores = np.array([[0.4], [0.3], [0.2]], dtype=np.float32)
    targets = np.array([[False], [False], [True]])
    (row,) = tune_class_thresholds(M.rank_positives(scores, targets))
    thr = np.float32(row["threshold"])
    assert (scores[:, 0] > thr).all() and (row["precision"], row["recall"]) == pytest.approx((1 / 3, 1.0))
