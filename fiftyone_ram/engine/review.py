"""Reviewing what cleaning found, and committing it: the saved view, ``apply_cleaning`` and ``undo_cleaning``.

Cleaning only writes its own fields. Removing tags from the tag field is a separate, explicit step:

* in the App, open the saved view (flagged tags only) and tag labels of the review field ``keep`` (the flag is
  wrong, keep the tag) or ``remove`` (remove it even if not flagged); label tags are FiftyOne's own review
  mechanism, so no extra UI is needed;
* ``apply_cleaning`` first copies the tag field to ``<tag_field>_original`` (once: a second apply keeps the
  first original), then removes the accepted tags: every flagged tag not marked ``keep`` plus those marked
  ``remove`` (``accept="flagged"``, the default), or only those marked ``remove`` (``accept="marked"``);
* ``undo_cleaning`` puts the kept original back and deletes the copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

KEEP_TAG = "keep"
REMOVE_TAG = "remove"
#: Attributes cleaning adds to the review copy of each tag.
FLAG_ATTRIBUTES = ("checked", "regions", "region_score", "outlier_score", "crop_probability", "flag_reason",
                   "flag_reasons", "flag_score")


def default_fields(tag_field: str) -> dict[str, str]:
    """Field and view names derived from the tag field when not given."""
    return {"cleaned_field": f"{tag_field}_cleaned", "review_field": f"{tag_field}_review",
            "view_name": f"{tag_field}_flagged", "backup_field": f"{tag_field}_original"}


def cleaning_run_key(tag_field: str) -> str:
    return f"ram_clean_{tag_field}"


def to_classifications(labels: list[Any]):
    """A ``Classifications`` of the given labels; None for a sample without tags."""
    import fiftyone as fo

    return fo.Classifications(classifications=list(labels)) if labels else None


def strip_flags(value: Any, *, drop_flagged: bool) -> Any:
    """A copy of a review ``Classifications`` without the cleaning attributes (and without the flagged tags
    when ``drop_flagged``); a sample whose tags were all flagged keeps an empty ``Classifications``."""
    import fiftyone as fo

    if value is None:
        return None
    kept = []
    for label in value.classifications:
        if drop_flagged and _is_flagged(label):
            continue
        copy = label.copy()
        for key in FLAG_ATTRIBUTES:
            if copy.has_field(key):
                copy.clear_field(key)
        kept.append(copy)
    return fo.Classifications(classifications=kept)


def _is_flagged(label: Any) -> bool:
    return label.has_field("flag_reason") and label.get_field("flag_reason") is not None


def flagged_view(samples: Any, review_field: str) -> Any:
    """The samples with flagged tags, showing only the flagged labels of the review field."""
    from fiftyone import ViewField as F

    return samples.filter_labels(review_field, F("flag_reason").exists())


def save_review_view(samples: Any, review_field: str, name: str) -> None:
    """Save :func:`flagged_view` on the dataset (replacing a view of the same name) for the App."""
    samples._dataset.save_view(name, flagged_view(samples, review_field),
                               description=f"Tags flagged by cleaning, in '{review_field}': label-tag them "
                                           f"'{KEEP_TAG}' or '{REMOVE_TAG}', then apply", overwrite=True)


def removals(samples: Any, review_field: str, accept: str = "flagged") -> dict[str, set[str]]:
    """Per sample id, the tag names to remove according to the review field and its label tags."""
    if accept not in ("flagged", "marked"):
        raise ValueError(f"accept must be 'flagged' or 'marked', not {accept!r}")
    out: dict[str, set[str]] = {}
    for sample_id, value in zip(*samples.values(["id", review_field])):
        for label in value.classifications if value is not None else ():
            marks = set(label.tags or ())
            flagged = _is_flagged(label)
            if REMOVE_TAG in marks or (accept == "flagged" and flagged and KEEP_TAG not in marks):
                out.setdefault(sample_id, set()).add(label.label)
    return out


def apply_cleaning(samples: Any, tag_field: str, *, review_field: str | None = None, accept: str = "flagged",
                   backup_field: str | None = None) -> dict[str, Any]:
    """Remove the accepted tags from ``tag_field`` in ``samples``, after keeping the original in
    ``backup_field`` (default ``<tag_field>_original``). Returns counts of what was removed."""
    from fiftyone_ram.fiftyone.fields import TAG_LABEL_TYPES, field_kind

    defaults = default_fields(tag_field)
    review_field = review_field or defaults["review_field"]
    backup_field = backup_field or defaults["backup_field"]
    dataset = samples._dataset
    if samples.get_field(review_field) is None:
        raise ValueError(f"no review field '{review_field}': run cleaning first")
    kind, label_type = field_kind(samples, tag_field, TAG_LABEL_TYPES, "tag", allow_strings=True)
    todo = removals(samples, review_field, accept)
    if dataset.get_field(backup_field) is None:
        dataset.clone_sample_field(tag_field, backup_field)
    touched = samples.select(list(todo))
    new_values = {}
    removed = 0
    for sample_id, value in zip(*touched.values(["id", tag_field])):
        value, count = _without(value, todo[sample_id], kind, label_type)
        new_values[sample_id] = value
        removed += count
    if new_values:
        samples.set_values(tag_field, new_values, key_field="id")
    result = {"tag_field": tag_field, "backup_field": backup_field, "accept": accept, "removed": removed,
              "samples": len(new_values)}
    _record(dataset, tag_field, {"applied": result})
    return result


def undo_cleaning(samples: Any, tag_field: str, *, backup_field: str | None = None) -> dict[str, Any]:
    """Restore ``tag_field`` of the whole dataset from the copy ``apply_cleaning`` kept, then delete it."""
    backup_field = backup_field or default_fields(tag_field)["backup_field"]
    dataset = samples._dataset
    if dataset.get_field(backup_field) is None:
        raise ValueError(f"nothing to undo: no kept original '{backup_field}' (apply was not run)")
    dataset.set_values(tag_field, dataset.values(backup_field))
    dataset.delete_sample_field(backup_field)
    result = {"tag_field": tag_field, "restored_from": backup_field, "samples": len(dataset)}
    _record(dataset, tag_field, {"applied": None, "undone": result})
    return result


def _without(value: Any, names: Iterable[str], kind: str, label_type: type | None) -> tuple[Any, int]:
    """``value`` of the tag field without the labels named ``names``; and how many labels went."""
    names = set(names)
    if value is None:
        return None, 0
    if kind == "strings":
        kept = [v for v in value if v not in names]
        return kept, len(value) - len(kept)
    if kind == "single":
        return (None, 1) if value.label in names else (value, 0)
    key = label_type._LABEL_LIST_FIELD
    labels = value[key] or []
    kept = [label for label in labels if label.label not in names]
    value[key] = kept
    return value, len(labels) - len(kept)


def _record(dataset: Any, tag_field: str, info: dict[str, Any]) -> None:
    """Note the apply/undo in the cleaning run's results, when there is a run."""
    key = cleaning_run_key(tag_field)
    if not dataset.has_run(key):
        return
    results = dataset.load_run_results(key, cache=False)
    state = results.serialize() if results is not None else {}
    for name in ("cls", "run_key"):
        state.pop(name, None)
    state.update(info)
    dataset.save_run_results(key, dataset.init_run_results(key, **state), overwrite=True)
