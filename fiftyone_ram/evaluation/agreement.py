"""How far a reduced-precision tagger's answers are from fp32's: the figures every speed benchmark prints.

Two numbers, because they fail differently: the tag-set F1 (the tags each side selects at the per-class
thresholds, pooled over all images) says whether users would see other tags; the max |Δprobability| says how
far any single score moved, which F1 hides when no threshold happens to lie between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    """Agreement of ``probabilities`` with the ``reference`` ones (see :func:`agreement`)."""

    tag_f1: float  # 2|A∩B| / (|A| + |B|) over (image, tag) pairs; 1.0 when neither side selects anything
    max_abs_delta: float  # largest |p - p_ref| over every score
    reference_tags: int  # tags the reference selects, all images together

    def __str__(self) -> str:
        return f"tag-set F1 {self.tag_f1:.4f}, max |Δprob| {self.max_abs_delta:.4f} ({self.reference_tags} tags)"

    def to_dict(self) -> dict[str, float]:
        return {"tag_f1": self.tag_f1, "max_abs_delta": self.max_abs_delta, "reference_tags": self.reference_tags}


def agreement(reference: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray | float) -> Agreement:
    """Compare two (N, C) probability arrays decided at the same per-class ``thresholds`` (C,) or one number."""
    reference, probabilities = np.asarray(reference, np.float32), np.asarray(probabilities, np.float32)
    if reference.shape != probabilities.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {probabilities.shape}")
    limits = np.asarray(thresholds, np.float32)
    want, got = reference > limits, probabilities > limits  # the tagger's own rule (fiftyone_ram.decision)
    selected = int(want.sum() + got.sum())
    f1 = 1.0 if selected == 0 else 2.0 * int((want & got).sum()) / selected
    delta = float(np.abs(reference.astype(np.float64) - probabilities).max()) if reference.size else 0.0
    return Agreement(f1, delta, int(want.sum()))
