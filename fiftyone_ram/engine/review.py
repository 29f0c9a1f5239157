"""Reviewing what cleaning found, and committing it: the saved view, ``apply_cleaning`` and ``undo_cleaning``.

Cleaning only writes its own fields. Removing tags from the tag field is a separate, explicit step:

* in the App, open the saved view (flagged tags only) and tag labels of the review field ``keep`` (the flag is
  wrong, keep the tag) or ``remove`` (remove it even if not flagged); label tags are FiftyOne's own review
  mechanism, so no extra UI is needed;
* ``apply_cleaning`` removes the accepted tags: every flagged tag not marked ``keep`` plus those marked
  ``remove`` (``accept="flagged"``, the default), or only those marked ``remove`` (``accept="marked"``); it
  records each removed label (:mod:`~fiftyone_ram.engine.removal_log`);
* ``undo_cleaning`` puts back exactly those labels and touches nothing else: edits and samples made since
  the apply stay; what it cannot put back (the user changed it) is reported, with the reason.

A review applies to the tags it reviewed: each review copy keeps the ids of the tag field's labels it stands for
(:func:`source_ids`), and apply refuses, before removing anything, when a label to remove is neither in the
field nor removed by an earlier apply (another run rewrote the field): clean again first. The settings of both
steps are a :class:`ReviewJob`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fiftyone_ram.driver import runs
from fiftyone_ram.errors import UserError
from fiftyone_ram.jobs import FIELD, Job, setting

KEEP_TAG = "keep"
REMOVE_TAG = "remove"
#: Attributes cleaning adds to the review copy of each tag.
FLAG_ATTRIBUTES = ("checked", "regions", "region_score", "outlier_score", "crop_probability", "flag_reason",
                   "flag_reasons", "flag_score", "source_ids")


class CleaningError(UserError, ValueError):
    """A cleaning step that cannot be done as asked (nothing to undo, a field of the wrong kind...)."""


#: The review steps, and which tags apply removes.
ACTIONS = ("apply", "undo")
ACCEPT = ("flagged", "marked")


@dataclass(kw_only=True)
class ReviewJob(Job):
    """The settings of a review step: apply the accepted removals to the tag field, or undo them."""

    what = "review"

    tag_field: str = setting(kind=FIELD, label="Tags", help="the tag field that was cleaned")
    action: str = setting("apply", choices=ACTIONS, flag=False, label="Step",
                          help="apply: remove the accepted tags; undo: put back what the applies removed")
    accept: str = setting("flagged", choices=ACCEPT, label="Remove",
                          help="flagged: every flagged tag not label-tagged 'keep' (and those tagged 'remove'); "
                               "marked: only tags label-tagged 'remove'")
    review_field: str | None = setting(None, kind=FIELD, flag=False, form=False,
                                       help="the review field (default <tag_field>_review)")

    def run(self, samples: Any) -> dict[str, Any]:
        if self.action == "undo":
            return undo_cleaning(samples, self.tag_field)
        return apply_cleaning(samples, self.tag_field, review_field=self.review_field, accept=self.accept)


def source_ids(label: Any) -> list[str]:
    """The ids of the tag field's labels a review copy stands for (empty for a list of strings)."""
    if label.has_field("source_ids") and label["source_ids"]:
        return list(label["source_ids"])
    return []


def default_fields(tag_field: str) -> dict[str, str]:
    """Field and view names derived from the tag field when not given."""
    return {"cleaned_field": f"{tag_field}_cleaned", "review_field": f"{tag_field}_review",
            "view_name": f"{tag_field}_flagged"}


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
    if accept not in ACCEPT:
        raise CleaningError(f"accept must be one of {', '.join(ACCEPT)}, not {accept!r}")
    out: dict[str, set[str]] = {}
    for sample_id, value in zip(*samples.values(["id", review_field])):
        for label in value.classifications if value is not None else ():
            marks = set(label.tags or ())
            flagged = _is_flagged(label)
            if REMOVE_TAG in marks or (accept == "flagged" and flagged and KEEP_TAG not in marks):
                out.setdefault(sample_id, set()).add(label.label)
    return out


