"""Persistent FiftyOne datasets made from image files (what ``fiftyone-ram tag ... --dataset NAME`` tags)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import fiftyone as fo


def add_images(dataset_name: str, paths: Iterable[str | Path]) -> fo.Dataset:
    """The persistent dataset ``dataset_name`` (created if needed) with ``paths`` added unless already in it.

    Paths that do not exist are added too: the tagging run then records them as unreadable instead of
    dropping them silently.
    """
    if fo.dataset_exists(dataset_name):
        dataset = fo.load_dataset(dataset_name)
    else:
        dataset = fo.Dataset(dataset_name, persistent=True)
    known = set(dataset.values("filepath"))
    new = list(dict.fromkeys(str(Path(p).expanduser().resolve()) for p in paths))
    new = [p for p in new if p not in known]
    if new:
        dataset.add_samples([fo.Sample(filepath=p) for p in new])
    return dataset
