"""What ``apply_cleaning`` removed, label by label, so that ``undo_cleaning`` puts back exactly that.

A copy of the whole field, restored over it, would wipe every edit made since the apply (labels added,
changed or removed, samples added). So each apply records, per sample, the labels it removed: the label as
it was (all its attributes and its id), its position and the label just before it. Undo reverses the
applies newest first and, per removed label, either puts it back next to its old neighbour or says why not:

* ``already_present``: a label with its id is in the field (it was put back already);
* ``re_added``: the sample has a tag of that name again, added after the apply (restoring would duplicate it);
* ``cleared``: the field of that sample was set to None after the apply;
* ``replaced``: a single-label field holds another label now;
* ``deleted``: the sample is no longer in the dataset.

Nothing else is touched: samples without a record, and the other labels of a sample, stay as they are.
The log is a run of the run store (kind ``review``, :mod:`fiftyone_ram.driver.runs`), apart from the
cleaning's own run so that cleaning again (``overwrite``) keeps what can be undone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fiftyone_ram.driver import runs

#: Why a removed label was not put back (see the module docstring), in the words the user reads.
UNDO_REASONS = {
    "re_added": "a tag of that name was added again after apply",
    "cleared": "the field was cleared on that sample after apply",
    "replaced": "the sample's label was replaced after apply",
    "deleted": "the sample was deleted",
}
MAX_EXAMPLES = 10


# -- apply: remove and record ------------------------------------------------------------------------------


def remove_names(value: Any, names: Iterable[str], kind: str, label_type: type | None,
                 sample_id: str) -> tuple[Any, list[dict[str, Any]]]:
    """``value`` of the tag field without the labels named ``names``, and a record of each removed one."""
    names = set(names)
    if value is None:
        return None, []
    if kind == "strings":
        items = list(value)
        keys = items
    elif kind == "single":
        if value.label not in names:
            return value, []
        return None, [_record(sample_id, value.label, value.id, None, 0, value.to_dict())]
    else:
        items = list(value[label_type._LABEL_LIST_FIELD] or [])
        keys = [label.id for label in items]
    records, kept = [], []
    for index, item in enumerate(items):
        name = item if kind == "strings" else item.label
        if name in names:
            payload = item if kind == "strings" else item.to_dict()
            records.append(_record(sample_id, name, keys[index], keys[index - 1] if index else None, index, payload))
        else:
            kept.append(item)
    if not records:
        return value, []
    if kind == "strings":
        return kept, records
    value[label_type._LABEL_LIST_FIELD] = kept
    return value, records


def _record(sample_id: str, name: str, key: str, after: str | None, index: int, payload: Any) -> dict[str, Any]:
    return {"sample": sample_id, "name": name, "key": key, "after": after, "index": index, "value": payload}


def load(dataset: Any, tag_field: str) -> dict[str, Any]:
    """The log of ``tag_field``: ``applies`` not undone yet (oldest first) and the ``history`` of undos."""
    state = runs.load_state(dataset, "review", tag_field)
    return {"applies": list(state.get("applies", [])), "history": list(state.get("history", []))}


def save(dataset: Any, tag_field: str, log: dict[str, Any]) -> None:
    record = runs.load(dataset, "review", tag_field)
    if record is None:
        record = runs.RunRecord("review", tag_field, {"tag_field": tag_field}, status=runs.COMPLETED,
                                outputs={"fields": [tag_field]})
    runs.save(dataset, record)
    runs.save_state(dataset, "review", tag_field, applies=log["applies"], history=log["history"])


now = runs.now


# -- undo: put back ----------------------------------------------------------------------------------------


@dataclass
class UndoReport:
    """What undo did: labels put back, those already there, and those it could not put back (and why)."""

    tag_field: str
    applies_undone: int = 0
    restored: int = 0
    samples: int = 0
    already_present: int = 0
    not_restored: dict[str, int] = field(default_factory=dict)  # reason -> count
    examples: list[dict[str, str]] = field(default_factory=list)  # a few {"sample", "tag", "reason"}

    @property
    def not_restored_total(self) -> int:
        return sum(self.not_restored.values())

    def skip(self, reason: str, record: dict[str, Any], where: str) -> None:
        self.not_restored[reason] = self.not_restored.get(reason, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"sample": where, "tag": record["name"], "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {"tag_field": self.tag_field, "applies_undone": self.applies_undone, "restored": self.restored,
                "samples": self.samples, "already_present": self.already_present,
                "not_restored": self.not_restored_total, "not_restored_by_reason": dict(self.not_restored),
                "not_restored_examples": list(self.examples)}

    def __str__(self) -> str:
        line = (f"restored {self.restored} tag(s) in {self.samples} sample(s) of '{self.tag_field}' "
                f"({self.applies_undone} apply undone)")
        if self.already_present:
            line += f"; {self.already_present} already present"
        lines = [line]
        if self.not_restored:
            parts = [f"{count} because {UNDO_REASONS[reason]}" for reason, count in self.not_restored.items()]
            lines.append(f"{self.not_restored_total} tag(s) not restored: " + "; ".join(parts))
            lines += [f"  {e['tag']!r} on {e['sample']}: {UNDO_REASONS[e['reason']]}" for e in self.examples]
        return "\n".join(lines)


def restore(dataset: Any, tag_field: str, kind: str, label_type: type | None, applies: list[dict[str, Any]],
            report: UndoReport) -> None:
    """Put back what ``applies`` removed, newest apply first (each sees the field as the later ones left it)."""
    changed: set[str] = set()
    for apply in reversed(applies):
        by_sample: dict[str, list[dict[str, Any]]] = {}
        for record in apply["removed"]:
            by_sample.setdefault(record["sample"], []).append(record)
        found = dataset.select(list(by_sample)).values(["id", tag_field, "filepath"])
        current = {sid: (value, path) for sid, value, path in zip(*found)}
        updates = {}
        for sample_id, records in by_sample.items():
            if sample_id not in current:
                for record in records:
                    report.skip("deleted", record, f"sample {sample_id}")
                continue
            value, path = current[sample_id]
            value, put_back = _restore_sample(value, sorted(records, key=lambda r: r["index"]), kind, label_type,
                                              report, path)
            if put_back:
                updates[sample_id] = value
                changed.add(sample_id)
        if updates:
            dataset.set_values(tag_field, updates, key_field="id")
        report.applies_undone += 1
    report.samples = len(changed)


def _restore_sample(value: Any, records: list[dict[str, Any]], kind: str, label_type: type | None,
                    report: UndoReport, where: str) -> tuple[Any, int]:
    """``value`` with the records put back (in their old order), and how many were."""
    import fiftyone.core.labels as fol

    if kind == "single":
        record = records[0]
        if value is None:
            report.restored += 1
            return fol.Label.from_dict(record["value"]), 1
        if value.id == record["key"]:
            report.already_present += 1
        else:
            report.skip("replaced", record, where)
        return value, 0
    if value is None:
        for record in records:
            report.skip("cleared", record, where)
        return value, 0
    items = list(value) if kind == "strings" else list(value[label_type._LABEL_LIST_FIELD] or [])
    key_of = (lambda item: item) if kind == "strings" else (lambda item: item.id)  # noqa: E731
    name_of = (lambda item: item) if kind == "strings" else (lambda item: item.label)  # noqa: E731
    keys = {key_of(item) for item in items}
    names_before = {name_of(item) for item in items}  # as this apply's undo finds them
    put_back = 0
    for record in records:
        if record["key"] in keys:
            report.already_present += 1
            continue
        if record["name"] in names_before:
            report.skip("re_added", record, where)
            continue
        item = record["value"] if kind == "strings" else fol.Label.from_dict(record["value"])
        items.insert(_position(items, record, key_of), item)
        keys.add(record["key"])
        put_back += 1
    report.restored += put_back
    if not put_back:
        return value, 0
    if kind == "strings":
        return items, put_back
    value[label_type._LABEL_LIST_FIELD] = items
    return value, put_back


def _position(items: list[Any], record: dict[str, Any], key_of: Any) -> int:
    """Right after the label that preceded it at apply time; at its old index when that one is gone."""
    if record["after"] is None:
        return 0
    for position, item in enumerate(items):
        if key_of(item) == record["after"]:
            return position + 1
    return min(record["index"], len(items))
