"""Mapping ground-truth class names onto the model's tags.

Benchmarks and user datasets name things differently from RAM's 4585 tags ("Cars" vs "car", "automobile"
vs "car", "tv monitor" vs "television"). A ground-truth name is resolved in this order, the first hit
winning:

1. the user's mapping (a dict, or a JSON / CSV / TSV file of ``gt_name, model_name``; an empty target
   means "leave this class out"),
2. the exact model tag,
3. the same words after case, separator and singular/plural normalisation,
4. a synonym table ``{name: canonical}``,
5. a label system: the project's ``LabelSystem`` (``id_of`` + ``names``) or any object with a method
   mapping a name to its canonical tag; it is duck-typed so this module never imports it.

Names that resolve to nothing are *unmapped*: when the model's vocabulary is known they are absent from
the model and excluded from every metric (as upstream excludes classes the model lacks), and the report
lists them.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from fiftyone_ram.errors import UserError

#: How a name was resolved, in order of precedence.
#: "kept" = model vocabulary unknown, so the name is used as it is.

#: Method names tried, in order, on a label-system object.
LABEL_SYSTEM_METHODS = ("canonical", "canonical_tag", "to_canonical", "get_canonical", "resolve", "lookup")

_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "knives": "knife",
    "wives": "wife", "leaves": "leaf", "wolves": "wolf", "shelves": "shelf", "loaves": "loaf",
    "halves": "half", "calves": "calf", "thieves": "thief", "lives": "life", "scarves": "scarf",
}
_IRREGULAR_SINGULARS = {v: k for k, v in _IRREGULAR_PLURALS.items()}
_SEPARATORS = re.compile(r"[\s_\-/]+")


def normalize(name: str) -> str:
    """Case- and separator-insensitive form: ``"Traffic_Light"`` → ``"traffic light"``."""
    return _SEPARATORS.sub(" ", name.casefold()).strip()


_normalize = normalize  # NameMapper has a parameter of the same name


def inflections(name: str) -> list[str]:
    """Normalised singular and plural variants of a name (last word inflected), the name itself first.

    Candidates are only ever looked up in a known vocabulary, so over-generating (``"glass"`` →
    ``"glas"``) is harmless while it lets simple rules cover most English plurals."""
    base = normalize(name)
    head, _, last = base.rpartition(" ")
    prefix = f"{head} " if head else ""
    forms = [last]
    if last in _IRREGULAR_PLURALS:
        forms.append(_IRREGULAR_PLURALS[last])
    if last in _IRREGULAR_SINGULARS:
        forms.append(_IRREGULAR_SINGULARS[last])
    if last.endswith("ies") and len(last) > 4:
        forms.append(last[:-3] + "y")
    if last.endswith("ves"):
        forms += [last[:-3] + "f", last[:-3] + "fe"]
    if last.endswith("es"):
        forms.append(last[:-2])
    if last.endswith("s") and not last.endswith("ss"):
        forms.append(last[:-1])
    # plural of a singular name
    if last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        forms.append(last[:-1] + "ies")
    if last.endswith(("s", "x", "z", "ch", "sh", "o")):
        forms.append(last + "es")
    forms.append(last + "s")
    seen: dict[str, None] = {}
    for f in forms:
        seen.setdefault(prefix + f, None)
    return list(seen)


@dataclass(frozen=True)
class Resolution:
    """Where one ground-truth name went."""

    name: str
    tag: str | None
    how: str


@dataclass
class MappingReport:
    """What the mapping did, for the printed report and the stored evaluation."""

    resolutions: dict[str, Resolution] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # ground-truth occurrences per name
    model_vocabulary_known: bool = True

    def mapped(self) -> dict[str, str]:
        return {n: r.tag for n, r in self.resolutions.items() if r.tag is not None}

    def unmapped(self) -> list[str]:
        return sorted(n for n, r in self.resolutions.items() if r.how == "unmapped")

    def ignored(self) -> list[str]:
        return sorted(n for n, r in self.resolutions.items() if r.how == "ignored")

    def merged(self) -> dict[str, list[str]]:
        """Model tags that several ground-truth names map onto."""
        groups: dict[str, list[str]] = {}
        for n, r in self.resolutions.items():
            if r.tag is not None:
                groups.setdefault(r.tag, []).append(n)
        return {t: sorted(ns) for t, ns in groups.items() if len(ns) > 1}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_vocabulary_known": self.model_vocabulary_known,
            "resolutions": {n: {"tag": r.tag, "how": r.how} for n, r in sorted(self.resolutions.items())},
            "counts": dict(sorted(self.counts.items())),
            "unmapped": self.unmapped(),
            "ignored": self.ignored(),
            "merged": self.merged(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MappingReport":
        return cls(
            resolutions={n: Resolution(n, r["tag"], r["how"]) for n, r in d.get("resolutions", {}).items()},
            counts=dict(d.get("counts", {})),
            model_vocabulary_known=bool(d.get("model_vocabulary_known", True)),
        )


class NameMapper:
    """Resolves ground-truth names to model tags (see the module docstring for the order).

    Args:
        model_tags: the model's tag list; ``None`` when unknown (then names resolve to themselves,
            or to an observed tag via ``observed_tags``, and nothing is reported absent from the model).
        mapping: user mapping, a dict or a path to a JSON (object) / CSV / TSV (two columns) file.
        synonyms: ``{name: canonical}``; the canonical name is then resolved like a ground-truth name.
        label_system: a ``LabelSystem``, an object with one of ``LABEL_SYSTEM_METHODS``, or a callable.
        normalize: whether step 3 (case, separators, plurals) is used.
        observed_tags: with ``model_tags=None``, tags seen in the predictions, used as the vocabulary.
    """

    def __init__(
        self,
        model_tags: Sequence[str] | None,
        *,
        mapping: Mapping[str, str | None] | str | Path | None = None,
        synonyms: Mapping[str, str] | None = None,
        label_system: Any = None,
        normalize: bool = True,
        observed_tags: Iterable[str] = (),
    ):
        self.model_vocabulary_known = model_tags is not None
        vocabulary = list(model_tags) if model_tags is not None else sorted(set(observed_tags))
        self._exact = set(vocabulary)
        self._normalized: dict[str, str] = {}
        for tag in vocabulary:
            self._normalized.setdefault(_normalize(tag), tag)
        self._mapping = _normalize_keys(load_mapping(mapping) if mapping is not None else {})
        self._synonyms = _normalize_keys(dict(synonyms or {}))
        self._label_system = _label_system_function(label_system)
        self._use_normalization = normalize

    def resolve(self, name: str) -> Resolution:
        key = normalize(name)
        if name in self._mapping or key in self._mapping:
            target = self._mapping.get(name, self._mapping.get(key))
            if not target:
                return Resolution(name, None, "ignored")
            tag = self._lookup(target)
            # A user mapping may name a tag the model vocabulary does not list when it is unknown.
            if tag is None and not self.model_vocabulary_known:
                tag = target
            return Resolution(name, tag, "user")
        tag = self._lookup_exact(name)
        if tag is not None:
            return Resolution(name, tag, "exact")
        if self._use_normalization:
            tag = self._lookup_normalized(name)
            if tag is not None:
                return Resolution(name, tag, "normalized")
        canonical = self._synonyms.get(name) or next(
            (self._synonyms[f] for f in inflections(name) if self._synonyms.get(f)), None
        )
        if canonical:
            tag = self._lookup(canonical)
            if tag is not None or not self.model_vocabulary_known:
                return Resolution(name, tag or canonical, "synonym")
        if self._label_system is not None:
            canonical = self._label_system(name)
            if canonical:
                tag = self._lookup(str(canonical))
                if tag is not None or not self.model_vocabulary_known:
                    return Resolution(name, tag or str(canonical), "label_system")
        if not self.model_vocabulary_known:
            return Resolution(name, name, "kept")
        return Resolution(name, None, "unmapped")

    def report(self, counts: Mapping[str, int]) -> MappingReport:
        """Resolve every name of ``counts`` (name → ground-truth occurrences)."""
        return MappingReport(
            resolutions={n: self.resolve(n) for n in counts},
            counts=dict(counts),
            model_vocabulary_known=self.model_vocabulary_known,
        )

    def _lookup(self, name: str) -> str | None:
        tag = self._lookup_exact(name)
        if tag is None and self._use_normalization:
            tag = self._lookup_normalized(name)
        return tag

    def _lookup_exact(self, name: str) -> str | None:
        return name if name in self._exact else None

    def _lookup_normalized(self, name: str) -> str | None:
        for form in inflections(name):
            tag = self._normalized.get(form)
            if tag is not None:
                return tag
        return None


class MappingFileError(UserError, ValueError):
    """A name mapping file that is missing or cannot be read as one."""


def load_mapping(source: Mapping[str, str | None] | str | Path) -> dict[str, str | None]:
    """A user mapping from a dict or a file: JSON object, or CSV / TSV rows ``gt_name,model_name``.

    A header row naming the columns (``gt_name,model_name``) is skipped; an empty model name means
    the ground-truth class is left out of the evaluation."""
    if isinstance(source, Mapping):
        return {str(k): (str(v) if v else None) for k, v in source.items()}
    path = Path(source)
    if not path.is_file():
        raise MappingFileError(f"name mapping file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MappingFileError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise MappingFileError(f"{path}: a JSON mapping must be an object {{gt_name: model_name}}")
        return {str(k): (str(v) if v else None) for k, v in data.items()}
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") or ("\t" in text and "," not in text) else ","
    out: dict[str, str | None] = {}
    for i, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter)):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) > 2:
            raise MappingFileError(f"{path}, line {i + 1}: expected 'gt_name{delimiter}model_name', got {row!r}")
        gt, model = row[0].strip(), (row[1].strip() if len(row) > 1 else "")
        is_header = gt.casefold() in ("gt_name", "gt", "ground_truth") and model.casefold() in ("model_name", "model")
        if i == 0 and is_header:
            continue
        out[gt] = model or None
    return out


def _normalize_keys(mapping: Mapping[str, str | None]) -> dict[str, str | None]:
    """Keep the exact keys and add their normalised forms (without overriding an exact key)."""
    out = dict(mapping)
    for k, v in mapping.items():
        out.setdefault(normalize(k), v)
    return out


def _label_system_function(label_system: Any) -> Callable[[str], str | None] | None:
    if label_system is None:
        return None
    if callable(getattr(label_system, "id_of", None)) and hasattr(label_system, "names"):
        # fiftyone_ram.labels.LabelSystem: a name or synonym -> tag id -> the tag's own name
        return _quiet(lambda name: label_system.names[label_system.id_of(name)])
    for method in LABEL_SYSTEM_METHODS:
        fn = getattr(label_system, method, None)
        if callable(fn):
            return _quiet(fn)
    if callable(label_system):
        return _quiet(label_system)
    raise TypeError(
        f"label_system must be callable or have one of the methods {', '.join(LABEL_SYSTEM_METHODS)}; "
        f"got {type(label_system).__name__}"
    )


def _quiet(fn: Callable[[str], Any]) -> Callable[[str], str | None]:
    """A label system may raise KeyError for unknown names; treat that as 'no canonical tag'."""

    def call(name: str) -> str | None:
        try:
            result = fn(name)
        except (KeyError, LookupError, ValueError):
            return None
        if result is None:
            return None
        # A LabelSystem may return a record rather than a string.
        for attr in ("tag", "name", "canonical"):
            if not isinstance(result, str) and hasattr(result, attr):
                result = getattr(result, attr)
                break
        return str(result) if result else None

    return call
