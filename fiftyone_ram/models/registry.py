"""The released variants, and everything that is a fact about them, in one place.

In the manner of timm's ``default_cfgs``: one entry per released checkpoint holds its family, architecture,
weights (Hugging Face repository, file, size, sha256) and label set (tag list, Chinese names, thresholds,
excluded tags). The loaders, the CLI, the zoo source (``zoo/manifest.json`` is generated from this module),
the operators and the docs read it; nothing else states these facts.

A label set says how upstream turns a checkpoint's scores into tags. It applies to a checkpoint of its family
whenever the tag list in use *is* the label set's list (same names in the same order, compared by sha256),
whether the list was downloaded or passed explicitly; with any other list, thresholds default to
:data:`FALLBACK_THRESHOLD` and nothing is excluded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fiftyone_ram.models.config import FAMILIES, ConfigError, ModelConfig, SwinConfig, load_config_file
from fiftyone_ram.upstream import UPSTREAM_FILES

#: How each family is called in menus and listings.
FAMILY_NAMES = {"ram_plus": "RAM++", "ram": "RAM", "tag2text": "Tag2Text"}
#: Upstream's constructor default, the threshold of a tag that has no per-class value.
FALLBACK_THRESHOLD = 0.68


def tag_list_signature(names: Sequence[str]) -> str:
    """Identity of a tag list: sha256 of its names joined by newlines (equal to the sha256 of upstream's files,
    which have no trailing newline)."""
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LabelSet:
    """The tags a checkpoint was trained on and upstream's rule for deciding them."""

    name: str
    tag_list: str  # an upstream file (``fiftyone_ram.upstream.UPSTREAM_FILES``)
    num_classes: int
    tag_list_chinese: str | None = None
    thresholds: str | None = None  # per-class file, one value per tag
    default_threshold: float = FALLBACK_THRESHOLD  # tags without a per-class value
    threshold_overrides: Mapping[int, float] = field(default_factory=dict)
    excluded: tuple[int, ...] = ()  # never output (upstream's delete_tag_index)

    @property
    def signature(self) -> str:
        return UPSTREAM_FILES[self.tag_list].sha256

    @property
    def files(self) -> tuple[str, ...]:
        """The upstream files this label set reads."""
        return tuple(f for f in (self.tag_list, self.tag_list_chinese, self.thresholds) if f)

    def matches(self, names: Sequence[str]) -> bool:
        return len(names) == self.num_classes and tag_list_signature(names) == self.signature


@dataclass(frozen=True)
class HubWeights:
    """Released weights on the Hugging Face hub."""

    repo_id: str
    filename: str
    repo_type: str = "model"  # "model" or "space"
    size: int | None = None  # exact bytes, when pinned
    sha256: str | None = None  # None where the file was re-uploaded and no hash is pinned
    approx_size: int | None = None  # what the model card states, when the exact size is not pinned

    @property
    def page(self) -> str:
        prefix = "spaces/" if self.repo_type == "space" else ""
        return f"https://huggingface.co/{prefix}{self.repo_id}"

    @property
    def url(self) -> str:
        return f"{self.page}/resolve/main/{self.filename}"


@dataclass(frozen=True)
class VariantCfg:
    """One released checkpoint."""

    name: str
    family: str
    label: str  # for menus: "RAM++ (Swin-L, 4585 tags)"
    architecture: ModelConfig
    labels: LabelSet
    weights: HubWeights
    description: str  # one paragraph, for the zoo manifest and ``models info``

    @property
    def zoo_name(self) -> str:
        return self.name.replace("_", "-")

    @property
    def captions(self) -> bool:
        return self.family == "tag2text"

    @property
    def embedding_dim(self) -> int:
        a = self.architecture
        return a.swin.num_features if self.family == "tag2text" else a.embed_dim


RAM_LABELS = LabelSet("ram", "ram_tag_list.txt", 4585, tag_list_chinese="ram_tag_list_chinese.txt",
                      thresholds="ram_tag_list_threshold.txt")
TAG2TEXT_LABELS = LabelSet(
    "tag2text", "tag2text_ori_tag_list.txt", 3429,
    threshold_overrides=MappingProxyType({2701: 0.70, 2828: 0.70, 1167: 0.70}),  # person, man, woman
    excluded=(127, 2961, 3351, 3265, 3338, 3355, 3359),  # quarter, back, two, three, four, five, one
)

_SWIN_L_384 = SwinConfig(192, (2, 2, 18, 2), (6, 12, 24, 48), 12)
_SWIN_B_384 = SwinConfig(128, (2, 2, 18, 2), (4, 8, 16, 32), 12)

default_cfgs: dict[str, VariantCfg] = {}


