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
#: What a config may describe, checked from its sizes before anything is built (a typo such as image_size
#: 100000 would otherwise allocate without bound, or depths [1, 1, 10000, 1] take minutes to fail). Weights: three
#: times the largest released model (RAM Swin-L 384 with its captioning branch, 0.51e9). Activations: the largest
#: tensor one image makes in a Swin stage (tokens x the wider of the MLP's 4 x width and the heads' window
#: scores; a shifted window's attention mask is as large), about 60 times the released Swin-L 384's (8.0e6 values).
MAX_PARAMETERS = 1.5e9
MAX_ACTIVATION_VALUES = 5e8
#: bert-base-uncased's WordPiece vocabulary plus upstream's two tokens: the captioning branch's embeddings.
_CAPTION_VOCAB = 30524


class ConfigError(UserError, ValueError):
    """A config name or file that cannot describe a model."""


#: The keys a config (or its ``swin``, ``q2l`` and ``bert`` entries) may hold; any other key is refused,
#: since a misspelt size would otherwise be replaced by its default without a word.
CONFIG_KEYS = ("family", "image_size", "swin", "q2l", "bert", "descriptions_per_tag", "embed_dim", "tokenizer",
               "name")
SWIN_KEYS = ("embed_dim", "depths", "num_heads", "window_size", "patch_size")
BERT_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int = 4

    def __post_init__(self) -> None:
        for key in ("embed_dim", "window_size", "patch_size"):
            _positive(getattr(self, key), f"swin.{key}")
        if not self.depths:
            raise ConfigError("swin.depths is empty: give the number of blocks of each Swin stage, e.g. [2, 2, 18, 2]")
        for i, depth in enumerate(self.depths):
            _positive(depth, f"swin.depths[{i}]")
        if len(self.num_heads) != len(self.depths):
            raise ConfigError(f"swin.num_heads has {len(self.num_heads)} entries but swin.depths has "
                              f"{len(self.depths)} stages: give one head count per stage")
        for i, heads in enumerate(self.num_heads):
            _positive(heads, f"swin.num_heads[{i}]")
            width = self.embed_dim * 2 ** i
            if width % heads:
                raise ConfigError(f"swin.num_heads[{i}] = {heads} does not divide the width of stage {i + 1} "
                                  f"({width} = embed_dim {self.embed_dim} x {2 ** i})")

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def stride(self) -> int:
        """Pixels per token of the last stage: the patch size, halved in resolution by every later stage."""
        return self.patch_size * 2 ** (len(self.depths) - 1)


@dataclass(frozen=True)
class BertSize:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_attention_heads: int = 12
    num_hidden_layers: int = 12

    def check(self, name: str) -> None:
        for key in BERT_KEYS:
            _positive(getattr(self, key), f"{name}.{key}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"{name}.num_attention_heads = {self.num_attention_heads} does not divide "
                              f"{name}.hidden_size = {self.hidden_size}")


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
        _positive(self.image_size, "image_size")
        if self.image_size % self.swin.stride:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of the Swin output stride "
                              f"{self.swin.stride} (swin.patch_size {self.swin.patch_size} x 2^"
                              f"{len(self.swin.depths) - 1})")
        self.q2l.check("q2l")
        self.bert.check("bert")
        _positive(self.descriptions_per_tag, "descriptions_per_tag")
        _positive(self.embed_dim, "embed_dim")
        _check_cost(self)

    @property
    def num_tokens(self) -> int:
        """Image tokens seen by the tagging head: the mean token plus the last Swin stage's grid."""
        side = self.image_size // self.swin.stride
        return 1 + side * side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parameter_estimate(config: ModelConfig) -> dict[str, float]:
    """Weights by part, from the sizes (the tags' own rows aside: their count comes with the tag list, and a
    checkpoint's tensors must match them anyway). Within a few percent of the released models' state dicts."""
    swin = config.swin
    parts = {"swin.patch_embed": 3.0 * swin.patch_size ** 2 * swin.embed_dim}
    side = config.image_size // swin.patch_size
    for stage, depth in enumerate(swin.depths):
        width, heads = swin.embed_dim << stage, swin.num_heads[stage]
        window = min(swin.window_size, max(side >> stage, 1))
        block = 12.0 * width * width + 13 * width + (2 * window - 1) ** 2 * heads
        merge = 2.0 * width * width if stage else 0.0  # 4 x (width / 2) -> width
        parts[f"swin stage {stage + 1}"] = depth * block + merge
    kv = swin.num_features if config.family == "tag2text" else config.embed_dim
    h, q2l = config.q2l.hidden_size, config.q2l
    parts["q2l"] = q2l.num_hidden_layers * (4.0 * h * h + 2 * kv * h + 2 * h * q2l.intermediate_size)
    if config.family != "tag2text":
        parts["image projection"] = float(swin.num_features) * config.embed_dim
    if config.family in ("ram", "tag2text"):  # the captioning branch: a tag encoder and a text decoder
        h, bert = config.bert.hidden_size, config.bert
        parts["bert"] = 2 * (bert.num_hidden_layers * (8.0 * h * h + 2 * h * bert.intermediate_size)
                             + _CAPTION_VOCAB * h)
    return parts


def activation_estimate(config: ModelConfig) -> tuple[float, int]:
    """The largest tensor one image makes in the Swin backbone, in values, and its stage (1-based)."""
    swin = config.swin
    side = config.image_size // swin.patch_size
    best, where = 0.0, 1
    for stage in range(len(swin.depths)):
        tokens = float(max(side >> stage, 1)) ** 2
        width, heads = swin.embed_dim << stage, swin.num_heads[stage]
        window = min(swin.window_size, max(side >> stage, 1))
        values = tokens * max(4 * width, heads * window * window)
        if values > best:
            best, where = values, stage + 1
    return best, where


