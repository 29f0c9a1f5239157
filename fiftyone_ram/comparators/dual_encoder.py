"""CLIP, SigLIP and BLIP's image-text contrastive head as multi-label taggers over any vocabulary.

Each tag is one class embedding: the prompt ensemble of upstream's templates (every template filled in with the
tag, each text embedded and L2-normalised, the mean normalised again: :mod:`fiftyone_ram.vocabulary.embeddings`,
the same formula and the same cache as RAM's open-set tags). An image's score for a tag is a function of the
cosine ``cos`` between its normalised image embedding and the tag's class embedding, stored as a logit whose
sigmoid is the score:

* SigLIP: ``t·cos + b`` with its own learned temperature ``t`` and bias ``b``: the sigmoid is the probability
  SigLIP was trained to give, taken as it is.
* CLIP and BLIP (trained with a softmax over a batch, so their cosines are no probabilities): ``s·(cos − m)``
  with ``s`` the model's temperature (CLIP's learned ``logit_scale``; BLIP's retrieval checkpoint does not keep
  its ITC temperature, so its config's initial one, 1/0.07) and ``m`` the cosine at which a tag's score is 0.5
  (:data:`MIDPOINT`, or the choice's ``midpoint=``). The midpoint is a display calibration chosen by eye, not
  measured: a comparison tunes its thresholds on the scores, and one increasing function of the cosine for all
  tags changes no rank and no tuned decision, so mAP, CP, CR, OP and OR do not depend on it.

The text towers run once per tag (cached); images go through the image tower in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from fiftyone_ram.comparators.choice import ComparatorError
from fiftyone_ram.hub_models import BLIP, CLIP, SIGLIP
from fiftyone_ram.pretrained import load_pretrained
from fiftyone_ram.vocabulary.cache import EmbeddingCache
from fiftyone_ram.vocabulary.embeddings import prompt_ensemble, template_rows
from fiftyone_ram.vocabulary.text_encoder import TextEncoder, source_identity

#: The hub model of each kind when the choice names none.
DEFAULT_SOURCE = {"clip": CLIP, "siglip": SIGLIP, "blip": BLIP}
#: What each kind is called in messages.
WHAT = {"clip": "CLIP model", "siglip": "SigLIP model", "blip": "BLIP retrieval model"}
#: The cosine at which a CLIP / BLIP tag scores 0.5 (see the module docstring: display only).
MIDPOINT = {"clip": 0.25, "blip": 0.4}
#: SigLIP's text tower was trained on texts padded to its full length (64 tokens), so it is used that way.
PADS_TO_FULL_LENGTH = ("siglip",)


class DualEncoderScorer:
    """Scores images for ``classes`` with a dual encoder of ``kind`` (``clip``, ``siglip``, ``blip``) loaded from
    ``source`` (hub id or folder). ``templates``: prompt templates (default: upstream's, see
    :mod:`fiftyone_ram.vocabulary.templates`); ``cache``: the embedding cache (False: none)."""

    def __init__(self, kind: str, classes: Sequence[str], source: str | None = None, *,
                 templates: Sequence[str] | str | None = None, device: str | torch.device | None = None,
                 midpoint: float | None = None, cache: EmbeddingCache | bool = True) -> None:
        from fiftyone_ram.hardware import resolve_device

        if kind not in DEFAULT_SOURCE:
            raise ValueError(f"not a dual encoder: {kind!r}")
        self.kind = kind
        self.source = str(source or DEFAULT_SOURCE[kind])
        self.classes = list(classes)
        self.device = resolve_device(device)
        self.model = _load(_model_class(kind).from_pretrained, self.source, kind).to(self.device).eval()
        self.processor = _load(_auto("AutoImageProcessor").from_pretrained, self.source, kind)
        self.midpoint = float(midpoint if midpoint is not None else MIDPOINT.get(kind, 0.0))
        store = EmbeddingCache() if cache is True else (cache or None)
        encoder = _clip_text(self.model, self.source, self.device) if kind == "clip" else _TowerText(self)
        rows = template_rows(self.classes, encoder, templates=templates, cache=store)
        embeds = np.stack([prompt_ensemble(r) for r in rows]) if rows else np.zeros((0, 1), np.float32)
        self.class_embeds = torch.as_tensor(embeds, dtype=torch.float32, device=self.device)

    @property
    def description(self) -> str:
        return f"{self.kind} {self.source}"

    @torch.inference_mode()
    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(B, C) float32 logits; their sigmoid is each tag's score (see the module docstring)."""
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        features = _normalized(self._image_features(pixels))
        cosine = features @ self.class_embeds.T
        return self._calibrated(cosine).float().cpu().numpy()

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "blip":
            tokens = self.model.vision_model(pixel_values=pixels).last_hidden_state
            return self.model.vision_proj(tokens[:, 0, :])
        return _pooled(self.model.get_image_features(pixel_values=pixels))

    def _calibrated(self, cosine: torch.Tensor) -> torch.Tensor:
        if self.kind == "siglip":
            return cosine * self.model.logit_scale.exp() + self.model.logit_bias
        if self.kind == "clip":
            scale = float(self.model.logit_scale.exp())
        else:  # BLIP's retrieval model keeps no ITC temperature: its config's starting one
            scale = math.exp(float(self.model.config.logit_scale_init_value))
        return scale * (cosine - self.midpoint)