def apply_cleaning(samples: Any, tag_field: str, *, review_field: str | None = None,
                   accept: str = "flagged") -> dict[str, Any]:
    """Remove the accepted tags from ``tag_field`` in ``samples``, recording each removed label (see
    :mod:`~fiftyone_ram.engine.removal_log`) so that :func:`undo_cleaning` can put it back. Returns counts of
    what was removed."""
    from fiftyone_ram.engine import removal_log

    review_field = review_field or default_fields(tag_field)["review_field"]
    dataset = samples._dataset
    if samples.get_field(review_field) is None:
        raise CleaningError(f"no review field '{review_field}': run cleaning first")
    kind, label_type = _tag_field_kind(samples, tag_field)
    todo = removals(samples, review_field, accept)
    log = removal_log.load(dataset, tag_field)
    _check_reviewed(samples, tag_field, review_field, kind, label_type, todo, log)
    new_values, records = {}, []
    for sample_id, value in zip(*samples.select(list(todo)).values(["id", tag_field])):
        value, removed = removal_log.remove_names(value, todo[sample_id], kind, label_type, sample_id)
        if removed:
            new_values[sample_id] = value
            records.extend(removed)
    number = 1 + max([a["number"] for a in log["applies"]] + [h.get("last_apply", 0) for h in log["history"]],
                     default=0)
    if records:
        # The record is saved before the removal: if the write stops halfway, undo finds the labels that
        # were not removed still there ("already present") and puts back the others.
        log["applies"].append({"number": number, "at": removal_log.now(), "accept": accept, "kind": kind,
                               "removed": records})
        removal_log.save(dataset, tag_field, log)
        samples.set_values(tag_field, new_values, key_field="id")
    result = {"tag_field": tag_field, "accept": accept, "removed": len(records), "samples": len(new_values),
              "apply": number if records else None}
    _record(dataset, tag_field, {"applied": result})
    return result


def undo_cleaning(samples: Any, tag_field: str) -> dict[str, Any]:
    """Put back every tag that the applies not yet undone removed from ``tag_field`` (in the whole dataset),
    leaving everything else as it is now. Returns what was restored and what could not be, and why."""
    from fiftyone_ram.engine import removal_log

    dataset = samples._dataset
    log = removal_log.load(dataset, tag_field)
    if not log["applies"]:
        last = log["history"][-1] if log["history"] else None
        when = f"the last apply was already undone ({last['at']})" if last else "apply was not run"
        raise CleaningError(f"nothing to undo in '{tag_field}': {when}")
    kind, label_type = _tag_field_kind(dataset, tag_field)
    recorded = {a["kind"] for a in log["applies"]}
    if recorded != {kind}:
        raise CleaningError(f"cannot undo: '{tag_field}' holds {kind} labels now, but apply removed "
                            f"{', '.join(sorted(recorded))} labels from it")
    report = removal_log.UndoReport(tag_field)
    removal_log.restore(dataset, tag_field, kind, label_type, log["applies"], report)
    result = report.to_dict()
    log["history"].append({"at": removal_log.now(), "last_apply": log["applies"][-1]["number"], **result})
    log["applies"] = []
    removal_log.save(dataset, tag_field, log)
    _record(dataset, tag_field, {"applied": None, "undone": result})
    result["message"] = str(report)
    return result


def _tag_field_kind(samples: Any, tag_field: str) -> tuple[str, type | None]:
    from fiftyone_ram.fields import TAG_LABEL_TYPES, field_kind

    try:
        return field_kind(samples, tag_field, TAG_LABEL_TYPES, "tag", allow_strings=True)
    except ValueError as exc:
        raise CleaningError(str(exc)) from None


def _check_reviewed(samples: Any, tag_field: str, review_field: str, kind: str, label_type: type | None,
                    todo: dict[str, set[str]], log: dict[str, Any]) -> None:
    """Refuse, before anything is removed, to apply a review to labels it did not review: a label to remove that
    is neither in the field nor removed by an apply not undone yet (another run rewrote the field since the
    cleaning, or the user replaced those labels)."""
    if not todo or kind == "strings":  # a list of strings has no label ids to tell its tags apart by
        return
    removed = {record["key"] for apply in log["applies"] for record in apply["removed"]}
    view = samples.select(list(todo))
    current = dict(zip(*view.values(["id", tag_field])))
    reviews = dict(zip(*view.values(["id", review_field])))
    gone, total = [], 0
    for sample_id, names in todo.items():
        value = current.get(sample_id)
        if value is None:
            present: set[str] = set()
        elif kind == "single":
            present = {value.id}
        else:
            present = {label.id for label in value[label_type._LABEL_LIST_FIELD] or ()}
        review = reviews.get(sample_id)
        for label in review.classifications if review is not None else ():
            if label.label not in names:
                continue
            for label_id in source_ids(label):
                total += 1
                if label_id not in present and label_id not in removed:
                    gone.append(sample_id)
    if gone:
        raise CleaningError(f"{len(gone)} of the {total} labels of '{tag_field}' to remove are not the ones that "
                            f"were cleaned (e.g. on sample {gone[0]}): the field was rewritten since; the review "
                            f"applies to the labels it reviewed: clean the field again (--overwrite) before "
                            f"applying. Nothing was removed")


def _record(dataset: Any, tag_field: str, info: dict[str, Any]) -> None:
    """Note the apply/undo in the cleaning run's state, when there is a run."""
    if runs.load(dataset, "clean", tag_field) is None:
        return
    state = runs.load_state(dataset, "clean", tag_field)
    state.update(info)
    runs.save_state(dataset, "clean", tag_field, **state)
