"""Putting a vocabulary into a model: a weight-sharing copy whose label queries are the vocabulary's."""

from __future__ import annotations

import torch
from torch import nn

from fiftyone_ram.models.base import TaggerModel
from fiftyone_ram.vocabulary.vocabulary import Vocabulary


def model_for_vocabulary(model: TaggerModel, vocabulary: Vocabulary) -> TaggerModel:
    """RAM: ``label_embed`` (C, D). RAM++: ``label_embed`` (C·K, D) with K rows per tag and, when tags have
    different numbers of rows, a description mask. Tag2Text: its learned queries and output weights of the
    selected tags (built-in tags only)."""
    if model.family != vocabulary.family:
        raise ValueError(f"a {vocabulary.family} vocabulary cannot be used by a {model.family} model")
    with torch.no_grad():
        if model.family == "ram":
            return _ram(model, vocabulary)
        if model.family == "ram_plus":
            return _ram_plus(model, vocabulary)
        return _tag2text(model, vocabulary)


def _frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.contiguous(), requires_grad=False)


def _ram(model: TaggerModel, vocabulary: Vocabulary) -> TaggerModel:
    queries, _ = vocabulary.label_queries(model.label_embed.detach()[:, None, :])
    clone = model.sharing_copy()
    clone.label_embed = _frozen(queries[:, 0])
    clone.num_classes = len(vocabulary)
    return clone


def _ram_plus(model: TaggerModel, vocabulary: Vocabulary) -> TaggerModel:
    builtin = model.label_embed.detach().view(model.num_classes, model.descriptions_per_tag, -1)
    queries, mask = vocabulary.label_queries(builtin, model.description_mask)
    clone = model.sharing_copy()
    clone.label_embed = _frozen(queries.reshape(-1, queries.shape[-1]))
    clone.num_classes, clone.descriptions_per_tag = queries.shape[0], queries.shape[1]
    clone.description_mask = mask
    return clone


def _tag2text(model: TaggerModel, vocabulary: Vocabulary) -> TaggerModel:
    if not vocabulary.is_builtin_only:
        raise ValueError("Tag2Text answers only its own tags (its label queries are learned)")
    from fiftyone_ram.models.tag2text import GroupWiseLinear

    index = torch.as_tensor(vocabulary.builtin_index, device=model.label_embed.weight.device)
    clone = model.sharing_copy()
    clone.label_embed = nn.Embedding.from_pretrained(model.label_embed.weight.detach()[index], freeze=True)
    fc = GroupWiseLinear(0, model.fc.W.shape[-1])
    fc.W = _frozen(model.fc.W.detach()[:, index])
    fc.b = _frozen(model.fc.b.detach()[:, index])
    clone.fc = fc
    clone.num_classes = len(vocabulary)
    return clone
