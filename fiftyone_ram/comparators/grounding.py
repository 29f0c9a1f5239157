"""Grounding-DINO as a multi-label tagger: a tag's score is the best box's score for the tag's phrase.

The vocabulary is put to the detector as prompts of phrases (``"car. dog. tree."``), as many tags per prompt as
its text encoder takes (``max_text_len`` tokens, 256 for the released models; a vocabulary of 4,585 tags is
about 60 prompts, each a pass of the whole detector). For every query box the detector gives a logit per
prompt token; a phrase's logit in a box is the highest of its tokens' (how transformers' post-processing scores
a box), and the tag's logit is the highest over the boxes. Its sigmoid is then the score of the best box for
the tag, the number Grounding-DINO's own box threshold is compared with; no box threshold is applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from fiftyone_ram.hub_models import GROUNDING_DINO
from fiftyone_ram.pretrained import load_pretrained

WHAT = "Grounding-DINO detector"


def prompt_for(category: str) -> str:
    """Grounding-DINO's text format: lower case, the phrase ended by a period."""
    return category.strip().lower().rstrip(".") + "."


@dataclass(frozen=True)
class Prompt:
    """One prompt of the vocabulary: its text, and per tag (index into the classes) its token positions."""

    text: str
    tokens: tuple[tuple[int, tuple[int, ...]], ...]


def split_prompts(classes: Sequence[str], tokenizer: Any, max_length: int) -> list[Prompt]:
    """The classes as prompts of at most ``max_length`` tokens (with the tokenizer's two special tokens)."""
    phrases = [prompt_for(c) for c in classes]
    sizes = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in phrases]
    groups: list[list[int]] = [[]]
    used = 2
    for k, size in enumerate(sizes):
        if groups[-1] and used + size > max_length:
            groups.append([])
            used = 2
        groups[-1].append(k)
        used += size
    return [_prompt([phrases[k] for k in group], group, tokenizer, max_length) for group in groups if group]


def _prompt(phrases: list[str], indices: list[int], tokenizer: Any, max_length: int) -> Prompt:
    text = " ".join(phrases)
    offsets = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_length)["offset_mapping"]
    spans, start = [], 0
    for index, phrase in zip(indices, phrases):
        end = start + len(phrase) - 1  # the phrase without its period
        positions = tuple(t for t, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end)
        spans.append((index, positions))
        start = end + 2  # past the period and the space
    return Prompt(text, tuple(spans))


class GroundingDinoScorer:
    """Scores images for ``classes`` with transformers' Grounding-DINO from ``source`` (hub id or folder)."""

    def __init__(self, classes: Sequence[str], source: str | None = None, *,
                 device: str | None = None) -> None:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        from fiftyone_ram.hardware import resolve_device

        self.source = str(source or GROUNDING_DINO)
        self.classes = list(classes)
        self.device = resolve_device(device)
        instead = "leave grounding_dino out of the compared models"
        self.model = load_pretrained(GroundingDinoForObjectDetection.from_pretrained, self.source, WHAT,
                                     instead).to(self.device).eval()
        self.processor = load_pretrained(AutoProcessor.from_pretrained, self.source, WHAT, instead)
        self.max_length = int(self.model.config.max_text_len)
        self.prompts = split_prompts(self.classes, self.processor.tokenizer, self.max_length)

    @property
    def description(self) -> str:
        return f"grounding_dino {self.source} ({len(self.prompts)} prompts)"

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._logits(images)

    def _logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        pixels = self.processor.image_processor(images=list(images), return_tensors="pt")
        pixels = {k: v.to(self.device) for k, v in pixels.items()}
        out = np.full((len(images), len(self.classes)), -np.inf, dtype=np.float32)
        for prompt in self.prompts:
            text = self.processor.tokenizer([prompt.text] * len(images), return_tensors="pt", padding=True,
                                            truncation=True, max_length=self.max_length)
            text = {k: v.to(self.device) for k, v in text.items()}
            token_logits = self.model(**pixels, **text).logits.float()  # (B, queries, tokens)
            best = token_logits.amax(dim=1).cpu().numpy()  # the best box per token
            for index, positions in prompt.tokens:
                if positions:
                    out[:, index] = best[:, list(positions)].max(axis=1)
        return out
