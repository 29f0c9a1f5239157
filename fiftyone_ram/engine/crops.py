"""Region crops, in memory, and their embeddings: the RAM image encoder or a CLIP image encoder.

Crops are PIL images cut from the decoded image and dropped once embedded; nothing is written to disk. The
RAM encoder (the tagger's ``iter_batches``) gives, in the same pass, the tagger's probability of each crop's own
category: the paper's second cleaning test ("the model does not predict the category on the region").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from fiftyone_ram.hub_models import CLIP

DEFAULT_CLIP = CLIP
MIN_CROP_PIXELS = 8  # smaller boxes are grown around their centre: encoders need a few patches of content


def crop(image: Image.Image, box: Sequence[float], margin: float = 0.0) -> Image.Image:
    """The region of a relative ``[x, y, w, h]`` box, grown by ``margin`` (a fraction of its size) on each
    side, clamped to the image, and at least ``MIN_CROP_PIXELS`` wide and high where the image allows."""
    width, height = image.size
    x, y, w, h = box
    x0, y0 = (x - margin * w) * width, (y - margin * h) * height
    x1, y1 = (x + w + margin * w) * width, (y + h + margin * h) * height
    x0, x1 = _at_least(x0, x1, width)
    y0, y1 = _at_least(y0, y1, height)
    return image.crop((int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))))


def _at_least(lo: float, hi: float, limit: int) -> tuple[float, float]:
    lo, hi = max(0.0, lo), min(float(limit), hi)
    need = min(MIN_CROP_PIXELS, limit)
    if hi - lo < need:
        centre = (lo + hi) / 2
        lo = min(max(0.0, centre - need / 2), limit - need)
        hi = lo + need
    return lo, hi


class CropEncoder(Protocol):
    """Embeds crops; may also score each crop's category (None when it cannot)."""

    name: str

    def encode(self, crops: Sequence[Image.Image], categories: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, D) embeddings and (N,) probabilities of each crop's category (NaN for unknown tags) or None."""
        ...


class TaggerCrops:
    """The tagger's image encoder (RAM/RAM++: the 512-d CLIP-aligned embedding) and, in the same forward
    pass, its probability of each crop's category."""

    def __init__(self, tagger: Any, *, check: bool = True) -> None:
        self.tagger = tagger
        self.check = check
        self.name = f"tagger:{tagger.family}"
        self._known = set(tagger.tag_list)

    def threshold(self, category: str) -> float | None:
        """The tagger's threshold for the category (None when it is not in its vocabulary, or when the
        category check is off: then crops are only embedded)."""
        if not self.check or category not in self._known:
            return None
        return float(self.tagger.thresholds[self.tagger.class_indices([category])[0]])

    def encode(self, crops: Sequence[Image.Image], categories: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray | None]:
        if not crops:
            return np.zeros((0, self.tagger.embedding_dim), np.float32), np.zeros(0)
        known = sorted({c for c in categories if c in self._known}) if self.check else []
        if not known:  # nothing to score: the encoder alone
            return self.tagger.embed(list(crops)), np.full(len(crops), np.nan)
        column = {c: j for j, c in enumerate(known)}
        embeddings, probs = [], []
        for batch in self.tagger.iter_batches(list(crops), tags=known):  # only the categories at hand are scored
            batch.raise_errors()  # in-memory crops: never unreadable
            embeddings.append(batch.embeddings)
            for position, scores in zip(batch.positions, batch.probabilities):
                category = categories[position]
                probs.append(scores[column[category]] if category in column else np.nan)
        return np.concatenate(embeddings), np.asarray(probs, dtype=np.float64)


class ClipCrops:
    """transformers' ``CLIPVisionModelWithProjection`` (image_embeds); categories are not scored.

    ``model``: a hub id or folder (downloaded once by transformers), or loaded ``(model, image_processor)``.
    """

    def __init__(self, model: str | tuple[Any, Any] = DEFAULT_CLIP, *, device: str | None = None,
                 batch_size: int = 32) -> None:
        import torch

        if isinstance(model, tuple):
            self.model, self.processor = model
        else:
            from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

            from fiftyone_ram.engine.hub import load_pretrained

            instead = "embed the crops with the tagger's own encoder (embedder 'ram')"
            self.model = load_pretrained(CLIPVisionModelWithProjection.from_pretrained, model, "CLIP image encoder",
                                         instead)
            self.processor = load_pretrained(AutoImageProcessor.from_pretrained, model, "CLIP image encoder",
                                             instead)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.name = f"clip:{model if isinstance(model, str) else type(self.model).__name__}"
        self.source = model if isinstance(model, str) else None  # what a Ray worker loads again

    def encode(self, crops: Sequence[Image.Image], categories: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        out = []
        for start in range(0, len(crops), self.batch_size):
            inputs = self.processor(images=list(crops[start:start + self.batch_size]), return_tensors="pt")
            with torch.inference_mode():
                embeds = self.model(pixel_values=inputs["pixel_values"].to(self.device)).image_embeds
            out.append(embeds.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.model.config.projection_dim), np.float32), None
        return np.concatenate(out), None


class EncoderWithTagger:
    """A CLIP (or any) encoder for the embeddings plus a tagger for the category check: two passes."""

    def __init__(self, encoder: CropEncoder, tagger: Any) -> None:
        self.encoder, self.checker = encoder, TaggerCrops(tagger)
        self.name = f"{encoder.name}+{self.checker.name}"

    def threshold(self, category: str) -> float | None:
        return self.checker.threshold(category)

    def encode(self, crops: Sequence[Image.Image], categories: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray | None]:
        embeddings, _ = self.encoder.encode(crops, categories)
        _, probs = self.checker.encode(crops, categories)
        return embeddings, probs


def make_encoder(embedder: str = "ram", *, tagger: Any = None, clip_model: str | None = None,
                 device: str | None = None, check: bool = True) -> CropEncoder:
    """``embedder="ram"``: the tagger's encoder (and its category check unless ``check=False``);
    ``"clip"``: a CLIP image encoder, plus the tagger's check when a tagger is given and ``check``."""
    if embedder == "ram":
        if tagger is None:
            raise ValueError("the RAM embedder needs a tagger")
        return TaggerCrops(tagger, check=check)
    if embedder == "clip":
        clip = ClipCrops(clip_model or DEFAULT_CLIP, device=device)
        return clip if tagger is None or not check else EncoderWithTagger(clip, tagger)
    raise ValueError(f"embedder must be 'ram' or 'clip', not {embedder!r}")
