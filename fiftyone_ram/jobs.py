"""A job's settings in one place: their defaults, their checks, and how each door shows them.

Every job of the package (tag, evaluate, generate, clean, review, fine-tune, benchmark, compare, pipeline) is a
dataclass derived from :class:`Job` whose fields are made with :func:`setting`. The field's default is the
job's default, its metadata says what it means (help text, the App form's label, the command line's flag, the
allowed choices or range), and :meth:`Job.check_values` refuses a value out of range in one line that names the
setting as each door calls it. The command line builds its options from these fields
(``fiftyone_ram.cli.settings``), the App builds its form fields from them (``fiftyone_ram.app.forms``), and the
Python functions take the job or its fields: no door states a default or a check of its own.

Checks that need the data (a field of the wrong type, an empty view, a run to resume) are the job's
``check(samples)``, which runs before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass
from typing import Any, ClassVar

from fiftyone_ram.errors import OptionError

#: Metadata keys of a setting.
HELP, LABEL, FLAG, FORM, CHOICES, LOW, HIGH, KIND = "help", "label", "flag", "form", "choices", "low", "high", "kind"
#: Kinds of values that need more than their Python type to be shown and checked.
THRESHOLD, PATH, FIELD, FIELDS = "threshold", "path", "field", "fields"


def setting(default: Any = MISSING, *, help: str, label: str | None = None, flag: str | None | bool = None,
            form: bool = True, choices: Sequence[Any] | None = None, low: float | None = None,
            high: float | None = None, kind: str | None = None, factory: Any = MISSING) -> Any:
    """A job field: ``default`` (or ``factory``), what it means (``help``; ``label`` in the App), its command
    line flag (``flag``: default ``--name-with-dashes``; False: not on the command line), whether the App's form
    shows it (``form``), and its allowed values (``choices``, or ``low`` / ``high`` inclusive bounds; ``kind``
    ``"threshold"`` is a probability, ``"path"`` a file, ``"field"`` / ``"fields"`` dataset fields)."""
    metadata = {HELP: help, LABEL: label, FLAG: flag, FORM: form, CHOICES: tuple(choices) if choices else None,
                LOW: low, HIGH: high, KIND: kind}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings_of(cls: type) -> list[Field]:
    """The fields of a dataclass made with :func:`setting`, in order (a job's, a ``VocabularySpec``'s...)."""
    return [f for f in dataclasses.fields(cls) if HELP in f.metadata]


def field_of(cls: type, name: str) -> Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


def default_of(cls: type, name: str) -> Any:
    """The default of setting ``name`` (what every door uses when the user gives nothing)."""
    f = field_of(cls, name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def flag_of(cls: type, name: str) -> str | None:
    """The command line flag of setting ``name`` (None: not on the command line)."""
    flag = field_of(cls, name).metadata.get(FLAG)
    if flag is False:
        return None
    return flag or "--" + name.replace("_", "-")


def types_of(cls: type) -> dict[str, Any]:
    """A dataclass's field types, resolved (annotations are strings under ``from __future__ import
    annotations``)."""
    return typing.get_type_hints(cls)


@dataclass
class Job:
    """Base of the job settings (see the module docstring). Subclasses are dataclasses."""

    #: How the job is named in messages ("tagging", "evaluation"...).
    what: ClassVar[str] = "job"

    def __post_init__(self) -> None:
        self.check_values()

    # -- the settings ------------------------------------------------------------------------------------------
    @classmethod
    def settings(cls) -> list[Field]:
        return settings_of(cls)

    @classmethod
    def default(cls, name: str) -> Any:
        return default_of(cls, name)

    @classmethod
    def flag(cls, name: str) -> str | None:
        return flag_of(cls, name)

    @classmethod
    def option_name(cls, name: str) -> str:
        """``name (CLI: --flag)``: how a message names a setting for every door."""
        flag = cls.flag(name)
        return f"{name} (CLI: {flag})" if flag else name

    @classmethod
    def from_values(cls, values: Mapping[str, Any], **fixed: Any):
        """A job from a door's values (a form's, a spec file's): unknown keys are refused, missing and None ones
        take the default, numbers are converted to the setting's type."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise OptionError(f"unknown {cls.what} setting(s) {', '.join(unknown)}; the settings are "
                              f"{', '.join(f.name for f in cls.settings())}")
        types = types_of(cls)
        given = {k: _convert(v, types.get(k)) for k, v in values.items() if v is not None}
        return cls(**{**given, **fixed})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    # -- the checks --------------------------------------------------------------------------------------------
    def check_values(self) -> None:
        """Each setting within its choices or range, in one line naming it (:meth:`option_name`)."""
        for f in self.settings():
            value = getattr(self, f.name)
            if value is None:
                continue
            meta = f.metadata
            named = self.option_name(f.name)
            if meta.get(KIND) == THRESHOLD:
                from fiftyone_ram.decision import check_threshold

                check_threshold(value, named)
                continue
            choices = meta.get(CHOICES)
            if choices is not None:
                items = value if isinstance(value, (list, tuple)) and not isinstance(value, str) else [value]
                bad = [v for v in items if v not in choices]
                if bad:
                    raise OptionError(f"{named}: {bad[0]!r} is not one of {', '.join(map(str, choices))}")
            low, high = meta.get(LOW), meta.get(HIGH)
            if low is not None or high is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise OptionError(f"{named}: {value!r} is not a finite number")
                if low is not None and value < low:
                    raise OptionError(f"{named} must be at least {low}, not {value}")
                if high is not None and value > high:
                    raise OptionError(f"{named} must be at most {high}, not {value}")


def _convert(value: Any, annotation: Any) -> Any:
    """A form's or a file's value as the setting's type (JSON gives floats for ints, lists for tuples)."""
    kinds = value_types(annotation)
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        return int(value)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tuple in kinds and isinstance(value, list):
        return tuple(value)
    return value


def value_types(annotation: Any) -> set[type]:
    """The Python types an annotation admits (``int | None`` -> {int, NoneType})."""
    if annotation is None:
        return set()
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(value_types(a) for a in typing.get_args(annotation)))
    if origin is not None:
        return {origin} if isinstance(origin, type) else set()
    return {annotation} if isinstance(annotation, type) else set()


def item_type(annotation: Any) -> type:
    """The element type of a list setting (``tuple[int, ...]`` -> int); str when it does not say."""
    for arg in typing.get_args(annotation):
        for inner in typing.get_args(arg) or (arg,):
            if inner in (int, float, str):
                return inner
    return str


def _plain(value: Any) -> Any:
    if isinstance(value, Job):
        return value.to_dict()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value
