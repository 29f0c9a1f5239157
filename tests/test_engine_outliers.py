"""``find_outliers`` on synthetic region embeddings with known wrong tags.

Each generator draws categories made of several Gaussian modes (unit-scale centres, per-mode spreads) and
replaces a share of each category's rows by wrong tags: rows drawn from *other* categories' modes, random
vectors, or both. Precision and recall of the flags must both reach 0.85 with the default ``fraction=0.1``,
whatever the injected share (5 to 15 %), the dimension (64 to 768), the number of modes (1 to 5), the
spreads or the category sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_ram.engine import find_outliers, score_outliers


def synthetic(seed: int, *, dim: int = 128, categories: int = 8, modes: tuple[int, int] = (1, 5),
              sizes: tuple[int, int] = (80, 300), spread: tuple[float, float] = (0.4, 1.2), noise: float = 0.1,
              noise_kind: str = "other", mode_corr: float = 0.0, common: float = 0.0, tiny: int = 0,
              weights: str = "equal") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, categories, is_wrong). ``noise_kind``: other | random | mix; ``mode_corr``: how much a
    category's modes share a direction; ``common``: a direction shared by every row (as CLIP embeddings);
    ``tiny``: that many categories get only 3 to 9 rows; ``weights``: equal or dirichlet mode sizes."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=dim) / np.sqrt(dim) * common * 1.5
    model = []
    for _ in range(categories):
        count = int(rng.integers(modes[0], modes[1] + 1))
        base = rng.normal(size=dim) / np.sqrt(dim)
        centres = np.sqrt(mode_corr) * base + np.sqrt(1 - mode_corr) * rng.normal(size=(count, dim)) / np.sqrt(dim)
        mix = np.full(count, 1 / count) if weights == "equal" else rng.dirichlet(np.full(count, 2.0))
        model.append((centres, rng.uniform(*spread, size=count), mix))

    def draw(c: int, n: int) -> np.ndarray:
        centres, spreads, mix = model[c]
        which = rng.choice(len(mix), size=n, p=mix)
        return centres[which] + spreads[which, None] * rng.normal(size=(n, dim)) / np.sqrt(dim) + shared

    rows, names, wrong = [], [], []
    for c in range(categories):
        small = c < tiny
        n = int(rng.integers(3, 10)) if small else int(rng.integers(*sizes))
        k = int(rng.random() < noise * n) if small else int(rng.binomial(n, noise))
        bad = []
        for _ in range(k):
            kind = noise_kind if noise_kind != "mix" else ("other", "random")[int(rng.integers(2))]
            if kind == "other":
                bad.append(draw(int(rng.choice([o for o in range(categories) if o != c])), 1)[0])
            else:
                bad.append(rng.normal(size=dim) / np.sqrt(dim) + shared)
        rows.append(np.concatenate([draw(c, n - k), np.reshape(bad, (k, dim))]))
        names += [f"category{c}"] * n
        wrong += [False] * (n - k) + [True] * k
    order = rng.permutation(len(names))
    return np.concatenate(rows)[order].astype(np.float32), np.asarray(names)[order], np.asarray(wrong)[order]


GENERATORS = {
    "other-category noise, d=128": dict(dim=128),
    "random noise, d=512": dict(dim=512, noise_kind="random"),
    "3 categories x 2 modes (noise clumps), d=64": dict(dim=64, categories=3, modes=(2, 2)),
    "mixed noise 15%, d=768": dict(dim=768, noise=0.15, noise_kind="mix", categories=6),
    "noise 5%, d=256": dict(dim=256, noise=0.05),
    "tiny categories, d=128": dict(dim=128, categories=12, tiny=4),
    "unequal modes sharing a direction, d=256": dict(dim=256, weights="dirichlet", mode_corr=0.5),
    "common direction (CLIP-like), d=512": dict(dim=512, common=0.5, spread=(0.6, 1.4), noise_kind="mix"),
    "one mode each, d=64": dict(dim=64, modes=(1, 1)),
}


def _precision_recall(flags: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    hits = int((flags & wrong).sum())
    return hits / max(int(flags.sum()), 1), hits / max(int(wrong.sum()), 1)


def blobs_with_flipped_labels(seed: int, *, dim: int = 64, categories: int = 5, modes: int = 3, per_mode: int = 60,
                              std: float = 2.0, flip: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's ``make_blobs``, ``modes`` blobs per category, a ``flip`` share of the rows given another
    category's name: the wrong tag sits on a mode of the category it does not name."""
    from sklearn.datasets import make_blobs

    embeddings, blob = make_blobs(categories * modes * per_mode, n_features=dim, centers=categories * modes,
                                  cluster_std=std, random_state=seed)
    truth = blob // modes
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(truth)) < flip
    named = np.where(wrong, (truth + rng.integers(1, categories, len(truth))) % categories, truth)
    return embeddings, np.asarray([f"category{c}" for c in named]), wrong


