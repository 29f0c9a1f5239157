"""Command line options built from a job's settings (:mod:`fiftyone_ram.jobs`), and the job built back from them.

The flag, the type, the allowed values, the default and the help of each option are the setting's, so the
command line states none of its own: ``@options(TagJob, "batch_size", ...)`` adds the options, and
:func:`job_from` turns the parsed values into the job (whose own checks then run, with messages naming the
flags). Works for any dataclass whose fields are made with :func:`fiftyone_ram.jobs.setting` (a
``VocabularySpec`` too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from fiftyone_ram.jobs import (CHOICES, HELP, HIGH, KIND, LOW, PATH, THRESHOLD, default_of, field_of, flag_of,
                               item_type, settings_of, types_of, value_types)

__all__ = ["THRESHOLD_TYPE", "ThresholdType", "CommaList", "flag_of", "job_from", "option", "options", "settings_of",
           "values_for"]

F = TypeVar("F", bound=Callable[..., Any])


class ThresholdType(click.ParamType):
    """A probability option: the package's one threshold rule (``fiftyone_ram.decision.check_threshold``)."""

    name = "threshold"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from fiftyone_ram.decision import check_threshold
        from fiftyone_ram.errors import OptionError

        try:
            number = float(value)
        except (TypeError, ValueError):
            number = value
        try:
            return check_threshold(number, repr(value))
        except OptionError as exc:
            self.fail(str(exc), param, ctx)


#: For every option that is a threshold or another probability.
THRESHOLD_TYPE = ThresholdType()


def option(cls: type, name: str, *, given_only: bool = False, **overrides: Any) -> Callable[[F], F]:
    """The click option of setting ``name`` of ``cls`` (``overrides``: click keywords that differ here).
    ``given_only``: the option is None unless given (its help says the default), so that only what the user
    gave replaces a base of other values (fine-tuning's weak-start recipe)."""
    f = field_of(cls, name)
    meta = f.metadata
    flag = flag_of(cls, name)
    if flag is None:
        raise ValueError(f"{cls.__name__}.{name} has no command line flag")
    kinds = value_types(types_of(cls).get(name))
    try:
        default = default_of(cls, name)
        keywords: dict[str, Any] = {"help": _sentence(meta[HELP]), "default": default,
                                    "show_default": default not in (None, False, ())}
    except KeyError:  # a setting every run must give
        default = None
        keywords = {"help": _sentence(meta[HELP]), "required": True}
    if bool in kinds and kinds <= {bool, type(None)}:
        if default is True:
            flag = f"{flag}/--no-{flag[2:]}"
        else:
            keywords.update(is_flag=True, show_default=False)
    elif meta.get(CHOICES):
        keywords["type"] = click.Choice([str(c) for c in meta[CHOICES]])
    elif meta.get(KIND) == THRESHOLD:
        keywords["type"] = THRESHOLD_TYPE
    elif meta.get(KIND) == PATH:
        keywords["type"] = click.Path(exists=True, dir_okay=False)
    elif int in kinds and float not in kinds:
        bounded = meta.get(LOW) is not None or meta.get(HIGH) is not None
        keywords["type"] = click.IntRange(min=meta.get(LOW), max=meta.get(HIGH)) if bounded else click.INT
    elif float in kinds:
        bounded = meta.get(LOW) is not None or meta.get(HIGH) is not None
        keywords["type"] = click.FloatRange(min=meta.get(LOW), max=meta.get(HIGH)) if bounded else click.FLOAT
    if tuple in kinds or list in kinds:
        item = item_type(types_of(cls).get(name))
        keywords.update(multiple=True, default=default or (), type=CommaList(item),
                        show_default=bool(default))
        if default:
            keywords["default"] = (tuple(default),)
        if meta.get(CHOICES):  # checked by the job; said here
            keywords["help"] = keywords["help"].rstrip(".") + f" (of {', '.join(map(str, meta[CHOICES]))})."
    if given_only and not keywords.get("required"):
        if keywords.get("is_flag"):
            keywords["default"] = None
        elif "/" in flag:  # --x/--no-x: None when neither is given
            keywords["default"] = None
        else:
            keywords["default"] = () if keywords.get("multiple") else None
        if default not in (None, False, ()):
            keywords["help"] = keywords["help"].rstrip(".") + f" (default: {_shown(default)})."
        keywords["show_default"] = False
    keywords.update(overrides)
    return click.option(flag, name, **keywords)


def _shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def options(cls: type, *names: str, exclude: tuple[str, ...] = (), given_only: bool = False,
            **overrides: Mapping[str, Any]) -> Callable[[F], F]:
    """The options of ``names`` (default: every setting of ``cls`` that has a flag, but ``exclude``), in order in
    ``--help``; ``overrides``: per setting, click keywords that differ here; ``given_only``: see :func:`option`."""
    chosen = list(names) or [f.name for f in settings_of(cls) if flag_of(cls, f.name) and f.name not in exclude]

    def decorate(command: F) -> F:
        for name in reversed(chosen):
            command = option(cls, name, given_only=given_only, **overrides.get(name, {}))(command)
        return command

    return decorate


class CommaList(click.ParamType):
    """A repeatable option whose values may also be comma-separated (``--top-k 1,3`` or ``--top-k 1 --top-k 3``);
    each occurrence parses to a tuple, flattened by :func:`values_for`."""

    name = "list"

    def __init__(self, item: type = str) -> None:
        self.item = item

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",") if part.strip()]
        try:
            return tuple(self.item(part) for part in parts)
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.item.__name__} values", param, ctx)


def values_for(cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed values that are settings of ``cls`` (repeatable options flattened to one tuple, empty ones
    left out: the setting's default applies)."""
    names = {f.name for f in settings_of(cls)}
    out = {}
    for name, value in params.items():
        if name not in names or value is None:
            continue
        if isinstance(value, tuple):
            value = tuple(item for part in value for item in (part if isinstance(part, tuple) else (part,)))
            if not value:
                continue
        out[name] = value
    return out


def job_from(cls: type, params: Mapping[str, Any], **fixed: Any):
    """The job (or spec) of class ``cls`` from a command's parsed ``params``."""
    return cls(**{**values_for(cls, params), **fixed})


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
