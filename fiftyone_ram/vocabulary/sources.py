"""Reading what users give as a vocabulary: tag lists (one per line) and RAM++ description files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from fiftyone_ram.errors import UserError
from fiftyone_ram.tag_files import read_text_file

TagSource = str | Path | Sequence[str]
DescriptionSource = str | Path | Sequence[Mapping[str, Sequence[str]]] | Mapping[str, Sequence[str]]


class VocabularyError(UserError, ValueError):
    """A vocabulary (tags, descriptions, tag thresholds) that cannot be built; the message names the input."""


class MissingVocabularyFileError(VocabularyError, FileNotFoundError):
    """A tag or description file that does not exist."""


def read_tags(source: TagSource) -> list[str]:
    """Tag names in order: a file path (one tag per line) or a list. Surrounding whitespace, blank entries and
    repeats are dropped (a tag is asked for once). A single string is always a path, never a tag."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise MissingVocabularyFileError(f"tag file {path} does not exist (pass a list to give tag names "
                                             f"directly)")
        raw = read_text_file(path, "tag file").splitlines()
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
            raise MissingVocabularyFileError(f"description file {path} does not exist")
        origin = str(path)
        try:
            source = json.loads(read_text_file(path, "description file"))
        except json.JSONDecodeError as exc:
            raise VocabularyError(f"{origin} is not valid JSON: {exc}") from exc
    items = list(source.items()) if isinstance(source, Mapping) else _upstream_items(source, origin)
    out: dict[str, list[str]] = {}
    for name, texts in items:
        name = str(name).strip()
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts \
                or not all(isinstance(t, str) and t.strip() for t in texts):
            raise VocabularyError(f"{origin}: the descriptions of {name!r} must be a non-empty list of non-empty "
                                  f"strings")
        if name in out:
            raise VocabularyError(f"{origin}: {name!r} is described twice")
        out[name] = list(texts)
    if not out:
        raise VocabularyError(f"{origin} describes no tags")
    return out


def _upstream_items(source: object, origin: str) -> list[tuple[str, Sequence[str]]]:
    if not isinstance(source, Sequence) or isinstance(source, str):
        raise VocabularyError(f"{origin}: expected a list of {{tag: [descriptions]}} objects or one object")
    items = []
    for position, entry in enumerate(source):
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise VocabularyError(f"{origin}: entry {position} is not a single-key {{tag: [descriptions]}} object")
        items.extend(entry.items())
    return items
