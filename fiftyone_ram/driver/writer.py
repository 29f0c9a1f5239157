"""Reading a view's work in pages and writing model outputs back by sample id, for the engines that run the
model themselves (the local driver, :mod:`.local_engine`; Ray, :mod:`.ray_engine`).

The stored result is what ``apply_model`` stores: the labels in ``<label_field>`` (a ``Classifications``
document, exactly as FiftyOne serialises it), an ``{"error": message}`` output as the string field
``<label_field>_error``, and each written sample's ``last_modified_at`` moved (a run's single threshold is
the model's, applied before the outputs reach the writer, as ``apply_model`` hands it to our model). What differs is the cost: FiftyOne's way (label
objects, ``add_labels``, validation and ``to_mongo`` in ``SaveContext``) costs ~40 us per label in the
process that runs the model; these writes send :meth:`TagOutput.to_document` documents in one bulk update
per batch, from a thread of their own when asked, so the model does not wait for the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from fiftyone_ram.fiftyone.outputs import TagOutput

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
    """Writes outputs to their samples in bulk (a context manager: leaving it waits for what is pending).

    ``background=True`` writes from one thread while the caller goes on (at most one batch pending: a
    failed write is raised at the next :meth:`write` or on leaving). Outputs are :class:`TagOutput`,
    ``{"error": message}`` or any FiftyOne label.
    """

    def __init__(self, samples, label_field: str, *, background: bool = False) -> None:
        self.dataset = samples._root_dataset
        self.label_field = label_field
        self.error_field = f"{label_field}_error"
        self.written = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fiftyone-ram-writer") if background else None
        self._pending: Future | None = None

    def __enter__(self) -> LabelWriter:
        self._declare_fields()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)

    def write(self, ids: Sequence[str], outputs: Sequence[Any]) -> None:
        """Store ``outputs[i]`` on the sample ``ids[i]``."""
        if len(ids) != len(outputs):
            raise ValueError(f"{len(ids)} sample ids for {len(outputs)} outputs")
        ids, outputs = list(ids), list(outputs)
        if self._executor is None:
            self._store(ids, outputs)
            return
        self._wait()
        self._pending = self._executor.submit(self._store, ids, outputs)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _store(self, ids: list[str], outputs: list[Any]) -> None:
        from bson import ObjectId
        from pymongo import UpdateOne

        now = datetime.now(timezone.utc).replace(tzinfo=None)  # FiftyOne stores naive UTC times
        updates = [UpdateOne({"_id": ObjectId(sample_id)}, {"$set": {**self._fields(output), "last_modified_at": now}})
                   for sample_id, output in zip(ids, outputs)]
        if updates:
            self.dataset._sample_collection.bulk_write(updates, ordered=False)
        self._reload(ids)
        self.written += len(ids)

    def _fields(self, output: Any) -> dict[str, Any]:
        if isinstance(output, dict) and set(output) == {"error"}:
            return {self.error_field: str(output["error"])}
        if isinstance(output, TagOutput):
            return {self.label_field: output.to_document()}
        return {self.label_field: output.to_mongo().to_dict()}

    def _reload(self, ids: list[str]) -> None:
        """Samples of these ids held in memory (FiftyOne keeps one object per document) see the new values."""
        import fiftyone.core.sample as fos

        fos.Sample._reload_docs(self.dataset._sample_collection_name, sample_ids=ids)

    def _declare_fields(self) -> None:
        import fiftyone as fo

        schema = self.dataset.get_field_schema()
        if self.label_field not in schema:
            self.dataset.add_sample_field(self.label_field, fo.EmbeddedDocumentField,
                                          embedded_doc_type=fo.Classifications)
        if self.error_field not in schema:
            self.dataset.add_sample_field(self.error_field, fo.StringField)
