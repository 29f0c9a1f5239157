"""Scores to FiftyOne labels: one ``Classification`` per predicted tag, in a ``Classifications``.

FiftyOne 1.22 has no multi-label (sigmoid) output processor (its ``ClassifierOutputProcessor`` is softmax,
single label), so this is written here. Which tags are emitted is decided by the Tagger's own rule,
:func:`fiftyone_ram.decision.decide` (strictly above the threshold, excluded tags never, tag-list order).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import fiftyone.core.labels as fol
import numpy as np

from fiftyone_ram.decision import decide


def tag_thresholds(per_class: np.ndarray, indices: np.ndarray, global_threshold: float | None) -> np.ndarray:
    """The threshold that decides each scored tag: the per-class value, or one number for all."""
    if global_threshold is None:
        return per_class[indices]
    return np.full(len(indices), global_threshold, dtype=np.float32)


def to_classifications(probs: np.ndarray, indices: np.ndarray, limits: np.ndarray, names: Sequence[str],
                       excluded: np.ndarray, *, logits: np.ndarray | None = None,
                       captions: Sequence[str] | None = None,
                       keep_names: Collection[str] | None = None) -> list[fol.Classifications]:
    """Labels for a batch.

    ``probs`` (B, K) are sigmoid scores over the tag-list positions ``indices`` (K,), ``limits`` (K,) the
    thresholds used; each emitted ``Classification`` has ``confidence`` = score and attribute ``threshold``
    (rounded to 6 decimals: the float32 files hold values such as 0.65).
    ``logits`` (B, K), when given, are stored on the container (FiftyOne's ``Classifications.logits``, in
    the order of ``indices``). ``captions`` (Tag2Text) become the container's dynamic attribute ``caption``.
    ``keep_names`` restricts the emitted tags (apply_model's ``classes=``).
    """
    rows = decide(probs, limits, indices=indices, excluded=excluded)
    if keep_names is not None:
        allowed = np.asarray([names[i] in keep_names for i in indices], dtype=bool)
        rows = [columns[allowed[columns]] for columns in rows]
    rounded = [round(float(t), 6) for t in limits]
    labels = []
    for row, columns in enumerate(rows):
        tags = [
            fol.Classification(label=names[indices[j]], confidence=float(probs[row, j]), threshold=rounded[j])
            for j in columns
        ]
        label = fol.Classifications(classifications=tags)
        if logits is not None:
            label.logits = logits[row]
        if captions is not None:
            label["caption"] = captions[row]
        labels.append(label)
    return labels
