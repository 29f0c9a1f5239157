"""The tagging head: label queries cross-attend to image tokens, two post-LN layers, no self-attention.

Upstream builds it from a BERT whose embeddings and self-attention are deleted. transformers has no
cross-attention-only layer, so the layer is composed here from its BERT output blocks around a small
attention whose query projection can be applied ahead of time: in the first layer the queries do not
depend on the image (RAM, Tag2Text), so their projection is computed once per vocabulary, not per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertIntermediate, BertOutput, BertSelfOutput

from fiftyone_ram.models.config import BertSize


def _bert_config(size: BertSize) -> BertConfig:
    return BertConfig(hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
                      num_attention_heads=size.num_attention_heads, num_hidden_layers=size.num_hidden_layers,
                      hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


class QueryKeyValue(nn.Module):
    """Projections of the cross-attention; keys and values come from image tokens of width ``kv_width``."""

    def __init__(self, hidden: int, kv_width: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_width, hidden)
        self.value = nn.Linear(kv_width, hidden)


class CrossAttention(nn.Module):
    def __init__(self, config: BertConfig, kv_width: int) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.self = QueryKeyValue(config.hidden_size, kv_width)
        self.output = BertSelfOutput(config)

    def forward(self, queries: torch.Tensor, projected: torch.Tensor | None, keys: torch.Tensor,
                values: torch.Tensor) -> torch.Tensor:
        """``projected`` is ``self.query(queries)`` when already known; queries may lack the batch axis."""
        q = self.self.query(queries) if projected is None else projected
        b, h = keys.shape[0], self.num_heads
        q = q.expand(b, *q.shape[-2:]) if q.dim() == 2 else q
        n, d = q.shape[1], q.shape[2] // h
        q = q.view(b, n, h, d).transpose(1, 2)
        context = F.scaled_dot_product_attention(q, keys, values)  # image mask is all ones upstream
        context = context.transpose(1, 2).reshape(b, n, h * d)
        return self.output(context, queries)


class TaggingLayer(nn.Module):
    def __init__(self, config: BertConfig, kv_width: int) -> None:
        super().__init__()
        self.crossattention = CrossAttention(config, kv_width)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def split_kv(self, image_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values per head, (B, heads, L, d): computed once per batch and shared by all chunks."""
        qkv, h = self.crossattention.self, self.crossattention.num_heads
        b, length, _ = image_tokens.shape
        k = qkv.key(image_tokens).view(b, length, h, -1).transpose(1, 2)
        v = qkv.value(image_tokens).view(b, length, h, -1).transpose(1, 2)
        return k, v

    def forward(self, queries: torch.Tensor, projected: torch.Tensor | None,
                kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = self.crossattention(queries, projected, *kv)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, config: BertConfig, kv_width: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(TaggingLayer(config, kv_width) for _ in range(config.num_hidden_layers))


class TaggingHead(nn.Module):
    """Keys mirror upstream: ``encoder.layer.N.{crossattention.self.*, crossattention.output.*, ...}``.

    On the CPU, classes are processed in chunks: queries never interact, so a chunk gives exactly the scores
    the full vocabulary would, and memory stays bounded by the chunk, not by the vocabulary size. On a GPU the
    head runs unchunked: one launch per layer keeps the device busy, and its memory has room.
    """

    def __init__(self, size: BertSize, kv_width: int, chunk_size: int = 1024) -> None:
        super().__init__()
        self.config = _bert_config(size)
        self.encoder = _Encoder(self.config, kv_width)
        self.chunk_size = chunk_size

    def project_first_queries(self, queries: torch.Tensor) -> torch.Tensor:
        """First-layer query projection of image-independent queries (C, hidden), to cache per vocabulary."""
        return self.encoder.layer[0].crossattention.self.query(queries)

    def forward(self, queries: torch.Tensor, image_tokens: torch.Tensor,
                projected: torch.Tensor | None = None) -> torch.Tensor:
        """Query states of the last layer: (B, C, hidden). ``queries`` is (C, hidden) or (B, C, hidden)."""
        kvs = [layer.split_kv(image_tokens) for layer in self.encoder.layer]
        step = self.chunk_size if image_tokens.device.type == "cpu" else max(queries.shape[-2], 1)
        outputs = []
        for start in range(0, queries.shape[-2], step):
            stop = start + step
            x = queries[..., start:stop, :]
            first = None if projected is None else projected[..., start:stop, :]
            for i, layer in enumerate(self.encoder.layer):
                x = layer(x, first if i == 0 else None, kvs[i])
            outputs.append(x)
        return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
