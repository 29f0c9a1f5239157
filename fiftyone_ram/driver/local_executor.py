"""The local executor of the tagging driver: a claimed window of samples through the model in this process,
the results stored by sample id after each batch.

It stores what ``apply_model`` stores (the same labels, the same ``<field>_error`` strings; the tests compare
both), through FiftyOne's public ``set_values``. Written by hand for two things ``apply_model`` lacks: a
progress callback that does not also draw a console bar (``apply_model`` draws one whenever the process's
FiftyOne config says so, and changing that config is not ours to do inside the App server or a notebook), and
decoding in a thread beside the model (:func:`~fiftyone_ram.scheduling.prefetch`) instead of starting
DataLoader processes for every claimed window; with more workers planned, a DataLoader decodes as there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch

from fiftyone_ram.fiftyone.inputs import ImageBatch, collate_images
from fiftyone_ram.driver.writer import LabelWriter
from fiftyone_ram.scheduling import prefetch

logger = logging.getLogger(__name__)


def _batches(paths: Sequence[str], get_item, batch_size: int, num_workers: int, pin_memory: bool
             ) -> Iterator[ImageBatch]:
    """Collated batches of ``paths``, decoded ahead of the model.

    Up to one worker: a thread of this process (:func:`~fiftyone_ram.scheduling.prefetch`; PIL and torch
    release the GIL while they decode), which costs nothing to start for each claimed window, where a
    DataLoader forks a process per window. More workers: DataLoader processes, where decoding is what
    limits the run (tiny models, GPUs).
    """
    if num_workers <= 1:
        def decode() -> Iterator[ImageBatch]:
            for start in range(0, len(paths), batch_size):
                batch = collate_images([get_item({"filepath": p}) for p in paths[start:start + batch_size]])
                yield batch.pin_memory() if pin_memory else batch
        return prefetch(decode(), depth=2)
    return iter(torch.utils.data.DataLoader(_Files(paths, get_item), batch_size=batch_size, num_workers=num_workers,
                                            collate_fn=collate_images, pin_memory=pin_memory))


class _Files(torch.utils.data.Dataset):
    """The images of known file paths, decoded by the model's ``GetItem`` (in the DataLoader's workers)."""

    def __init__(self, paths: Sequence[str], get_item) -> None:
        self.paths = list(paths)
        self.get_item = get_item

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.get_item({"filepath": self.paths[index]})


def tag_locally(chunk, model, label_field: str, *, batch_size: int, num_workers: int, pin_memory: bool = False,
                skip_failures: bool = True, advance: Callable[[int], None] | None = None,
                errors: list[str] | None = None) -> None:
    """Tag the samples of ``chunk`` (a small view: a claimed window) with ``model`` (a ``RamModel``) into
    ``label_field``. A batch that fails inside the model is logged, its reason added to ``errors``, and left
    untagged (``skip_failures``) or raised; what was written before stays. ``advance(n)`` is called as each
    batch is stored."""
    ids, paths = chunk.values(["id", "filepath"])
    if not ids:
        return
    with LabelWriter(chunk, label_field) as writer:
        start = 0
        for batch in _batches(paths, model.build_get_item(), batch_size, num_workers, pin_memory):
            batch_ids = ids[start:start + len(batch)]
            start += len(batch)
            try:
                outputs = model.predict_outputs(batch)
            except Exception as exc:
                if not skip_failures:
                    raise
                logger.warning("Batch: %s - %s\nError: %s\n", batch_ids[0], batch_ids[-1], exc, exc_info=True)
                if errors is not None:
                    errors.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            else:
                writer.write(batch_ids, outputs)
            if advance is not None:
                advance(len(batch_ids))
