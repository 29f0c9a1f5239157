"""Building a model of a family on the meta device and filling it from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from fiftyone_ram.models.architecture import CAPTION_VOCAB_KEY, infer_config
from fiftyone_ram.models.base import TaggerModel
from fiftyone_ram.models.checkpoint import CheckpointError, check_family, detect_family, load_into, read_state_dict
from fiftyone_ram.models.config import ModelConfig
from fiftyone_ram.models.ram import RAM
from fiftyone_ram.models.ram_plus import RAMPlus
from fiftyone_ram.models.tag2text import Tag2Text


def build_model(config: ModelConfig, num_classes: int, *, vocab_size: int | None = None) -> TaggerModel:
    """An unfilled model: parameters live on the meta device until a checkpoint is assigned. ``vocab_size``
    adds the captioning branch (RAM, Tag2Text)."""
    with torch.device("meta"):
        if config.family == "ram":
            return RAM(config, num_classes, vocab_size=vocab_size)
        if config.family == "ram_plus":
            return RAMPlus(config, num_classes)
        return Tag2Text(config, num_classes, vocab_size=vocab_size)


def model_from_checkpoint(config: ModelConfig, checkpoint: str | Path, num_classes: int, *,
                          caption_branch: bool = False) -> TaggerModel:
    """The tagging model from an upstream checkpoint; Tag2Text gets its captioner when the file has one.

    ``caption_branch``: also build RAM's tag encoder and text decoder (training's caption loss needs them;
    tagging does not, so by default RAM loads without them); the file must then have them. The captioner's
    tensors stay memory-mapped and are only read from disk when a caption is asked for.
    """
    state = read_state_dict(checkpoint)
    check_family(state, checkpoint, config.family)
    has_branch = CAPTION_VOCAB_KEY in state
    if caption_branch and config.family != "ram_plus" and not has_branch:
        raise CheckpointError(f"checkpoint {checkpoint} has no captioning branch (tag_encoder.*, text_decoder.*), "
                              f"which the caption loss needs")
    wants_branch = config.family == "tag2text" or (caption_branch and config.family == "ram")
    vocab_size = state[CAPTION_VOCAB_KEY].shape[0] if wants_branch and has_branch else None
    model = build_model(config, num_classes, vocab_size=vocab_size)
    load_into(model, state, checkpoint)
    model.tie_weights()
    return model.eval()


def checkpoint_family(checkpoint: str | Path) -> str | None:
    """The family that wrote a checkpoint, from its keys (None when unrecognisable)."""
    return detect_family(read_state_dict(checkpoint))


def config_from_checkpoint(checkpoint: str | Path, num_classes: int, *, family: str | None = None,
                           tokenizer: str | None = None) -> ModelConfig:
    """The architecture of an upstream checkpoint read from its tensor shapes (memory-mapped: the tensors'
    data is not read), for a checkpoint that comes without a config file."""
    return infer_config(read_state_dict(checkpoint), num_classes=num_classes, family=family, tokenizer=tokenizer)
