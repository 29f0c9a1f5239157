"""Which fields of a dataset an App form offers for a role, read from the schema (so the choices are
dropdowns of valid names, never free text), and the defaults that make the obvious run work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: Label types whose names are tags (Detections / Polylines give image-level tags from their objects).
TAG_TYPES = ("Classifications", "Classification", "Detections", "Polylines")
PREDICTION_TYPES = ("Classifications", "Classification")


def label_fields(dataset: Any, type_names: Sequence[str]) -> list[str]:
    """Top-level fields holding one of the label types ``type_names``, sorted."""
    import fiftyone.core.fields as fof

    return sorted(name for name, field in dataset.get_field_schema().items()
                  if isinstance(field, fof.EmbeddedDocumentField) and field.document_type.__name__ in type_names)


def string_list_fields(dataset: Any) -> list[str]:
    """Top-level list-of-strings fields (the sample ``tags`` among them), sorted."""
    import fiftyone.core.fields as fof

    return sorted(name for name, field in dataset.get_field_schema().items()
                  if isinstance(field, fof.ListField) and isinstance(field.field, fof.StringField))


def text_fields(dataset: Any) -> list[str]:
    """Top-level string fields that can hold captions (not the file path nor an error field), sorted."""
    import fiftyone.core.fields as fof

    return sorted(name for name, field in dataset.get_field_schema().items()
                  if type(field) is fof.StringField and name != "filepath" and not name.endswith("_error"))


def with_confidences(samples: Any, fields: Iterable[str]) -> list[str]:
    """The fields among ``fields`` where some label stores a confidence (a model's predictions)."""
    out = []
    for name in fields:
        field = samples.get_field(name)
        list_key = getattr(getattr(field, "document_type", None), "_LABEL_LIST_FIELD", None)
        path = f"{name}.{list_key}.confidence" if list_key else f"{name}.confidence"
        if samples.count(path):  # counts the non-None values
            out.append(name)
    return out


def prediction_default(samples: Any, candidates: Sequence[str]) -> str | None:
    """The field to offer as predictions: one a tagging run wrote (the newest), else the first with confidences,
    else the first candidate."""
    from fiftyone_ram.driver import runs

    tagged = [r.target for r in runs.records(samples._dataset, "tag") if r.target in candidates]
    if tagged:
        return tagged[-1]
    scored = with_confidences(samples, candidates)
    return scored[0] if scored else (candidates[0] if candidates else None)


def related_fields(dataset: Any, field: str) -> set[str]:
    """The fields ``field`` was made from, and those made from it, as the run store records them (a generation's
    tag and caption fields, a cleaning's tag field and its review copies): never a sensible ground truth for it."""
    from fiftyone_ram.driver import runs

    related: set[str] = set()
    for record in runs.records(dataset):
        made = set(record.outputs.get("fields") or [])
        if record.kind in ("tag", "generate"):
            made.add(record.target)
        settings = record.settings
        sources = {*(settings.get("tag_fields") or ()), *(settings.get("caption_fields") or ())}
        if record.kind == "clean":
            sources.add(record.target)
        if field in made:
            related |= sources
        if field in sources:
            related |= made
    related.discard(field)
    return related


def ground_truth_default(dataset: Any, candidates: Sequence[str], predictions: str | None,
                         prefer: Sequence[str] = ("ground_truth",)) -> str | None:
    """A default ground truth for ``predictions``: never the predictions themselves, nor a field they were made
    from or that was made from them (:func:`related_fields`); a preferred name first."""
    excluded = related_fields(dataset, predictions) if predictions else set()
    allowed = [c for c in candidates if c != predictions and c not in excluded]
    return other_default(allowed, predictions, prefer)


def other_default(candidates: Sequence[str], taken: str | None, prefer: Sequence[str] = ("ground_truth",)) -> str | None:
    """A default for a second field that is never ``taken`` (a preferred name first)."""
    for name in prefer:
        if name in candidates and name != taken:
            return name
    rest = [c for c in candidates if c != taken]
    return rest[0] if rest else None


def sample_tag_rows(samples: Any, sample_id: str, field: str) -> list[dict[str, Any]]:
    """The tags of one sample in ``field`` for a table, most confident first: name, confidence and the
    threshold that admitted it (rounded for reading), and their margin. The App shows a label's confidence
    only in the sidebar filter and the JSON view; this is what a table of them is made of."""
    import fiftyone.core.labels as fol

    label = samples._root_dataset[sample_id][field]
    if isinstance(label, fol.Classification):
        items = [label]
    else:
        items = list(getattr(label, "classifications", None) or [])
    rows = []
    for item in items:
        confidence = item.confidence
        threshold = item.get_field("threshold") if item.has_field("threshold") else None
        rows.append({"tag": item.label,
                     "confidence": None if confidence is None else round(float(confidence), 4),
                     "threshold": None if threshold is None else round(float(threshold), 4),
                     "margin": None if confidence is None or threshold is None
                     else round(float(confidence) - float(threshold), 4)})
    return sorted(rows, key=lambda row: -(row["confidence"] if row["confidence"] is not None else -1.0))
