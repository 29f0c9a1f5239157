"""Storing model outputs by sample id, for the executors that receive them away from ``apply_model``: the Ray
executor (:mod:`.ray_executor`), whose outputs come back to the driver in any order.

The stored result is what ``apply_model`` stores: the labels in ``<label_field>`` (a ``Classifications``),
an ``{"error": message}`` output as the string field ``<label_field>_error``, and each written sample's
``last_modified_at`` moved. Written with FiftyOne's public ``set_values`` keyed by sample id, one call per
batch: at the released models' 10-40 tags per image, FiftyOne's own storing costs milliseconds per image
against the model's hundreds (benchmarks/apply_model_throughput.py prints both).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    """Writes outputs to their samples (a context manager: the fields are declared on entering).

    Outputs are :class:`TagOutput`, ``{"error": message}`` or any FiftyOne label.
    """

    def __init__(self, samples, label_field: str) -> None:
        self.dataset = samples._root_dataset
        self.label_field = label_field
        self.error_field = f"{label_field}_error"
        self.written = 0

    def __enter__(self) -> LabelWriter:
        self._declare_fields()
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def write(self, ids: Sequence[str], outputs: Sequence[Any]) -> None:
        """Store ``outputs[i]`` on the sample ``ids[i]``."""
        if len(ids) != len(outputs):
            raise ValueError(f"{len(ids)} sample ids for {len(outputs)} outputs")
        labels, errors = {}, {}
        for sample_id, output in zip(ids, outputs):
            if isinstance(output, dict) and set(output) == {"error"}:
                errors[sample_id] = str(output["error"])
            else:
                labels[sample_id] = output.to_label() if isinstance(output, TagOutput) else output
        if labels:
            self.dataset.set_values(self.label_field, labels, key_field="id")
        if errors:
            self.dataset.set_values(self.error_field, errors, key_field="id")
        self.written += len(ids)

    def _declare_fields(self) -> None:
        import fiftyone as fo

        schema = self.dataset.get_field_schema()
        if self.label_field not in schema:
            self.dataset.add_sample_field(self.label_field, fo.EmbeddedDocumentField,
                                          embedded_doc_type=fo.Classifications)
        if self.error_field not in schema:
            self.dataset.add_sample_field(self.error_field, fo.StringField)
