"""RAM: fixed CLIP text embeddings of the tags are the label queries."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fiftyone_ram.models.base import TaggerModel, frozen
from fiftyone_ram.models.config import ModelConfig
from fiftyone_ram.models.precision import fp32_region
from fiftyone_ram.models.tagging_head import TaggingHead


class RAM(TaggerModel):
    family = "ram"

    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        hidden = config.q2l.hidden_size
        self.image_proj = nn.Linear(config.swin.num_features, config.embed_dim)
        self.label_embed = nn.Parameter(torch.zeros(num_classes, config.embed_dim))
        self.wordvec_proj = nn.Linear(config.embed_dim, hidden)
        self.tagging_head = TaggingHead(config.q2l, kv_width=config.embed_dim)
        self.fc = nn.Linear(hidden, 1)

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_proj(super().image_embeds(pixel_values))

    def _queries(self, classes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        def build():
            embed = self.label_embed if classes is None else self.label_embed[classes]
            queries = F.relu(self.wordvec_proj(embed))
            return queries, self.tagging_head.project_first_queries(queries)

        return self._cached(classes, build)

    def logits(self, image_embeds: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        queries, projected = self._queries(classes)
        hidden = self.tagging_head(queries, image_embeds, projected)
        with fp32_region(hidden):  # the logit layer in fp32 under reduced precision
            return self.fc(hidden.float()).squeeze(-1)

    def label_queries(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.label_embed.detach()[:, None, :], None

    def with_label_queries(self, queries: torch.Tensor, mask: torch.Tensor | None = None) -> RAM:
        if queries.dim() != 3 or queries.shape[1] != 1 or mask is not None:
            raise ValueError(f"RAM has one label query per class: (C, 1, D), not {tuple(queries.shape)}")
        clone = self.sharing_copy()
        clone.label_embed = frozen(queries[:, 0])
        clone.num_classes = queries.shape[0]
        return clone
