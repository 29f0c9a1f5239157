"""The reviewer's side of cleaning, for the App's review panel: the flagged tags as table rows, one-click
``keep`` / ``remove`` marks, and the counts that say where a review stands.

Marks are FiftyOne label tags on the review copy (what ``engine.review.removals`` reads), so a mark made
here, in the App's own label-tagging menu or from Python means the same thing.
"""

from __future__ import annotations

from typing import Any

from fiftyone_ram.engine.review import KEEP_TAG, REMOVE_TAG, default_fields

MARKS = (KEEP_TAG, REMOVE_TAG)


def review_fields(dataset: Any) -> dict[str, str]:
    """Tag field -> its review field, for every field that cleaning has written a review copy of."""
    schema = dataset.get_field_schema()
    out = {}
    for name in schema:
        review = default_fields(name)["review_field"]
        if review in schema:
            out[name] = review
    return out


def flagged_rows(samples: Any, review_field: str, limit: int | None = 200) -> list[dict[str, Any]]:
    """One row per flagged tag (file name, tag, reason, score, mark), in sample order; ``label_id`` and
    ``sample_id`` identify it for :func:`mark`."""
    rows = []
    ids, paths, values = samples.values(["id", "filepath", review_field])
    for sample_id, path, value in zip(ids, paths, values):
        for label in value.classifications if value is not None else ():
            reason = label.get_field("flag_reason") if label.has_field("flag_reason") else None
            if reason is None:
                continue
            marks = [m for m in MARKS if m in (label.tags or [])]
            score = label.get_field("flag_score") if label.has_field("flag_score") else None
            rows.append({"sample_id": sample_id, "label_id": label.id, "file": path.rsplit("/", 1)[-1],
                         "tag": label.label, "reason": reason,
                         "score": round(float(score), 3) if score is not None else None,
                         "mark": marks[-1] if marks else ""})
            if limit is not None and len(rows) >= limit:
                return rows
    return rows


def mark(dataset: Any, review_field: str, label_ids: list[str], value: str | None) -> int:
    """Mark labels of the review field ``keep`` or ``remove`` (the other mark goes); None clears both.
    Returns how many labels were found."""
    if value is not None and value not in MARKS:
        raise ValueError(f"a mark is {' or '.join(MARKS)}, not {value!r}")
    view = dataset.select_labels(ids=list(label_ids), fields=review_field)
    found = view.count(f"{review_field}.classifications")
    for other in MARKS:
        if other != value:
            view.untag_labels(other, label_fields=review_field)
    if value is not None:
        view.tag_labels(value, label_fields=review_field)
    return found


def review_counts(samples: Any, review_field: str) -> dict[str, int]:
    """Flagged tags, and how many of the review copy's tags are marked keep / remove."""
    from fiftyone import ViewField as F

    path = f"{review_field}.classifications"
    counts = samples.count_label_tags(label_fields=review_field)
    return {"flagged": samples.filter_labels(review_field, F("flag_reason").exists(), only_matches=False)
            .count(path),
            KEEP_TAG: int(counts.get(KEEP_TAG, 0)), REMOVE_TAG: int(counts.get(REMOVE_TAG, 0))}
