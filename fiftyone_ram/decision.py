"""The one rule that turns scores into tags, used by the Tagger, the FiftyOne labels and the benchmarks.

A tag is emitted when its probability is *strictly above* its threshold, never when it is one of the label
set's excluded tags, and tags come out in tag-list order whatever order they were asked in. Strictly above
is upstream's ``generate_tag`` (the output users compare with); upstream's ``batch_inference.py`` writes
``>=``, which differs only for a probability exactly equal to its threshold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fiftyone_ram.errors import OptionError

#: What a threshold may be. A probability is compared strictly, so 0 keeps every tag scored above 0 and 1
#: keeps none: both ends are allowed (1 is how a tag is switched off, 0 how one is always kept).
THRESHOLD_RULE = "a threshold is a probability: a finite number with 0 <= t <= 1"


def check_threshold(value: Any, what: str = "threshold") -> float:
    """``value`` as a float when it is a valid threshold; else :class:`OptionError` naming ``what`` (the
    option, file line or tag the value came from)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionError(f"{what}: {value!r} is not a number ({THRESHOLD_RULE})")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise OptionError(f"{what}: {number!r} is not a valid threshold ({THRESHOLD_RULE})")
    return number


def check_thresholds(values: np.ndarray, what: str = "thresholds") -> np.ndarray:
    """``values`` unchanged when every entry is a valid threshold; else the first bad one, by position."""
    array = np.asarray(values)
    bad = ~np.isfinite(array) | (array < 0) | (array > 1)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise OptionError(f"{what}: value {position + 1} of {array.size} is {float(array.flat[position])!r}, "
                          f"not a valid threshold ({THRESHOLD_RULE})")
    return values


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