def register_variant(cfg: VariantCfg) -> VariantCfg:
    if cfg.name in default_cfgs:
        raise ValueError(f"variant {cfg.name!r} is already registered")
    default_cfgs[cfg.name] = replace(cfg, architecture=replace(cfg.architecture, name=cfg.name))
    return default_cfgs[cfg.name]


register_variant(VariantCfg(
    name="ram_swin_large_14m", family="ram", label="RAM (Swin-L, 4585 tags)",
    architecture=ModelConfig("ram", 384, _SWIN_L_384), labels=RAM_LABELS,
    weights=HubWeights("xinyu1205/recognize_anything_model", "ram_swin_large_14m.pth", size=5_625_634_877,
                       sha256="15c729c793af28b9d107c69f85836a1356d76ea830d4714699fb62e55fcc08ed"),
    description="RAM (Recognize Anything Model, Swin-L, 384 px, trained on 14M images): multi-label image "
                "tagger over 4585 common tags with per-class thresholds. Emits Classifications with one "
                "confidence per tag, logits, and 512-d image embeddings. Tag names in English or Chinese.",
))
register_variant(VariantCfg(
    name="ram_plus_swin_large_14m", family="ram_plus", label="RAM++ (Swin-L, 4585 tags)",
    architecture=ModelConfig("ram_plus", 384, _SWIN_L_384), labels=RAM_LABELS,
    weights=HubWeights("xinyu1205/recognize-anything-plus-model", "ram_plus_swin_large_14m.pth",
                       size=3_010_210_801,
                       sha256="497c178836ba66698ca226c7895317e6e800034be986452dbd2593298d50e87d"),
    description="RAM++ (Recognize Anything Plus, Swin-L, 384 px, trained on 14M images): multi-label image "
                "tagger over 4585 common tags with per-class thresholds. Emits Classifications with one "
                "confidence per tag, logits, and 512-d image embeddings. Tag names in English or Chinese.",
))
register_variant(VariantCfg(
    name="tag2text_swin_14m", family="tag2text", label="Tag2Text (Swin-B, 3429 tags + caption)",
    architecture=ModelConfig("tag2text", 384, _SWIN_B_384), labels=TAG2TEXT_LABELS,
    # The Space re-uploaded this file twice in March 2023: no size or hash is pinned.
    weights=HubWeights("xinyu1205/recognize-anything", "tag2text_swin_14m.pth", repo_type="space",
                       approx_size=4_480_000_000),
    description="Tag2Text (Swin-B, 384 px, trained on 14M images): multi-label image tagger over 3429 tags "
                "that also writes a caption guided by its tags. Emits Classifications with one confidence "
                "per tag, logits, the caption (attribute 'caption' of the field) and 1024-d image embeddings. "
                "Size is approximate (about 4.48 GB).",
))


#: What every entry point loads when no model is named.
DEFAULT_VARIANT = "ram_plus_swin_large_14m"


def _key(name: str) -> str:
    return str(name).split("@", 1)[0].rsplit("/", 1)[-1].replace("-", "_")


def is_variant(name: Any) -> bool:
    return isinstance(name, str) and _key(name) in default_cfgs


def get_variant(name: str) -> VariantCfg:
    """A released variant by name; zoo spellings (``ram-plus-swin-large-14m``, ``source/name@version``) too."""
    try:
        return default_cfgs[_key(name)]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; released: {', '.join(default_cfgs)}") from None


def list_variants(family: str | None = None) -> list[str]:
    return [n for n, cfg in default_cfgs.items() if family is None or cfg.family == family]


def labels_for_family(family: str) -> LabelSet:
    """The label set of a family's released checkpoints (what a custom checkpoint of the family defaults to)."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return next(cfg.labels for cfg in default_cfgs.values() if cfg.family == family)


def labels_for(config: ModelConfig) -> LabelSet:
    return get_variant(config.name).labels if is_variant(config.name) else labels_for_family(config.family)


def resolve_config(name_or_config: str | Path | dict | ModelConfig, *, family: str | None = None) -> ModelConfig:
    """A released variant name, a JSON config path or dict, or a config; ``family`` fills a missing family."""
    from fiftyone_ram.models.config import config_from_dict

    if isinstance(name_or_config, ModelConfig):
        return replace(name_or_config, family=family) if family else name_or_config
    if isinstance(name_or_config, dict):
        return config_from_dict(name_or_config, family=family)
    if is_variant(name_or_config):
        return get_variant(name_or_config).architecture
    path = Path(str(name_or_config)).expanduser()
    if path.is_file():
        return load_config_file(path, family=family)
    raise ConfigError(f"{str(name_or_config)!r} is neither a released model ({', '.join(default_cfgs)}) "
                      f"nor a config file")
