"""The architecture of an upstream checkpoint, read from its tensor shapes (so that a user's own checkpoint
needs no config file).

Upstream checkpoints hold no config, but nearly every size is a tensor shape: the Swin widths, depths,
window and heads (``relative_position_bias_table`` has one column per head), the image size (a shifted
block's ``attn_mask`` has one row per window of its stage), the BERT widths and depths, RAM++'s descriptions
per tag. Only the BERT attention heads leave no trace; they are taken from upstream's configs (see
:func:`bert_heads`). The released Swin-L (RAM, RAM++) and Swin-B (Tag2Text) checkpoints come out as their
registry architectures; the tiny upstream-layout test checkpoints as their own.

Pure: works on a mapping of key -> shape (tensors or tuples), reads no file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from fiftyone_ram.models.checkpoint import detect_family
from fiftyone_ram.models.config import BertSize, ConfigError, ModelConfig, SwinConfig

_SWIN = "visual_encoder."
#: Where each BERT of a family lives: the tagging head (upstream's "q2l" config) and Tag2Text's tag encoder
#: (upstream's "med" config, shared with its text decoder).
_Q2L_PREFIX = "tagging_head.encoder.layer."
_BERT_PREFIX = "tag_encoder.encoder.layer."
CAPTION_VOCAB_KEY = "text_decoder.bert.embeddings.word_embeddings.weight"
#: bert-base-uncased's 30522 WordPiece tokens plus upstream's [DEC] and [ENC]: the released captioners'.
BERT_BASE_CAPTION_VOCAB = 30524


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in (value.shape if hasattr(value, "shape") else value))


def bert_heads(hidden_size: int, *, tagging_head: bool) -> int:
    """Attention heads of a BERT whose shapes cannot tell them: upstream's tagging head ("q2l" config) has
    4 at its 768 width; its tag encoder / decoder ("med" config, BERT-base) 12, i.e. 64-wide heads. Widths
    upstream never released (the tiny test checkpoints: 64) get 4, what the upstream-layout fixtures use. A
    config file states the heads when a checkpoint differs."""
    if tagging_head or hidden_size != 768:
        return 4
    return 12


def _layers(shapes: Mapping[str, Any], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for key in shapes if (m := pattern.match(key))})


def _bert(shapes: Mapping[str, Any], prefix: str, *, tagging_head: bool) -> BertSize | None:
    layers = _layers(shapes, prefix)
    if not layers:
        return None
    first = f"{prefix}{layers[0]}."
    try:
        hidden = _shape(shapes[first + "crossattention.self.query.weight"])[0]
        intermediate = _shape(shapes[first + "intermediate.dense.weight"])[0]
    except KeyError as exc:
        raise ConfigError(f"cannot read the architecture: the checkpoint lacks {exc.args[0]}") from None
    return BertSize(hidden, intermediate, bert_heads(hidden, tagging_head=tagging_head), len(layers))


def _swin(shapes: Mapping[str, Any]) -> tuple[SwinConfig, int]:
    """The backbone and the image size it was built for."""
    try:
        patch = _shape(shapes[_SWIN + "patch_embed.proj.weight"])
    except KeyError:
        raise ConfigError("cannot read the architecture: the checkpoint has no Swin backbone "
                          f"({_SWIN}patch_embed.proj.weight); is it an upstream RAM / RAM++ / Tag2Text file?") from None
    embed_dim, patch_size = patch[0], patch[2]
    stages = _layers(shapes, _SWIN + "layers.")
    depths, heads, window, image_size = [], [], None, None
    for stage in stages:
        blocks = _layers(shapes, f"{_SWIN}layers.{stage}.blocks.")
        depths.append(len(blocks))
        table = _shape(shapes[f"{_SWIN}layers.{stage}.blocks.{blocks[0]}.attn.relative_position_bias_table"])
        heads.append(table[1])
        window = (math.isqrt(table[0]) + 1) // 2  # (2w - 1)^2 relative positions
        for block in blocks:
            mask = shapes.get(f"{_SWIN}layers.{stage}.blocks.{block}.attn_mask")
            if mask is not None and image_size is None:
                windows = _shape(mask)[0]  # (side / w)^2 windows at this stage
                side = math.isqrt(windows) * math.isqrt(_shape(mask)[1])
                image_size = side * patch_size * 2 ** stage
    if not stages or window is None:
        raise ConfigError("cannot read the architecture: the checkpoint's Swin backbone has no stages")
    if image_size is None:
        raise ConfigError("cannot tell the checkpoint's image size (it has no shifted-window attn_mask "
                          "buffers): give an architecture config file")
    return SwinConfig(embed_dim, tuple(depths), tuple(heads), window, patch_size), image_size


def infer_config(shapes: Mapping[str, Any], *, num_classes: int | None = None, family: str | None = None,
                 tokenizer: str | None = None) -> ModelConfig:
    """The architecture of an upstream-layout state dict (key -> tensor or shape).

    ``num_classes`` (the tag list's length) is needed for RAM++ only: its ``label_embed`` holds every tag's
    descriptions in one table. ``family`` is checked against the keys when given.
    """
    found = detect_family(shapes)
    if found is None:
        raise ConfigError("cannot tell which model wrote the checkpoint (no RAM, RAM++ or Tag2Text label "
                          "embedding): give the family and an architecture config file")
    if family is not None and family != found:
        raise ConfigError(f"the checkpoint is a {found} checkpoint, not {family}")
    swin, image_size = _swin(shapes)
    q2l = _bert(shapes, _Q2L_PREFIX, tagging_head=True)
    if q2l is None:
        raise ConfigError(f"cannot read the architecture: the checkpoint has no tagging head ({_Q2L_PREFIX}*)")
    extra: dict[str, Any] = {}
    if found in ("ram", "ram_plus"):
        rows, extra["embed_dim"] = _shape(shapes["label_embed"])
        if found == "ram_plus":
            if not num_classes:
                raise ConfigError("RAM++'s descriptions per tag depend on the number of tags: give the tag list")
            if rows % num_classes:
                raise ConfigError(f"the checkpoint's {rows} label embeddings are not a whole number of "
                                  f"descriptions for {num_classes} tags: is the tag list the checkpoint's own?")
            extra["descriptions_per_tag"] = rows // num_classes
    bert = _bert(shapes, _BERT_PREFIX, tagging_head=False)  # RAM's captioning branch, Tag2Text's captioner
    if bert is not None:
        extra["bert"] = bert
    return ModelConfig(found, image_size, swin, q2l=q2l, tokenizer=tokenizer, **extra)


def caption_vocab_size(shapes: Mapping[str, Any]) -> int | None:
    """Tokens of a Tag2Text checkpoint's captioner (None without one): anything but
    :data:`BERT_BASE_CAPTION_VOCAB` needs the checkpoint's own vocab.txt."""
    value = shapes.get(CAPTION_VOCAB_KEY)
    return None if value is None else _shape(value)[0]
