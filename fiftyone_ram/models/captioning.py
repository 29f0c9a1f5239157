"""Tag2Text's captioner: a tag encoder (tags attend to the image) and a text decoder (words attend to tags).

Both are BERT stacks built from transformers' ``BertLayer``; what transformers' ``BertModel`` cannot express
is handled here: cross-attention keys and values read image tokens of another width, the tag encoder is
bidirectional yet cross-attends (transformers ties cross-attention to causal decoders), and upstream's
embeddings carry no token-type term. Masks are additive with upstream's -10000, passed to eager attention.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer, BertOnlyMLMHead

from fiftyone_ram.models.config import BertSize

MASKED = -10000.0  # upstream's additive mask value (transformers uses the dtype minimum)


def bert_layer_config(size: BertSize, vocab_size: int) -> BertConfig:
    config = BertConfig(vocab_size=vocab_size, hidden_size=size.hidden_size,
                        intermediate_size=size.intermediate_size, num_attention_heads=size.num_attention_heads,
                        num_hidden_layers=size.num_hidden_layers, hidden_act="gelu", layer_norm_eps=1e-12,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=512,
                        is_decoder=True, add_cross_attention=True)
    config._attn_implementation = "eager"  # the only path that takes our additive masks as they are
    return config


class TextEmbeddings(nn.Module):
    """Word plus learned absolute position embeddings, then LayerNorm (no token-type embedding upstream)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions))


class _Layers(nn.Module):
    def __init__(self, config: BertConfig, kv_width: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        if kv_width != config.hidden_size:
            for layer in self.layer:
                attention = layer.crossattention.self
                attention.key = nn.Linear(kv_width, config.hidden_size)
                attention.value = nn.Linear(kv_width, config.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            out = layer(x, attention_mask=mask, encoder_hidden_states=memory)
            x = out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple
        return x


class TagEncoder(nn.Module):
    """Keys ``embeddings.*`` and ``encoder.layer.N.*`` as upstream's ``tag_encoder``."""

    def __init__(self, size: BertSize, vocab_size: int, kv_width: int) -> None:
        super().__init__()
        config = bert_layer_config(size, vocab_size)
        self.embeddings = TextEmbeddings(config)
        self.encoder = _Layers(config, kv_width)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        padding = (1.0 - attention_mask[:, None, None, :].to(image_embeds.dtype)) * MASKED
        return self.encoder(self.embeddings(input_ids), padding, image_embeds)


class _DecoderBert(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = TextEmbeddings(config)
        self.encoder = _Layers(config, config.hidden_size)


class TextDecoder(nn.Module):
    """Keys ``bert.*`` and ``cls.predictions.*`` as upstream's ``text_decoder`` (a BERT LM head model)."""

    def __init__(self, size: BertSize, vocab_size: int) -> None:
        super().__init__()
        config = bert_layer_config(size, vocab_size)
        self.bert = _DecoderBert(config)
        self.cls = BertOnlyMLMHead(config)

    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every position, (B, L, vocab)."""
        length = input_ids.shape[1]
        causal = torch.ones(length, length, device=input_ids.device).tril()
        mask = ((1.0 - causal) * MASKED).to(memory.dtype)[None, None]
        return self.cls(self.bert.encoder(self.bert.embeddings(input_ids), mask, memory))
