"""The tagging path as one traceable module: pixels in, logits and image embeddings out.

``Tagger`` runs the backbone a micro-batch at a time and the tagging head a chunk of classes at a time on the
CPU, which bounds eager memory but would freeze the batch size and the chunk loop into an exported graph.
:class:`TaggingGraph` runs both whole, so that the batch axis stays symbolic; the arithmetic is the same
(micro-batches and chunks never mix images or classes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from fiftyone_ram.models.backbone import swin_tokens
from fiftyone_ram.models.base import TaggerModel

#: The graph's input and output names (the ONNX file and its sidecar JSON use them).
INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("logits", "embedding")


class TaggingGraph(nn.Module):
    """``(B, 3, S, S)`` ImageNet-normalised pixels to ``logits`` (B, C) and ``embedding`` (B, D), float32."""

    def __init__(self, model: TaggerModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        tokens = swin_tokens(model.visual_encoder, pixel_values)
        projection = getattr(model, "image_proj", None)  # RAM and RAM++ project; Tag2Text uses Swin's tokens
        embeds = projection(tokens) if projection is not None else tokens
        return model.logits(embeds).float(), model.image_embedding(embeds).float()


@contextmanager
def whole_head(model: TaggerModel) -> Iterator[None]:
    """The tagging head unchunked while a graph is traced (restored afterwards)."""
    head = model.tagging_head
    chunk = head.chunk_size
    head.chunk_size = 1 << 30
    try:
        yield
    finally:
        head.chunk_size = chunk
