"""Reading a view's work in pages and writing model outputs back by sample id, for engines that run the model
somewhere else (Ray): the same storage as ``apply_model``, which the local engine uses.

``apply_model`` stores each output with ``Sample.add_labels(labels, label_field, confidence_thresh=...)`` and
saves through a ``SaveContext`` (bulk writes); :class:`LabelWriter` does exactly that for outputs that come
back in any order, by id. So both engines store the same fields: the labels in ``<label_field>``, an
``{"error": message}`` output as the string field ``<label_field>_error``, the labels below a
``confidence_thresh`` dropped the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

#: Sample ids per page read from the database (a cursor batch; the driver holds one page at a time).
READ_BATCH = 1000


def iter_pages(samples, page_size: int) -> Iterator[list[tuple[str, str]]]:
    """``(sample_id, filepath)`` of ``samples`` in pages of ``page_size``, from one database cursor: the
    driver never holds the whole view."""
    page: list[tuple[str, str]] = []
    for sample in samples.select_fields().iter_samples(batch_size=READ_BATCH):
        page.append((sample.id, sample.filepath))
        if len(page) == page_size:
            yield page
            page = []
    if page:
        yield page


class LabelWriter:
    """Writes outputs to their samples in bulk (a context manager: leaving it flushes what is pending).

    One query loads the samples of each written batch (only their default fields); FiftyOne's
    ``SaveContext`` sends the changes in bulk, every fraction of a second.
    """

    def __init__(self, samples, label_field: str, *, confidence_thresh: float | None = None) -> None:
        self.dataset = samples._root_dataset
        self.label_field = label_field
        self.confidence_thresh = confidence_thresh
        self.written = 0
        self._context = None

    def __enter__(self) -> LabelWriter:
        import fiftyone.core.collections as foc

        self._context = foc.SaveContext(self.dataset, async_writes=False)
        self._context.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._context.__exit__(*exc_info)

    def write(self, ids: Sequence[str], outputs: Sequence[Any]) -> None:
        """Store ``outputs[i]`` on the sample ``ids[i]`` (labels, or ``{"error": message}``)."""
        by_id = dict(zip(ids, outputs, strict=True))
        for sample in self.dataset.select(list(by_id)).select_fields().iter_samples():
            sample.add_labels(by_id[sample.id], label_field=self.label_field,
                              confidence_thresh=self.confidence_thresh)
            self._context.save(sample)
        self.written += len(by_id)