def _check_cost(config: ModelConfig) -> None:
    """Refuse, with the numbers, a config whose model could not be built in reasonable memory and time."""
    parts = parameter_estimate(config)
    total = sum(parts.values())
    if total > MAX_PARAMETERS:
        largest = max(parts, key=parts.get)
        raise ConfigError(f"the config describes about {_amount(total)} weights ({largest}: {_amount(parts[largest])}; "
                          f"swin.depths {list(config.swin.depths)}, swin.embed_dim {config.swin.embed_dim}), more than "
                          f"the {_amount(MAX_PARAMETERS)} this package builds (the released models have at most "
                          f"5.1e8): check its sizes")
    values, stage = activation_estimate(config)
    if values > MAX_ACTIVATION_VALUES:
        raise ConfigError(f"image_size {config.image_size} makes a tensor of about {_amount(values)} values per "
                          f"image in Swin stage {stage}, more than the {_amount(MAX_ACTIVATION_VALUES)} this package "
                          f"allows: use an image_size of at most {_largest_image_size(config)} (the released models "
                          f"use 384)")


def _amount(value: float) -> str:
    """2.0e9 rather than 2e+09."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _largest_image_size(config: ModelConfig) -> int:
    """The largest multiple of the Swin stride whose activations are within bounds."""
    stride, low, high = config.swin.stride, 1, max(config.image_size // config.swin.stride, 1)
    while low < high:  # the largest k with k x stride within bounds
        k = (low + high + 1) // 2
        fits = activation_estimate(_with_image_size(config, k * stride))[0] <= MAX_ACTIVATION_VALUES
        low, high = (k, high) if fits else (low, k - 1)
    return low * stride


def _with_image_size(config: ModelConfig, size: int):
    """A stand-in with another image size (only what ``activation_estimate`` reads)."""
    from types import SimpleNamespace

    return SimpleNamespace(swin=config.swin, image_size=size)


def _positive(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, not {value!r}")


def _integer(value: Any, key: str) -> int:
    """A JSON number that is an integer (``384`` or ``384.0``); ``224.7``, strings and booleans are refused
    rather than truncated."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ConfigError(f"{key} must be an integer, not {value!r}")
    return int(value)


def _integers(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} must be a list of integers, not {value!r}")
    return tuple(_integer(v, f"{key}[{i}]") for i, v in enumerate(value))


def _section(data: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{key} must be a JSON object, not {data!r}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{key} has unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    return data


def _bert(d: dict[str, Any] | None, default: BertSize, key: str) -> BertSize:
    if d is None:
        return default
    d = _section(d, key, BERT_KEYS)
    return BertSize(**{**asdict(default), **{k: _integer(d[k], f"{key}.{k}") for k in BERT_KEYS if k in d}})


def config_from_dict(data: dict[str, Any], *, family: str | None = None, base: Path | None = None) -> ModelConfig:
    """Build a config from a dict of upstream size fields; ``family`` fills in a missing ``family`` field.

    Every value is checked (positive integers, one head count per stage dividing its width, an image size
    that the Swin stride divides) and unknown keys are refused, each with a message naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"a model config must be a JSON object, not a {type(data).__name__}")
    if "config" in data and isinstance(data["config"], dict):  # the parity fixtures' layout
        extra = {k: data[k] for k in ("family", "tokenizer") if k in data}
        data = {**data["config"], **extra}
    data = _section(data, "the config", CONFIG_KEYS)
    fam = data.get("family") or family
    if fam is None:
        raise ConfigError("the config does not name the model family: add \"family\": \"ram\" | \"ram_plus\" | "
                          "\"tag2text\", or pass a family name")
    for key in ("image_size", "swin"):
        if key not in data:
            raise ConfigError(f"the config lacks {key!r}")
    s = _section(data["swin"], "swin", SWIN_KEYS)
    for key in ("embed_dim", "depths", "num_heads", "window_size"):
        if key not in s:
            raise ConfigError(f"the config lacks 'swin.{key}'")
    swin = SwinConfig(_integer(s["embed_dim"], "swin.embed_dim"), _integers(s["depths"], "swin.depths"),
                      _integers(s["num_heads"], "swin.num_heads"), _integer(s["window_size"], "swin.window_size"),
                      _integer(s.get("patch_size", 4), "swin.patch_size"))
    tokenizer = data.get("tokenizer")
    if isinstance(tokenizer, dict):
        tokenizer = tokenizer.get("vocab")
    if tokenizer is not None and not isinstance(tokenizer, str):
        raise ConfigError(f"tokenizer must be the path of a vocab.txt, not {tokenizer!r}")
    if tokenizer and base is not None and not Path(tokenizer).is_absolute():
        tokenizer = str(base / tokenizer)
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"name must be a string, not {name!r}")
    return ModelConfig(
        family=fam,
        image_size=_integer(data["image_size"], "image_size"),
        swin=swin,
        q2l=_bert(data.get("q2l"), BertSize(768, 3072, 4, 2), "q2l"),
        bert=_bert(data.get("bert"), BertSize(), "bert"),
        descriptions_per_tag=_integer(data.get("descriptions_per_tag", 51), "descriptions_per_tag"),
        embed_dim=_integer(data.get("embed_dim", 512), "embed_dim"),
        tokenizer=tokenizer,
        name=name,
    )


def load_config_file(path: Path, *, family: str | None = None) -> ModelConfig:
    """A config from a JSON file; a relative ``tokenizer`` path is taken relative to the file. Errors name the
    file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} holds a JSON {type(data).__name__}, not an object")
    try:
        return config_from_dict(data, family=family, base=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
