"""Tag2Text's captioner: a tag encoder (tags attend to the image) and a text decoder (words attend to tags).

Both are BERT stacks built from transformers' ``BertLayer``; what transformers' ``BertModel`` cannot express
is handled here: cross-attention keys and values read image tokens of another width, the tag encoder is
bidirectional yet cross-attends (transformers ties cross-attention to causal decoders), and upstream's
embeddings carry no token-type term. Masks are additive with upstream's -10000, passed to eager attention.

The decoder also steps with a key/value cache (``DecoderCache``): each step feeds only the new tokens, reading
the self-attention keys and values of earlier positions and the cross-attention keys and values of the tag
states, projected once per input. transformers' own cache is not used: its API differs between the releases
we support (tuples on 4.4x, ``EncoderDecoderCache`` passed as ``cache=`` on 5.x) and ``BertLayer`` takes it
through that moving signature; the cached step reuses the layer's own submodules instead, whose names and
calls are the same in every release because checkpoints depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer, BertOnlyMLMHead

from fiftyone_ram.models.config import BERT_DROPOUT, BertSize

MASKED = -10000.0  # upstream's additive mask value (transformers uses the dtype minimum)


def bert_layer_config(size: BertSize, vocab_size: int) -> BertConfig:
    config = BertConfig(vocab_size=vocab_size, hidden_size=size.hidden_size,
                        intermediate_size=size.intermediate_size, num_attention_heads=size.num_attention_heads,
                        num_hidden_layers=size.num_hidden_layers, hidden_act="gelu", layer_norm_eps=1e-12,
                        hidden_dropout_prob=BERT_DROPOUT, attention_probs_dropout_prob=BERT_DROPOUT,
                        max_position_embeddings=512,
                        is_decoder=True, add_cross_attention=True)
    config._attn_implementation = "eager"  # the only path that takes our additive masks as they are
    return config


class TextEmbeddings(nn.Module):
    """Word plus learned absolute position embeddings, then LayerNorm and dropout (no token-type embedding
    upstream)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``start``: the position of the first token (the length of the cached prefix)."""
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions)))


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


@dataclass
class DecoderCache:
    """What the decoder's next step needs from the steps before it.

    Tensors are (rows, heads, tokens, head size). ``own`` holds per layer the self-attention keys and values
    of the ``length`` positions decoded so far, one row per sequence (beam); ``tags`` the cross-attention keys
    and values of the tag-encoder states, one row per input, which sequence ``i`` reads at ``rows[i]``.
    """

    own: list[tuple[torch.Tensor, torch.Tensor]]
    tags: list[tuple[torch.Tensor, torch.Tensor]]
    rows: torch.Tensor
    length: int = 0

    def reorder(self, parents: torch.Tensor) -> None:
        """Sequence ``i`` now continues sequence ``parents[i]`` (beams re-ranked)."""
        self.own = [(keys[parents], values[parents]) for keys, values in self.own]
        self.rows = self.rows[parents]


class TextDecoder(nn.Module):
    """Keys ``bert.*`` and ``cls.predictions.*`` as upstream's ``text_decoder`` (a BERT LM head model)."""

    def __init__(self, size: BertSize, vocab_size: int) -> None:
        super().__init__()
        config = bert_layer_config(size, vocab_size)
        self.bert = _DecoderBert(config)
        self.cls = BertOnlyMLMHead(config)
        self.num_heads = size.num_attention_heads
        self.head_size = size.hidden_size // size.num_attention_heads

    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits at every position, (B, L, vocab), recomputing the whole prefix.

        ``attention_mask`` (B, L), 1 for real tokens: padded captions in training, where upstream masks the
        padding out of the self-attention on top of the causal mask (masked scores get -10000 once).
        """
        length = input_ids.shape[1]
        visible = torch.ones(length, length, device=input_ids.device).tril()[None]
        if attention_mask is not None:
            visible = visible * attention_mask[:, None, :].to(visible.dtype)
        mask = ((1.0 - visible) * MASKED).to(memory.dtype)[:, None]
        return self.cls(self.bert.encoder(self.bert.embeddings(input_ids), mask, memory))

    def start_cache(self, memory: torch.Tensor, rows: torch.Tensor) -> DecoderCache:
        """An empty cache for sequences that read ``memory[rows]`` (memory: (inputs, tokens, width))."""
        tags = [(self._heads(layer.crossattention.self.key(memory)),
                 self._heads(layer.crossattention.self.value(memory))) for layer in self.bert.encoder.layer]
        empty = memory.new_zeros(len(rows), self.num_heads, 0, self.head_size)
        return DecoderCache(own=[(empty, empty)] * len(tags), tags=tags, rows=rows)

    def step(self, input_ids: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Next-token logits (rows, vocab) after ``input_ids``, the tokens that follow the cached prefix
        (the whole prompt on the first step, then one token); the cache grows by them."""
        new = input_ids.shape[1]
        mask = None
        if new > 1:  # new token i sees the cached prefix and new tokens up to i
            visible = torch.ones(new, cache.length + new, device=input_ids.device).tril(cache.length)
            mask = ((1.0 - visible) * MASKED).to(cache.tags[0][0].dtype)
        x = self.bert.embeddings(input_ids, start=cache.length)
        for i, layer in enumerate(self.bert.encoder.layer):
            own = layer.attention.self
            keys = torch.cat([cache.own[i][0], self._heads(own.key(x))], dim=2)
            values = torch.cat([cache.own[i][1], self._heads(own.value(x))], dim=2)
            cache.own[i] = (keys, values)
            x = layer.attention.output(self._attend(own.query(x), keys, values, mask), x)
            tag_keys, tag_values = cache.tags[i]
            cross = self._attend(layer.crossattention.self.query(x), tag_keys[cache.rows], tag_values[cache.rows])
            x = layer.crossattention.output(cross, x)
            x = layer.output(layer.intermediate(x), x)
        cache.length += new
        return self.cls(x[:, -1])

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_size).transpose(1, 2)

    def _attend(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eager attention as transformers' (scaled scores, additive mask, softmax), heads merged back."""
        q = self._heads(queries)
        scores = torch.matmul(q, keys.transpose(2, 3)) * self.head_size ** -0.5
        if mask is not None:
            scores = scores + mask
        out = torch.matmul(torch.softmax(scores, dim=-1), values)
        return out.transpose(1, 2).reshape(queries.shape)


def tie_caption_branch(tag_encoder: TagEncoder, text_decoder: TextDecoder, tagging_head: nn.Module) -> None:
    """Upstream's weight ties, so that training updates one tensor where upstream updates one.

    The tag encoder's lowest layers use the tagging head's cross-attention and feed-forward parameters (the
    same matrices under another head split: 12 heads of 64 there, 4 of 192 in the head), and the decoder's
    output layer is its word-embedding matrix, with ``cls.predictions.bias`` as its bias. Both copies stay in
    the state dict under both names, as in upstream's files.
    """
    for encoder_layer, head_layer in zip(tag_encoder.encoder.layer, tagging_head.encoder.layer):
        for path in ("crossattention.self.query", "crossattention.self.key", "crossattention.self.value",
                     "crossattention.output.dense", "crossattention.output.LayerNorm", "intermediate.dense",
                     "output.dense", "output.LayerNorm"):
            mine, theirs = encoder_layer.get_submodule(path), head_layer.get_submodule(path)
            if mine.weight.shape != theirs.weight.shape:
                raise ValueError(f"cannot tie tag_encoder {path} {tuple(mine.weight.shape)} to the tagging head's "
                                 f"{tuple(theirs.weight.shape)}: the two BERT sizes must have the same widths")
            mine.weight, mine.bias = theirs.weight, theirs.bias
    predictions = text_decoder.cls.predictions
    predictions.decoder.weight = text_decoder.bert.embeddings.word_embeddings.weight
    predictions.decoder.bias = predictions.bias
