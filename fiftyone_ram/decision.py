"""The one rule that turns scores into tags, used by the Tagger, the FiftyOne labels and the benchmarks.

A tag is emitted when its probability is *strictly above* its threshold, never when it is one of the label
set's excluded tags, and tags come out in tag-list order whatever order they were asked in. Strictly above
is upstream's ``generate_tag`` (the output users compare with); upstream's ``batch_inference.py`` writes
``>=``, which differs only for a probability exactly equal to its threshold.
"""

from __future__ import annotations

import numpy as np


def decide(probs: np.ndarray, thresholds: np.ndarray, *, indices: np.ndarray | None = None,
           excluded: np.ndarray | None = None) -> list[np.ndarray]:
    """Per row of ``probs`` (B, K), the columns that are tags, in tag-list order.

    ``thresholds`` (K,) or one number, compared as float32; ``indices`` (K,): each column's position in the
    tag list (None: the columns are the tag list); ``excluded``: a bool mask over the *tag list* of tags
    never emitted.
    """
    probs = np.atleast_2d(probs)
    columns = np.arange(probs.shape[1])
    positions = columns if indices is None else np.asarray(indices)
    keep = probs > np.asarray(thresholds, dtype=np.float32)  # thresholds are float32, as upstream's files
    if excluded is not None:
        keep &= ~np.asarray(excluded, dtype=bool)[positions]
    order = np.argsort(positions, kind="stable")
    return [order[row[order]] for row in keep]
