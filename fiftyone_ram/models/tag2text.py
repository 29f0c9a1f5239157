"""Tag2Text: learned label queries, a per-class output layer, and a tag-guided captioner."""

from __future__ import annotations

import torch
from torch import nn

from fiftyone_ram.models.base import TaggerModel, frozen
from fiftyone_ram.models.config import ModelConfig
from fiftyone_ram.models.precision import fp32_region
from fiftyone_ram.models.tagging_head import TaggingHead


class GroupWiseLinear(nn.Module):
    """One weight vector and bias per class: ``logit[b, c] = <W[c], h[b, c]> + b[c]`` (upstream key names)."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.zeros(1, num_classes, hidden))
        self.b = nn.Parameter(torch.zeros(1, num_classes))

    def forward(self, hidden_states: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = (self.W[0], self.b[0]) if classes is None else (self.W[0, classes], self.b[0, classes])
        return (hidden_states * weight).sum(-1) + bias


class Tag2Text(TaggerModel):
    family = "tag2text"

    def __init__(self, config: ModelConfig, num_classes: int, *, vocab_size: int | None = None) -> None:
        """``vocab_size`` (the tokenizer's length) adds the captioning branch; None builds a tagger only."""
        super().__init__(config, num_classes)
        hidden = config.q2l.hidden_size
        self.label_embed = nn.Embedding(num_classes, hidden)
        self.tagging_head = TaggingHead(config.q2l, kv_width=config.swin.num_features)
        self.fc = GroupWiseLinear(num_classes, hidden)
        if vocab_size is not None:
            from fiftyone_ram.models.captioning import TagEncoder, TextDecoder

            self.tag_encoder = TagEncoder(config.bert, vocab_size, kv_width=config.swin.num_features)
            self.text_decoder = TextDecoder(config.bert, vocab_size)

    @property
    def can_caption(self) -> bool:
        return hasattr(self, "text_decoder")

    def _queries(self, classes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        def build():
            queries = self.label_embed.weight if classes is None else self.label_embed.weight[classes]
            return queries, self.tagging_head.project_first_queries(queries)

        return self._cached(classes, build)

    def logits(self, image_embeds: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        queries, projected = self._queries(classes)
        hidden = self.tagging_head(queries, image_embeds, projected)
        with fp32_region(hidden):  # the per-class output layer in fp32 under reduced precision
            return self.fc(hidden.float(), classes)

    def select_classes(self, index: torch.Tensor) -> Tag2Text:
        """Tag2Text's queries and output weights are learned per class: selecting is all it can do."""
        index = torch.as_tensor(index, device=self.label_embed.weight.device)
        clone = self.sharing_copy()
        clone.label_embed = nn.Embedding.from_pretrained(self.label_embed.weight.detach()[index], freeze=True)
        fc = GroupWiseLinear(0, self.fc.W.shape[-1])
        fc.W, fc.b = frozen(self.fc.W[:, index]), frozen(self.fc.b[:, index])
        clone.fc = fc
        clone.num_classes = len(index)
        return clone
