"""RAM++: each tag is several description embeddings, mixed per image by similarity to the image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fiftyone_ram.models.base import TaggerModel, frozen
from fiftyone_ram.models.config import ModelConfig
from fiftyone_ram.models.precision import fp32_region
from fiftyone_ram.models.tagging_head import TaggingHead


class RAMPlus(TaggerModel):
    family = "ram_plus"

    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        hidden = config.q2l.hidden_size
        self.descriptions_per_tag = config.descriptions_per_tag
        self.image_proj = nn.Linear(config.swin.num_features, config.embed_dim)
        self.label_embed = nn.Parameter(torch.zeros(num_classes * config.descriptions_per_tag, config.embed_dim))
        self.reweight_scale = nn.Parameter(torch.tensor(0.0))
        # (num_classes, descriptions_per_tag) bool, True for real rows: only set when the classes have different
        # numbers of descriptions (see with_label_queries; zero-padded rows are then kept out of the softmax).
        self.register_buffer("description_mask", None, persistent=False)
        self.wordvec_proj = nn.Linear(config.embed_dim, hidden)
        self.tagging_head = TaggingHead(config.q2l, kv_width=config.embed_dim)
        self.fc = nn.Linear(hidden, 1)

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_proj(super().image_embeds(pixel_values))

    def tag_embeddings(self, image_embeds: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Per image and class, the softmax(similarity)-weighted mix of that class's descriptions: (B, C, d).

        The similarities are computed in upstream's order (scaled unit image vector times all description
        rows), which keeps the logits within ~1e-5 of upstream's; the mix is one einsum instead of upstream's
        per-image (C, K, d) temporary (480 MB per image at the released size).
        """
        descriptions = self.label_embed.view(self.num_classes, self.descriptions_per_tag, -1)
        if classes is not None:
            descriptions = descriptions[classes]
        image = image_embeds[:, 0, :]
        image = image / image.norm(dim=-1, keepdim=True)
        rows = descriptions.reshape(-1, descriptions.shape[-1])
        similarity = (self.reweight_scale.exp() * image) @ rows.t()
        weights = similarity.view(image.shape[0], -1, self.descriptions_per_tag)
        if self.description_mask is not None:
            real = self.description_mask if classes is None else self.description_mask[classes]
            weights = weights.masked_fill(~real, float("-inf"))
        weights = weights.softmax(dim=-1)
        return torch.einsum("bck,ckd->bcd", weights, descriptions)

    def logits(self, image_embeds: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        with fp32_region(image_embeds):  # the reweighting's softmax over similarities in fp32 (reduced precision)
            mixed = self.tag_embeddings(image_embeds.float(), classes)
        queries = F.relu(self.wordvec_proj(mixed))
        hidden = self.tagging_head(queries, image_embeds)
        with fp32_region(hidden):
            return self.fc(hidden.float()).squeeze(-1)

    def label_queries(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.label_embed.detach().view(self.num_classes, self.descriptions_per_tag, -1), self.description_mask

    def with_label_queries(self, queries: torch.Tensor, mask: torch.Tensor | None = None) -> RAMPlus:
        """``queries`` (C, K, D): K unit description embeddings per class; a class with fewer is zero-padded
        and ``mask`` (C, K) marks its real rows."""
        if queries.dim() != 3 or (mask is not None and tuple(mask.shape) != tuple(queries.shape[:2])):
            raise ValueError(f"RAM++ label queries are (C, K, D) with a (C, K) mask, not {tuple(queries.shape)}")
        clone = self.sharing_copy()
        clone.label_embed = frozen(queries.reshape(-1, queries.shape[-1]))
        clone.num_classes, clone.descriptions_per_tag = queries.shape[0], queries.shape[1]
        clone.description_mask = mask
        return clone
