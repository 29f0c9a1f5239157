"""Which models a comparison runs, one value each: ``KIND[=SOURCE][,KEY=VALUE...]``.

``KIND`` is one of :data:`KINDS`: our taggers (``ram_plus``, ``ram``, ``tag2text``), the dual encoders
(``clip``, ``siglip``, ``blip``), the open-set detector (``grounding_dino``), or ``field`` (predictions a
dataset already holds). ``SOURCE`` is what to load: a hub id or a local folder for the third-party models
(default: :mod:`fiftyone_ram.hub_models`), a released variant, a checkpoint or a model folder for ours
(default: the family's released one), the field's name for ``field``. ``KEY=VALUE`` options are those of
:data:`OPTIONS` (``name=`` names the column and the fields of a second model of the same kind).

Examples: ``clip``, ``siglip=/models/siglip-so400m``, ``ram,checkpoint=ram.pth,config=tiny.json``,
``field=my_predictions``. Parsing imports nothing heavy: the command line checks choices as they are typed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fiftyone_ram.errors import OptionError, UserError

#: Our taggers (their scores are RAM's sigmoid outputs), by family.
OURS = ("ram_plus", "ram", "tag2text")
#: Image-text dual encoders: a tag's score is the image's similarity to the tag's prompt ensemble.
DUAL_ENCODERS = ("clip", "siglip", "blip")
#: Open-set detectors: a tag's score is the best box's score for the tag's phrase.
DETECTORS = ("grounding_dino",)
#: Predictions a dataset already holds (``Classifications``): they enter the comparison as they are.
FIELD = "field"
KINDS = OURS + DUAL_ENCODERS + DETECTORS + (FIELD,)
#: The paper's table (RAM paper Tables 2 and 3, RAM++ paper Table 2): every model kind but a field.
DEFAULT_MODELS = OURS + DUAL_ENCODERS + DETECTORS
#: The options each kind takes besides its source.
OPTIONS = {
    **{kind: ("name", "config", "checkpoint", "tag_list", "thresholds", "precision") for kind in OURS},
    "clip": ("name", "midpoint"), "blip": ("name", "midpoint"), "siglip": ("name",),
    "grounding_dino": ("name",), FIELD: ("name",),
}
#: Options that name files (their size and modification time are part of what a model's scores depend on).
PATH_OPTIONS = ("config", "checkpoint", "tag_list", "thresholds")


class ComparatorError(UserError, RuntimeError):
    """A comparator that cannot be loaded or run as asked; the message says why."""


@dataclass(frozen=True)
class ModelChoice:
    """One model of a comparison (see the module docstring)."""

    kind: str
    source: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The model's name in the table and in its fields' names: ``name=``, the field's name, or the kind."""
        given = dict(self.options).get("name")
        if given:
            return given
        return self.source if self.kind == FIELD and self.source else self.kind

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def __str__(self) -> str:
        text = self.kind + (f"={self.source}" if self.source else "")
        return ",".join([text, *(f"{k}={v}" for k, v in self.options)])

    def identity(self) -> str:
        """What the model's scores depend on, as far as the choice says: the choice itself and the size and
        modification time of every local file or folder it names (a changed checkpoint is another model)."""
        parts = [str(self)]
        for value in [self.source, *(v for k, v in self.options if k in PATH_OPTIONS)]:
            if value and Path(value).expanduser().exists():
                parts.append(_stamp(Path(value).expanduser()))
        return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:16]


def _stamp(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return ";".join(f"{p.name}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in files)


def parse_choice(text: str | ModelChoice) -> ModelChoice:
    """A :class:`ModelChoice` from its text (a choice is returned as it is); a bad one is refused in one line."""
    if isinstance(text, ModelChoice):
        return text
    parts = [part.strip() for part in str(text).split(",")]
    head, rest = parts[0], parts[1:]
    kind, _, source = head.partition("=")
    kind = kind.strip().lower().replace("-", "_").replace("+", "_plus")
    if kind not in KINDS:
        raise OptionError(f"model {text!r}: unknown kind {kind!r}; the kinds are {', '.join(KINDS)} (a model is "
                          f"KIND[=SOURCE][,KEY=VALUE...])")
    options = []
    for part in rest:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise OptionError(f"model {text!r}: {part!r} is not KEY=VALUE")
        if key not in OPTIONS[kind]:
            raise OptionError(f"model {text!r}: {kind} takes no option {key!r}; it takes {', '.join(OPTIONS[kind])}")
        options.append((key, value.strip()))
    if kind == FIELD and not source.strip():
        raise OptionError(f"model {text!r}: name the field, as field=FIELD_NAME")
    choice = ModelChoice(kind, source.strip() or None, tuple(options))
    if not choice.name.isidentifier():
        raise OptionError(f"model {text!r}: its name {choice.name!r} must be letters, digits and underscores "
                          f"(give name=...)")
    if choice.option("midpoint") is not None:
        try:
            float(choice.option("midpoint"))
        except ValueError:
            raise OptionError(f"model {text!r}: midpoint must be a number (a cosine similarity)") from None
    return choice


def parse_choices(texts) -> list[ModelChoice]:
    """Every choice parsed, and no name twice (two models of one kind need ``name=``)."""
    choices = [parse_choice(t) for t in texts]
    seen: dict[str, ModelChoice] = {}
    for choice in choices:
        if choice.name in seen:
            raise OptionError(f"two models are named {choice.name!r} ({seen[choice.name]} and {choice}): give one "
                              f"of them name=...")
        seen[choice.name] = choice
    if not choices:
        raise OptionError("no model to compare: name at least one (CLI: --model)")
    return choices
