"""Reading what users give as a vocabulary: tag lists (one per line) and RAM++ description files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

TagSource = str | Path | Sequence[str]
DescriptionSource = str | Path | Sequence[Mapping[str, Sequence[str]]] | Mapping[str, Sequence[str]]


def read_tags(source: TagSource) -> list[str]:
    """Tag names in order: a file path (one tag per line) or a list. Surrounding whitespace, blank entries and
    repeats are dropped (a tag is asked for once). A single string is always a path, never a tag."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"tag file {path} does not exist (pass a list to give tag names directly)")
        raw = path.read_text(encoding="utf-8").splitlines()
    else:
        raw = [str(name) for name in source]
    return list(dict.fromkeys(name.strip() for name in raw if name.strip()))


def read_descriptions(source: DescriptionSource) -> dict[str, list[str]]:
    """``{tag: [description, ...]}`` in file order, from upstream's JSON layout (a list of single-key objects,
    e.g. ``openimages_rare_200_llm_tag_descriptions.json``), a plain JSON object, or the same in memory."""
    origin = "descriptions"
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"description file {path} does not exist")
        origin = str(path)
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{origin} is not valid JSON: {exc}") from exc
    items = list(source.items()) if isinstance(source, Mapping) else _upstream_items(source, origin)
    out: dict[str, list[str]] = {}
    for name, texts in items:
        name = str(name).strip()
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts \
                or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"{origin}: the descriptions of {name!r} must be a non-empty list of non-empty strings")
        if name in out:
            raise ValueError(f"{origin}: {name!r} is described twice")
        out[name] = list(texts)
    if not out:
        raise ValueError(f"{origin} describes no tags")
    return out


def _upstream_items(source: object, origin: str) -> list[tuple[str, Sequence[str]]]:
    if not isinstance(source, Sequence) or isinstance(source, str):
        raise ValueError(f"{origin}: expected a list of {{tag: [descriptions]}} objects or one object")
    items = []
    for position, entry in enumerate(source):
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise ValueError(f"{origin}: entry {position} is not a single-key {{tag: [descriptions]}} object")
        items.extend(entry.items())
    return items
