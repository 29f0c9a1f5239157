"""A tagger's label system: what each output column (tag id) is called, in English and Chinese, and when it fires.

RAM's 4,585 ids come from 6,449 parsed tags whose synonyms were merged, so one id carries several names. The
upstream files hold only one English name per id; the other names come from WordNet and curated merges
(:mod:`fiftyone_ram.labels.synonyms`) or from the user's own list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FILE_FORMAT = "fiftyone-ram/label-system"
FILE_VERSION = 1

# Which upstream label set a name means (RAM++ shares RAM's); the files and thresholds are the registry's.
UPSTREAM_ALIASES = {"ram": "ram", "ram_plus": "ram", "ram++": "ram", "tag2text": "tag2text"}

_SPACES = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """The form names are looked up by: lower case, single spaces, straight apostrophes."""
    return _SPACES.sub(" ", name.replace("\u2019", "'").strip().lower())


@dataclass(frozen=True)
class LabelSystem:
    """Tag ids ``0..len-1`` with a name each, extra names (synonyms), Chinese names and thresholds.

    A name maps to every id that carries it: Tag2Text's list repeats 116 names (noun and verb "train"), and the
    upstream metrics mark all such columns, so lookups return tuples. A tag's own name always wins over
    another tag's synonym.
    """

    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...] = ()
    chinese: tuple[str, ...] | None = None
    thresholds: tuple[float, ...] | None = None
    title: str = "custom"
    _by_name: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _by_synonym: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "synonyms", tuple(tuple(s) for s in self.synonyms) or ((),) * n)
        aligned = {"synonyms": self.synonyms, "chinese": self.chinese, "thresholds": self.thresholds}
        for key, values in aligned.items():
            if values is not None and len(values) != n:
                raise ValueError(f"{len(values)} {key} for {n} tags")
        if self.chinese is not None:
            object.__setattr__(self, "chinese", tuple(self.chinese))
        if self.thresholds is not None:
            object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        by_name: dict[str, list[int]] = {}
        by_synonym: dict[str, list[int]] = {}
        for i, (name, extra) in enumerate(zip(self.names, self.synonyms)):
            by_name.setdefault(normalize_name(name), []).append(i)
            for synonym in extra:
                by_synonym.setdefault(normalize_name(synonym), []).append(i)
        object.__setattr__(self, "_by_name", {k: tuple(v) for k, v in by_name.items()})
        object.__setattr__(self, "_by_synonym", {k: tuple(dict.fromkeys(v)) for k, v in by_synonym.items()})

    # -- lookup ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.ids_of(name))

    def ids_of(self, name: str) -> tuple[int, ...]:
        """Every id called ``name`` (its own name first, else as a synonym); empty when none is."""
        key = normalize_name(name)
        return self._by_name.get(key) or self._by_synonym.get(key, ())

    def id_of(self, name: str) -> int:
        """The id called ``name``; for a repeated name (Tag2Text homographs) the first, see :meth:`ids_of`."""
        ids = self.ids_of(name)
        if not ids:
            raise KeyError(f"{name!r} is not a tag of the {self.title} label system")
        return ids[0]

    def is_tag_name(self, name: str) -> bool:
        """Whether ``name`` is a tag's own name (not only a synonym)."""
        return normalize_name(name) in self._by_name

    def names_of(self, tag_id: int) -> tuple[str, ...]:
        """The tag's name followed by its synonyms."""
        return (self.names[tag_id], *self.synonyms[tag_id])

    def synonym_groups(self) -> dict[int, tuple[str, ...]]:
        """Ids that carry more than one name, with all their names."""
        return {i: self.names_of(i) for i in range(len(self)) if self.synonyms[i]}

    def chinese_of(self, tag_id: int) -> str | None:
        return None if self.chinese is None else self.chinese[tag_id]

    def threshold_of(self, tag_id: int) -> float | None:
        return None if self.thresholds is None else self.thresholds[tag_id]

    def all_names(self) -> dict[str, tuple[int, ...]]:
        """Every lookup name (normalised) with its ids; own names shadow synonyms, as in :meth:`ids_of`."""
        return {**self._by_synonym, **self._by_name}

    # -- derived label systems ------------------------------------------------------------------------------

    def with_synonyms(self, synonyms: Mapping[str, int | str]) -> "LabelSystem":
        """A copy with extra names (``word -> tag id or tag name``).

        A word that already names a tag, or is already a synonym, is left as it is: explicit names win.
        """
        extra = [list(s) for s in self.synonyms]
        taken = set(self._by_name) | set(self._by_synonym)
        for word, target in synonyms.items():
            key = normalize_name(word)
            if key in taken:
                continue
            tag_id = target if isinstance(target, int) else self.id_of(target)
            extra[tag_id].append(key)
            taken.add(key)
        return LabelSystem(self.names, tuple(map(tuple, extra)), self.chinese, self.thresholds, self.title)

    # -- construction ---------------------------------------------------------------------------------------

    @classmethod
    def from_upstream(
        cls,
        model: str = "ram",
        *,
        tag_list: Path | str | None = None,
        chinese: Path | str | None = None,
        thresholds: Path | str | None = None,
        extras: bool = True,
    ) -> "LabelSystem":
        """RAM's (also RAM++'s) or Tag2Text's label system from the upstream files.

        Paths default to the pinned downloads of :func:`fiftyone_ram.assets.upstream_file`. With ``extras``
        false only the tag list is read (enough for caption parsing).
        """
        key = UPSTREAM_ALIASES.get(model.lower())
        if key is None:
            raise ValueError(f"unknown label system {model!r}; expected one of {sorted(UPSTREAM_ALIASES)}")
        from fiftyone_ram.models.registry import labels_for_family
        from fiftyone_ram.tag_files import read_tag_list, read_thresholds

        labels = labels_for_family(key)
        names = read_tag_list(tag_list or _upstream_file(labels.tag_list))
        zh = th = None
        if extras and labels.tag_list_chinese:
            zh = read_tag_list(chinese or _upstream_file(labels.tag_list_chinese))
        if extras and labels.thresholds:
            values = read_thresholds(thresholds or _upstream_file(labels.thresholds), expected=len(names))
            th = [round(float(v), 6) for v in values]  # float32 in the file reader; the file has 2 decimals
        elif extras:
            th = [labels.threshold_overrides.get(i, labels.default_threshold) for i in range(len(names))]
        return cls(tuple(names), chinese=zh, thresholds=th, title=key)

    @classmethod
    def from_tag_list(cls, path: Path | str, title: str | None = None) -> "LabelSystem":
        """A user's list: one tag per line, synonyms after the name separated by ``|``; blank lines skipped.

        ``bicycle | bike | push bike`` makes one id with three names.
        """
        names, synonyms = [], []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            parts = [p.strip() for p in line.split("|")]
            if not parts[0]:
                continue
            names.append(parts[0])
            synonyms.append(tuple(p for p in parts[1:] if p))
        return cls(tuple(names), tuple(synonyms), title=title or Path(path).stem)

    @classmethod
    def from_file(cls, path: Path | str) -> "LabelSystem":
        """A saved label system (``.json``) or a tag list (anything else)."""
        return cls.load(path) if str(path).endswith(".json") else cls.from_tag_list(path)

    # -- one file -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        tags = []
        for i, name in enumerate(self.names):
            entry: dict = {"id": i, "name": name}
            if self.synonyms[i]:
                entry["synonyms"] = list(self.synonyms[i])
            if self.chinese is not None:
                entry["chinese"] = self.chinese[i]
            if self.thresholds is not None:
                entry["threshold"] = self.thresholds[i]
            tags.append(entry)
        return {"format": FILE_FORMAT, "version": FILE_VERSION, "title": self.title, "tags": tags}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LabelSystem":
        if data.get("format") != FILE_FORMAT:
            raise ValueError(f"not a label system file (format {data.get('format')!r}, expected {FILE_FORMAT!r})")
        if data.get("version", 0) > FILE_VERSION:
            raise ValueError(f"label system file version {data['version']} is newer than this fiftyone-ram reads")
        tags = sorted(data["tags"], key=lambda t: t["id"])
        if [t["id"] for t in tags] != list(range(len(tags))):
            raise ValueError("label system file: tag ids must be 0..N-1")
        has_zh = any("chinese" in t for t in tags)
        has_th = any("threshold" in t for t in tags)
        return cls(
            tuple(t["name"] for t in tags),
            tuple(tuple(t.get("synonyms", ())) for t in tags),
            tuple(t.get("chinese", "") for t in tags) if has_zh else None,
            tuple(t["threshold"] for t in tags) if has_th else None,
            data.get("title", "custom"),
        )

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str) -> "LabelSystem":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _upstream_file(name: str) -> Path:
    try:
        from fiftyone_ram.assets import upstream_file
    except ImportError as error:  # pragma: no cover - the assets module belongs to the foundation issue
        raise RuntimeError(
            f"cannot fetch {name}: fiftyone_ram.assets is not available; pass the file's path explicitly"
        ) from error
    return Path(upstream_file(name))