class _TowerText:
    """SigLIP's or BLIP's text tower as the vocabulary's embedding code expects an encoder: an ``identity`` (the
    cache key) and ``encode(texts)`` → unit vectors. Texts longer than the tower's context are cut to it."""

    def __init__(self, scorer: DualEncoderScorer) -> None:
        self.scorer = scorer
        self.identity = f"{scorer.kind}-text:{source_identity(scorer.source)}"
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = _load(_auto("AutoTokenizer").from_pretrained, self.scorer.source, self.scorer.kind)
        return self._tokenizer

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, truncate: bool) -> np.ndarray:
        model, kind = self.scorer.model, self.scorer.kind
        length = int(model.config.text_config.max_position_embeddings)
        full = kind in PADS_TO_FULL_LENGTH
        out = []
        for start in range(0, len(texts), 256):
            batch = self.tokenizer(list(texts[start:start + 256]), padding="max_length" if full else True,
                                   truncation=True, max_length=length, return_tensors="pt")
            ids = batch["input_ids"].to(self.scorer.device)
            if kind == "blip":
                mask = batch["attention_mask"].to(self.scorer.device)
                tokens = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                features = model.text_proj(tokens[:, 0, :])
            else:  # SigLIP reads the padded ids without a mask, as it was trained
                features = _pooled(model.get_text_features(input_ids=ids))
            out.append(_normalized(features).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def _clip_text(model: Any, source: str, device: torch.device) -> TextEncoder:
    """The vocabulary's CLIP text encoder (upstream's padding to the full context) on the text tower of the
    loaded ``CLIPModel``: the same modules, not a second copy of the weights read again."""
    from transformers import CLIPTextModelWithProjection

    with torch.device("meta"):  # a shell: its modules are the loaded model's
        tower = CLIPTextModelWithProjection(model.config.text_config)
    tower.text_model, tower.text_projection = model.text_model, model.text_projection
    return TextEncoder(tower.eval(), tokenizer=source, device=device)


def _pooled(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` holds the projected features; 4 a tensor."""
    return output.pooler_output if hasattr(output, "pooler_output") else output


def _normalized(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _model_class(kind: str):
    import transformers

    return {"clip": transformers.CLIPModel, "siglip": transformers.SiglipModel,
            "blip": transformers.BlipForImageTextRetrieval}[kind]


def _auto(name: str):
    import transformers

    return getattr(transformers, name)


def _load(loader, source: str, kind: str) -> Any:
    """``loader(source)`` with one line when the model (or its tokenizer's library) is missing."""
    try:
        return load_pretrained(loader, source, WHAT[kind], f"leave {kind} out of the compared models")
    except (ImportError, ValueError) as exc:  # e.g. SigLIP's tokenizer without sentencepiece installed
        raise ComparatorError(f"cannot load the {WHAT[kind]} '{source}': {str(exc).splitlines()[0][:200]}") from exc
