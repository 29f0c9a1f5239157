"""Architecture configs: the sizes of a model, from the registry (released variants) or a JSON file.

A config file holds the fields of upstream's size knobs (``image_size``; ``swin``: embed_dim, depths,
num_heads, window_size; ``q2l`` and ``bert``: hidden_size, intermediate_size, num_attention_heads,
num_hidden_layers; ``descriptions_per_tag``) and optionally ``family``. A file whose top level has a
``config`` entry (the layout of the parity fixtures) is read from that entry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fiftyone_ram.errors import UserError

FAMILIES = ("ram", "ram_plus", "tag2text")
#: Hidden and attention dropout of every BERT stack upstream builds (med_config.json, q2l_config.json); it only
#: acts in train mode.
BERT_DROPOUT = 0.1


class ConfigError(UserError, ValueError):
    """A config name or file that cannot describe a model."""


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int = 4

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


@dataclass(frozen=True)
class BertSize:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_attention_heads: int = 12
    num_hidden_layers: int = 12


@dataclass(frozen=True)
class ModelConfig:
    family: str
    image_size: int
    swin: SwinConfig
    q2l: BertSize = field(default_factory=lambda: BertSize(768, 3072, 4, 2))
    bert: BertSize = field(default_factory=BertSize)
    descriptions_per_tag: int = 51
    embed_dim: int = 512  # CLIP text-embedding width of the label queries (RAM, RAM++)
    tokenizer: str | None = None  # WordPiece vocab for Tag2Text captions; None = bert-base-uncased
    name: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"unknown model family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        if self.image_size % (self.swin.patch_size * 2 ** (len(self.swin.depths) - 1)):
            raise ConfigError(f"image_size {self.image_size} is not a multiple of the Swin output stride")

    @property
    def num_tokens(self) -> int:
        """Image tokens seen by the tagging head: the mean token plus the last Swin stage's grid."""
        side = self.image_size // (self.swin.patch_size * 2 ** (len(self.swin.depths) - 1))
        return 1 + side * side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bert(d: dict[str, Any] | None, default: BertSize) -> BertSize:
    keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
    return BertSize(**{**asdict(default), **{k: int(d[k]) for k in keys if d and k in d}})


def config_from_dict(data: dict[str, Any], *, family: str | None = None, base: Path | None = None) -> ModelConfig:
    """Build a config from a dict of upstream size fields; ``family`` fills in a missing ``family`` field."""
    if "config" in data and isinstance(data["config"], dict):
        extra = {k: data[k] for k in ("family", "tokenizer") if k in data}
        data = {**data["config"], **extra}
    fam = data.get("family") or family
    if fam is None:
        raise ConfigError("the config does not name the model family: add \"family\": \"ram\" | \"ram_plus\" | "
                          "\"tag2text\", or pass a family name")
    try:
        s = data["swin"]
        swin = SwinConfig(int(s["embed_dim"]), tuple(int(x) for x in s["depths"]),
                          tuple(int(x) for x in s["num_heads"]), int(s["window_size"]), int(s.get("patch_size", 4)))
        tokenizer = data.get("tokenizer")
        if isinstance(tokenizer, dict):
            tokenizer = tokenizer.get("vocab")
        if tokenizer and base is not None and not Path(tokenizer).is_absolute():
            tokenizer = str(base / tokenizer)
        return ModelConfig(
            family=fam,
            image_size=int(data["image_size"]),
            swin=swin,
            q2l=_bert(data.get("q2l"), BertSize(768, 3072, 4, 2)),
            bert=_bert(data.get("bert"), BertSize()),
            descriptions_per_tag=int(data.get("descriptions_per_tag", 51)),
            embed_dim=int(data.get("embed_dim", 512)),
            tokenizer=tokenizer,
            name=data.get("name"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid model config ({type(exc).__name__}: {exc})") from exc


def load_config_file(path: Path, *, family: str | None = None) -> ModelConfig:
    """A config from a JSON file; a relative ``tokenizer`` path is taken relative to the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} holds a JSON {type(data).__name__}, not an object")
    return config_from_dict(data, family=family, base=path.parent)