@pytest.mark.parametrize("seed", [0, 1])
def test_flipped_labels_of_make_blobs_are_found(seed):
    embeddings, categories, wrong = blobs_with_flipped_labels(seed)
    precision, recall = _precision_recall(find_outliers(embeddings, categories), wrong)
    assert precision >= 0.85 and recall >= 0.85, (precision, recall)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_injected_wrong_tags_are_found(name):
    embeddings, categories, wrong = synthetic(7, **GENERATORS[name])
    precision, recall = _precision_recall(find_outliers(embeddings, categories), wrong)
    assert precision >= 0.85 and recall >= 0.85, (name, precision, recall)


def test_seeded_and_deterministic():
    embeddings, categories, _ = synthetic(3, dim=64, categories=4)
    first = find_outliers(embeddings, categories, seed=5)
    assert np.array_equal(first, find_outliers(embeddings, categories, seed=5))
    assert first.dtype == bool and first.shape == (len(categories),)


def test_report_explains_each_flag():
    embeddings, categories, wrong = synthetic(11, dim=96, categories=5)
    report = score_outliers(embeddings, categories)
    assert set(report.reasons[report.flags]) <= {"far", "outlying_cluster", "foreign"}
    assert (report.reasons[~report.flags] == "").all()
    assert set(report.k) == set(categories) and all(k >= 1 for k in report.k.values())
    # Scores are in units of a cluster's typical distance: flagged rows score above the lenient cut.
    assert report.scores[report.flags & (report.reasons != "foreign")].min() > report.thresholds["lenient"]
    assert np.median(report.scores[~wrong]) == pytest.approx(1.0, abs=0.15)


def test_quota_rule_flags_the_fraction_of_each_category():
    embeddings, categories, _ = synthetic(5, dim=64, categories=4, sizes=(50, 120))
    flags = find_outliers(embeddings, categories, fraction=0.2, rule="quota")
    for name in set(categories):
        rows = categories == name
        assert flags[rows].sum() == round(0.2 * rows.sum())


def test_clean_data_is_left_alone():
    embeddings, categories, _ = synthetic(2, dim=128, noise=0.0, categories=5)
    assert find_outliers(embeddings, categories).mean() < 0.02


def test_categories_too_small_to_judge_are_flagged_only_inside_another_mode():
    embeddings, categories, _ = synthetic(4, dim=64, categories=3, modes=(1, 1), noise=0.0, sizes=(60, 80))
    dog = embeddings[categories == "category0"]
    stray = np.stack([dog[0] + 0.01, np.random.default_rng(0).normal(size=64) / 8]).astype(np.float32)
    flags = find_outliers(np.concatenate([embeddings, stray]), [*categories, "lone", "lone"])
    assert flags[-2:].tolist() == [True, False]  # the one sitting in category0's mode; the other can't be judged


def test_single_category_and_empty_input():
    embeddings, categories, wrong = synthetic(9, dim=64, categories=1, modes=(3, 3), noise_kind="random",
                                              sizes=(300, 400))
    precision, recall = _precision_recall(find_outliers(embeddings, categories), wrong)
    assert precision >= 0.85 and recall >= 0.85
    assert find_outliers(np.zeros((0, 8)), []).shape == (0,)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="N categories"):
        find_outliers(np.zeros((3, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="fraction"):
        find_outliers(np.zeros((3, 4)), ["a"] * 3, fraction=0.7)
    with pytest.raises(ValueError, match="NaN"):
        find_outliers(np.full((3, 4), np.nan), ["a"] * 3)
    with pytest.raises(ValueError, match="rule"):
        find_outliers(np.ones((3, 4)), ["a"] * 3, rule="top")


def test_per_category_judgement_still_finds_strays():
    """``cross_category=False`` (overlapping vocabularies) judges each category's crops alone: strays far from
    every mode are still found, and no row is called foreign."""
    embeddings, categories, wrong = synthetic(12, dim=128, categories=4, noise_kind="random")
    report = score_outliers(embeddings, categories, cross_category=False)
    precision, recall = _precision_recall(report.flags, wrong)
    assert precision >= 0.85 and recall >= 0.85 and "foreign" not in set(report.reasons)
