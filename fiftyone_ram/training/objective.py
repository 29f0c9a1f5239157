"""Upstream's training objective for a loaded tagger: the losses of RAM, RAM++ and Tag2Text, and their total.

Each loss is computed when its inputs are given, in the model's current mode (train mode: dropout and
stochastic depth as upstream; eval mode: deterministic, as the training fixture). Nothing here changes a
weight: the caller backpropagates and steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fiftyone_ram.errors import UserError
from fiftyone_ram.training.losses import (
    ALIGNMENT_GAMMA_NEG,
    IGNORE,
    asymmetric_loss,
    caption_loss,
    distillation_loss,
)
from fiftyone_ram.upstream import CAPTION_PROMPT

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.tagger import Tagger

#: Upstream's decoder prompt: its tokens are part of every training caption and give no loss.
#: Captions are tokenised to the longest in the batch, at most this many tokens.
CAPTION_TOKENS = 40
#: The loss names per family, in the order upstream's forward returns them.
FAMILY_LOSSES = {"ram": ("caption", "tag", "distillation"), "ram_plus": ("tag", "distillation", "alignment"),
                 "tag2text": ("caption", "tag")}


class TrainingInputError(UserError, ValueError):
    """Inputs that do not fit the model's training objective."""


def training_losses(tagger: Tagger, pixel_values: torch.Tensor, *, captions: Sequence[str] | None = None,
                    tag_targets: torch.Tensor | None = None, parse_targets: torch.Tensor | None = None,
                    clip_image_features: torch.Tensor | None = None,
                    caption_text_embeds: torch.Tensor | None = None, prompt: str = CAPTION_PROMPT,
                    tag_loss: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """The losses upstream's ``forward`` returns, by name (see ``upstream-ram-spec.md`` §1.2–1.5).

    pixel_values: (B, 3, S, S) preprocessed images. tag_targets: (B, C) multi-hot over the tagger's classes,
    in its tag-list order -> ``"tag"`` (ASL γ− 7). captions: B strings that start with ``prompt`` ->
    ``"caption"`` (RAM, Tag2Text; the text decoder's cross-entropy, prompt and padding masked), conditioned
    on the tags of ``parse_targets`` (B, C) (Tag2Text: ``tag_targets`` when no parse targets are given).
    clip_image_features: (B, 512) CLIP image features -> ``"distillation"`` (RAM, RAM++).
    caption_text_embeds: (B, 512) unit CLIP text embeddings of the captions -> ``"alignment"`` (RAM++; image i
    matches caption i). tag_loss: ``asymmetric_loss`` keywords replacing upstream's tagging-loss settings
    (gamma_neg, gamma_pos, clip), for a weak start.
    """
    family = tagger.family
    model = tagger.model
    given = {"captions": captions, "clip_image_features": clip_image_features,
             "caption_text_embeds": caption_text_embeds}
    usable = {"ram": {"captions", "clip_image_features"}, "ram_plus": {"clip_image_features", "caption_text_embeds"},
              "tag2text": {"captions"}}[family]
    wrong = sorted(name for name, value in given.items() if value is not None and name not in usable)
    if wrong:
        raise TrainingInputError(f"{family} has no loss that uses {', '.join(wrong)}")
    device = next(model.parameters()).device
    pixel_values = pixel_values.to(device)
    batch = pixel_values.shape[0]
    embeds = model.image_embeds(pixel_values)
    losses: dict[str, torch.Tensor] = {}
    if captions is not None:
        caption_tags = parse_targets if parse_targets is not None else (tag_targets if family == "tag2text" else None)
        if caption_tags is None:
            raise TrainingInputError("the caption loss needs parse_targets: the tags parsed from each caption")
        losses["caption"] = _caption_loss(tagger, embeds, list(captions), _targets(caption_tags, tagger, batch),
                                          prompt)
    if tag_targets is not None:
        logits = model.logits(embeds)
        targets = _targets(tag_targets, tagger, batch).to(device)
        losses["tag"] = asymmetric_loss(logits, targets, **dict(tag_loss or {}))
    if clip_image_features is not None:
        losses["distillation"] = distillation_loss(model.image_embedding(embeds), clip_image_features.to(device))
    if caption_text_embeds is not None:
        losses["alignment"] = _alignment_loss(model, embeds, caption_text_embeds.to(device))
    return {name: losses[name] for name in FAMILY_LOSSES[family] if name in losses}


def total_loss(losses: Mapping[str, torch.Tensor], family: str, weights: Mapping[str, float] | None = None
               ) -> torch.Tensor:
    """Upstream's total: RAM and Tag2Text rescale the tagging loss to the caption loss's magnitude
    (``tag / stopgrad(tag / caption)``), RAM++ sums. ``weights`` multiply single losses (default 1)."""
    weights = dict(weights or {})
    terms = dict(losses)
    if family in ("ram", "tag2text") and "tag" in terms and "caption" in terms:
        terms["tag"] = terms["tag"] / (terms["tag"] / terms["caption"]).detach()
    if not terms:
        raise TrainingInputError("no loss to optimise: give tag targets, captions or CLIP features")
    return sum(weights.get(name, 1.0) * value for name, value in terms.items())


def _targets(targets: torch.Tensor, tagger: Tagger, batch: int) -> torch.Tensor:
    targets = torch.as_tensor(targets)
    if tuple(targets.shape) != (batch, len(tagger.tag_list)):
        raise TrainingInputError(f"targets must be (images, classes) = ({batch}, {len(tagger.tag_list)}) in the "
                                 f"tagger's tag-list order, not {tuple(targets.shape)}")
    return targets


def _caption_loss(tagger: Tagger, embeds: torch.Tensor, captions: list[str], caption_tags: torch.Tensor,
                  prompt: str) -> torch.Tensor:
    from fiftyone_ram.models.captioner import encode_tag_strings

    model = tagger.model
    if not model.has_caption_branch:
        raise TrainingInputError(f"this {tagger.family} tagger was loaded without its captioning branch, which the "
                                 f"caption loss needs: load_tagger(..., caption_branch=True)")
    if len(captions) != embeds.shape[0]:
        raise TrainingInputError(f"{len(captions)} captions for {embeds.shape[0]} images")
    tokenizer = tagger.tokenizer
    vocab = model.text_decoder.cls.predictions.decoder.out_features
    if len(tokenizer) != vocab:
        raise TrainingInputError(f"the tokenizer has {len(tokenizer)} tokens but the captioning branch {vocab}")
    names = tagger.tag_list
    tag_strings = [" | ".join(names[i] for i in torch.nonzero(row == 1).flatten().tolist()) for row in caption_tags]
    device = embeds.device
    tag_states = model.tag_encoder(*encode_tag_strings(tokenizer, tag_strings, device), embeds)
    text = tokenizer(captions, padding="longest", truncation=True, max_length=CAPTION_TOKENS, return_tensors="pt")
    input_ids = text.input_ids.to(device)
    input_ids[:, 0] = tokenizer.bos_token_id
    targets = input_ids.masked_fill(input_ids == tokenizer.pad_token_id, IGNORE)
    targets[:, :prompt_length(tokenizer, prompt)] = IGNORE
    logits = model.text_decoder(input_ids, tag_states, attention_mask=text.attention_mask.to(device))
    return caption_loss(logits, targets)


def prompt_length(tokenizer, prompt: str) -> int:
    """Tokens of the prompt with its leading [CLS]/[DEC] (upstream counts ``len(ids) - 1``, dropping [SEP])."""
    return len(tokenizer(prompt).input_ids) - 1


def _alignment_loss(model, embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Caption embeddings as queries of the tagging head for every image: (B_img, B_txt) logits against the
    identity (image i matches caption i)."""
    queries = F.relu(model.wordvec_proj(text_embeds.to(model.label_embed.dtype)))
    logits = model.fc(model.tagging_head(queries, embeds)).squeeze(-1)
    targets = torch.eye(logits.shape[0], logits.shape[1], device=logits.device)
    return asymmetric_loss(logits, targets, gamma_neg=ALIGNMENT_GAMMA_NEG)
