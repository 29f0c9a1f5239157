"""Persistent FiftyOne datasets made from image files (what ``fiftyone-ram tag ... --dataset NAME`` tags)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import fiftyone as fo

from fiftyone_ram.errors import UserError
from fiftyone_ram.driver import claims
from fiftyone_ram.image_files import is_utf8, printable


class UndecodablePathError(UserError, ValueError):
    """A file name that is not valid UTF-8: MongoDB stores text as UTF-8 only."""


def sample_path(path: str | Path) -> str:
    """The absolute path a sample stores for a file: symlinks resolved (one file named two ways is one
    sample); a symbolic link loop is kept as given, made absolute, so that the tagging run records it as
    unreadable instead of crashing."""
    path = Path(path).expanduser()
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # "Symlink loop" is a RuntimeError before Python 3.13
        return os.path.abspath(path)


def add_images(dataset_name: str, paths: Iterable[str | Path]) -> fo.Dataset:
    """The persistent dataset ``dataset_name`` (created if needed) with ``paths`` added unless already in it.

    Paths that do not exist are added too: the tagging run then records them as unreadable instead of
    dropping them silently. Safe under concurrency: the dataset's lock (in the database) is held from reading
    its paths to adding the new ones, so runs adding the same files at once add each file once, and two runs
    creating the same dataset do not collide.
    """
    new = list(dict.fromkeys(sample_path(p) for p in paths))
    undecodable = [p for p in new if not is_utf8(p)]
    if undecodable:
        shown = printable(undecodable[0])
        raise UndecodablePathError(f"{len(undecodable)} path(s) are not valid UTF-8 (e.g. {shown}), which FiftyOne "
                                   f"cannot store: rename them; nothing was added")
    with claims.Holder() as holder, claims.dataset_lock(dataset_name, holder):
        if fo.dataset_exists(dataset_name):
            dataset = fo.load_dataset(dataset_name)
            dataset.reload()  # a dataset loaded earlier in this process may predate another run's additions
        else:
            dataset = fo.Dataset(dataset_name, persistent=True)
        if dataset.media_type is None and new:
            dataset.media_type = "image"  # set once, under the lock (FiftyOne refuses it once samples exist)
        known = set(dataset.values("filepath"))
        missing = [p for p in new if p not in known]
        if missing:
            dataset.add_samples([fo.Sample(filepath=p) for p in missing])
    return dataset
