"""Where every tag of a pipeline came from, written on the tag: ``provenance`` (the last event, ``"r<N>:<event>"``)
and ``provenance_history`` (every event, oldest first), so that the App filters by them, e.g.
``F("<prefix>.classifications").filter(F("provenance") == "r1:generated")``.

The events: ``original`` (round 0: the dataset's own tags), ``parsed`` (from the captions), ``generated``
(predicted by the round's model), ``captioned`` (parsed from the captions the round's model wrote), ``kept``
(flagged by cleaning, kept by the review) and ``removed`` (flagged or marked, removed by the review). A removed
tag is no longer in the round's field: its copy in the round's review field carries the event.

Generation names a tag's sources (``original`` ... ``captioned``) and cleaning copies each tag into the review
field with its attributes; this module only reads those and writes the two attributes, so stamping again gives
the same values (a resumed stage may stamp twice).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fiftyone_ram.labels.label_system import normalize_name

ATTRIBUTE = "provenance"
HISTORY = "provenance_history"
EVENTS = ("original", "parsed", "generated", "captioned", "kept", "removed")
#: Generation's sources as events.
SOURCE_EVENTS = {"original": "original", "parsed": "parsed", "predicted": "generated", "captioned": "captioned"}


def event(number: int, what: str) -> str:
    """``"r<number>:<what>"``."""
    return f"r{number}:{what}"


def stamp_generated(samples: Any, field: str, previous: str | None, number: int) -> Counter:
    """Stamp the tags generation wrote into ``field`` for round ``number``: a tag carried over from ``previous``
    (source ``original`` in a later round) keeps its provenance; a new one gets this round's event of its first
    source. Returns the new tags per event."""
    paths = ["id", field] + ([previous] if previous else [])
    columns = samples.values(paths)
    added: Counter = Counter()
    values = []
    for row in zip(*columns):
        value = row[1]
        earlier = _by_name(row[2]) if previous else {}
        for label in value.classifications if value is not None else ():
            sources = list(label["sources"] or []) if label.has_field("sources") else []
            carried = earlier.get(normalize_name(label.label)) if number and "original" in sources else None
            if carried is not None and carried.has_field(ATTRIBUTE):
                _set(label, carried[ATTRIBUTE], list(carried[HISTORY] or []) if carried.has_field(HISTORY) else [])
                continue
            what = event(number, SOURCE_EVENTS.get(sources[0] if sources else "original", "original"))
            _set(label, what, [what])
            added[what.split(":", 1)[1]] += 1
        values.append(value)
    samples.set_values(field, values, dynamic=True)
    return added


def stamp_review(samples: Any, field: str, review_field: str, number: int) -> Counter:
    """After the review of round ``number`` was applied to ``field``: a review copy whose tag is gone from the field
    is ``removed``; a flagged tag still there is ``kept`` (in both fields). Returns the counts of both."""
    from fiftyone_ram.engine.review import source_ids

    counts: Counter = Counter()
    ids, values, reviews = samples.values(["id", field, review_field])
    for value, review in zip(values, reviews):
        present = {label.id: label for label in (value.classifications if value is not None else ())}
        for copy in review.classifications if review is not None else ():
            sources = source_ids(copy)
            gone = bool(sources) and not any(i in present for i in sources)
            flagged = copy.has_field("flag_reason") and copy["flag_reason"] is not None
            if gone:
                what = "removed"
            elif flagged:
                what = "kept"
                for i in sources:
                    if i in present:
                        _append(present[i], event(number, what))
            else:
                continue
            _append(copy, event(number, what))
            counts[what] += 1
    samples.set_values(field, values, dynamic=True)
    samples.set_values(review_field, reviews, dynamic=True)
    return counts


def count_events(samples: Any, field: str) -> Counter:
    """The tags of ``field`` per provenance (``"r1:generated"`` -> n)."""
    values = samples.values(f"{field}.classifications.{ATTRIBUTE}")
    return Counter(v for row in values for v in (row or ()) if v)


def _by_name(value: Any) -> dict[str, Any]:
    return {normalize_name(label.label): label for label in (value.classifications if value is not None else ())}


def _set(label: Any, what: str, history: list[str]) -> None:
    label[ATTRIBUTE] = what
    label[HISTORY] = history


def _append(label: Any, what: str) -> None:
    history = list(label[HISTORY] or []) if label.has_field(HISTORY) else []
    if not history or history[-1] != what:
        history.append(what)
    _set(label, what, history)
