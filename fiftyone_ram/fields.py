"""Image-level tags read out of FiftyOne fields, for every package that reads them (evaluation, the data
engine): tags of several field kinds, and tag predictions with their scores.

The RAM paper evaluates tagging on detection and segmentation datasets by turning their objects into
image-level labels (COCO, ADE20k); the same is done here for ``Detections`` and ``Polylines``. Fields are
checked before anything is written (:func:`field_kind`), so a wrong field type fails with a message and
leaves the dataset untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

import fiftyone.core.fields as fof
import fiftyone.core.labels as fol

from fiftyone_ram.errors import UserError

#: Label types whose labels count as a sample's tags (ground truth, or tags to generate from or clean).
TAG_LABEL_TYPES: tuple[type, ...] = (fol.Classifications, fol.Classification, fol.Detections, fol.Polylines)
#: Label types that hold tag predictions.
PREDICTION_LABEL_TYPES: tuple[type, ...] = (fol.Classifications, fol.Classification)

Kind = Literal["list", "single", "strings"]


class FieldKindError(UserError, ValueError):
    """A field that does not exist, or holds something else than the run reads."""
FieldKind = tuple[Kind, type | None]  # and the label class, for label fields


@dataclass
class FieldTags:
    """Per sample (in collection order): the label names, their ids, and for predictions the scores.

    ``label_path`` is where per-label attributes (the ``eval`` verdicts) are written: ``"gt.detections"``
    for label lists, ``"gt"`` for a single label, ``None`` for plain string lists such as sample tags.
    """

    field: str
    kind: Kind
    label_type: type | None
    label_path: str | None
    names: list[list[str]]
    ids: list[list[str | None]]
    confidences: list[list[float | None]] | None = None
    logits: list[np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self.names)


def read_tags(samples: Any, field: str, *, role: str = "tag") -> FieldTags:
    """Tag names per sample; objects of ``Detections`` / ``Polylines`` become image-level tags. ``role``
    names the field in error messages (``"ground-truth"`` for evaluation)."""
    kind, label_type = field_kind(samples, field, TAG_LABEL_TYPES, role, allow_strings=True)
    return _read(samples, field, kind, label_type, with_scores=False, with_logits=False)


def read_predictions(samples: Any, field: str, *, with_logits: bool = True) -> FieldTags:
    """Predicted tags per sample with their confidences, and the logit vectors when stored."""
    kind, label_type = field_kind(samples, field, PREDICTION_LABEL_TYPES, "prediction", allow_strings=False)
    with_logits = with_logits and _has_logits(samples, field)
    return _read(samples, field, kind, label_type, with_scores=True, with_logits=with_logits)


def _read(
    samples: Any, field: str, kind: Kind, label_type: type | None, *, with_scores: bool, with_logits: bool
) -> FieldTags:
    if kind == "strings":
        names = [list(v or []) for v in samples.values(field)]
        return FieldTags(field, kind, None, None, names, [[None] * len(n) for n in names])
    if kind == "list":
        path = f"{field}.{label_type._LABEL_LIST_FIELD}"
    else:
        path = field
    paths = [f"{path}.label", f"{path}.id"]
    if with_scores:
        paths.append(f"{path}.confidence")
    if with_logits:
        paths.append(f"{field}.logits")
    values = samples.values(paths)
    if kind == "single":  # one label or none per sample
        present = [name is not None for name in values[0]]
        one = lambda column: [[v] if p else [] for v, p in zip(column, present)]  # noqa: E731
        names, ids = one(values[0]), one(values[1])
        confs = one(values[2]) if with_scores else None
    else:
        names = [list(v) if v else [] for v in values[0]]
        ids = [list(v) if v else [] for v in values[1]]
        confs = [list(v) if v else [] for v in values[2]] if with_scores else None
    # A label without a name cannot be a tag; keep the lists aligned by blanking it.
    names = [[n if n is not None else "" for n in row] for row in names]
    logits = values[-1] if with_logits else None
    return FieldTags(field, kind, label_type, path, names, ids, confs, logits)


def field_kind(
    samples: Any, field: str, allowed: tuple[type, ...], role: str, *, allow_strings: bool
) -> FieldKind:
    """How ``field`` holds its labels: a label list (``"list"``), one label (``"single"``) or, with
    ``allow_strings``, a list of strings such as the sample ``tags`` (``"strings"``); and the label class.
    Raises ``ValueError`` naming the field (its ``role``) and the accepted types."""
    expected = ", ".join(t.__name__ for t in allowed)
    if allow_strings:
        expected += ", or a list of strings such as 'tags'"
    if not isinstance(field, str) or not field:
        raise FieldKindError(f"the {role} field must be a field name; expected a field of type {expected}")
    if samples._is_frame_field(field):
        raise FieldKindError(
            f"{role} field '{field}' is a frame field; tag evaluation needs sample-level fields ({expected})"
        )
    schema_field = samples.get_field(field)
    if schema_field is None:
        raise FieldKindError(
            f"{role} field '{field}' does not exist in this collection; expected a field of type {expected}"
        )
    if isinstance(schema_field, fof.EmbeddedDocumentField) and issubclass(schema_field.document_type, allowed):
        doc = schema_field.document_type
        return ("list" if hasattr(doc, "_LABEL_LIST_FIELD") else "single"), doc
    if allow_strings and isinstance(schema_field, fof.ListField) and isinstance(schema_field.field, fof.StringField):
        return "strings", None
    found = (
        schema_field.document_type.__name__
        if isinstance(schema_field, fof.EmbeddedDocumentField)
        else type(schema_field).__name__
    )
    raise FieldKindError(f"{role} field '{field}' holds {found}; expected {expected}")


def _has_logits(samples: Any, field: str) -> bool:
    """Whether any sample stores a logit vector (asked of the database, without loading vectors)."""
    if samples.get_field(f"{field}.logits") is None:
        return False
    return samples.exists(f"{field}.logits").limit(1).count() > 0


class FieldNameError(UserError, ValueError):
    """A field a run would write that is protected, taken by another kind of value, or not a field name."""


def check_output_field(samples: Any, name: Any, label_type: type, *, option: str = "label field") -> None:
    """Refuse, before anything is written, a field a run cannot write its ``label_type`` labels into: not a
    plain identifier (FiftyOne reads dots as paths, ``_`` marks private fields), one of FiftyOne's own sample
    fields (``filepath``, ``id``, ``tags``, ``metadata``, ...), a read-only field, or a field that already holds
    another type. ``samples`` may be None (a dataset not created yet): then only the name is checked.
    ``option`` names the field in the message (``"--field"``)."""
    import fiftyone.core.sample as fos

    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise FieldNameError(f"{option} {name!r} is not a usable field name: use letters, digits and underscores, "
                             f"not starting with '_' or a digit")
    reserved = set(fos.get_default_sample_fields(include_private=True))
    reserved |= set(fos.get_default_sample_fields(include_private=True, use_db_fields=True))
    reserved.add("frames")  # video datasets keep their frames there
    if name in reserved:
        raise FieldNameError(f"{option} '{name}' is one of FiftyOne's own sample fields; choose another name")
    if samples is None:
        return
    existing = samples.get_field(name)
    if existing is None:
        return
    if getattr(existing, "read_only", False):
        raise FieldNameError(f"{option} '{name}' is read-only in this dataset; choose another name")
    if not (isinstance(existing, fof.EmbeddedDocumentField) and issubclass(existing.document_type, label_type)):
        found = (existing.document_type.__name__ if isinstance(existing, fof.EmbeddedDocumentField)
                 else type(existing).__name__)
        raise FieldNameError(f"{option} '{name}' already holds {found}, not {label_type.__name__}; choose another "
                             f"name (nothing was written)")


def check_string_field(samples: Any, name: str, *, purpose: str) -> None:
    """Refuse a field that a run would fill with strings (``<field>_error``) when it holds something else."""
    if samples is None:
        return
    existing = samples.get_field(name)
    if existing is not None and not isinstance(existing, fof.StringField):
        raise FieldNameError(f"'{name}' ({purpose}) already holds {type(existing).__name__}, not strings; rename "
                             f"it or choose another field")
