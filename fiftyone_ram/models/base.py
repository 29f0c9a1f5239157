"""What the three taggers share: image tokens from Swin, label logits from queries, a query cache."""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from fiftyone_ram.models.backbone import build_swin, swin_tokens
from fiftyone_ram.models.config import ModelConfig


class TaggerModel(nn.Module):
    """Base of RAM, RAM++ and Tag2Text. ``classes`` arguments select a subset of the label queries (a 1-D
    index tensor, or None for all); the scores of a class do not depend on which others are queried."""

    family: str = ""
    num_classes: int
    #: The autocast type of the forward pass (``models.precision.set_precision``); None: as the weights.
    compute_dtype: torch.dtype | None = None

    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.visual_encoder = build_swin(config)
        self._query_cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    # -- image side -------------------------------------------------------------------------------------
    #: Images per Swin pass. Swin-L activations at 384 cost ~0.35 GB per image; two at a time keeps a batch
    #: of four under ~2.2 GB peak RSS on the CPU at the same speed (matrices are already large at two).
    swin_micro_batch: int = 2

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Tokens the tagging head attends to, (B, 1 + L, d)."""
        step = self.swin_micro_batch if pixel_values.device.type == "cpu" else len(pixel_values)
        parts = [swin_tokens(self.visual_encoder, pixel_values[i:i + step])
                 for i in range(0, len(pixel_values), max(step, 1))]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def image_embedding(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """One vector per image: the (projected) mean token."""
        return image_embeds[:, 0, :]

    # -- label side -------------------------------------------------------------------------------------
    def logits(self, image_embeds: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        from fiftyone_ram.models.precision import autocast

        with autocast(self, pixel_values.device):
            return self.logits(self.image_embeds(pixel_values), classes).float()

    def clear_query_cache(self) -> None:
        """Call after changing the label queries in place."""
        self._query_cache.clear()

    # -- answering other classes (as timm's ``reset_classifier``, but as a copy) ---------------------------
    def label_queries(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The label queries as rows per class, (C, K, D), and a (C, K) mask of the real rows (None when all are
        real). RAM has K = 1; RAM++ K descriptions per class."""
        raise NotImplementedError(f"{self.family}'s label queries are learned: it can only select its classes")

    def with_label_queries(self, queries: torch.Tensor, mask: torch.Tensor | None = None) -> TaggerModel:
        """A copy sharing every other weight that answers ``queries`` (C, K, D) instead (``mask`` as in
        :meth:`label_queries`): new classes from CLIP text embeddings, as upstream's open set."""
        raise NotImplementedError(f"{self.family}'s label queries are learned: it can only select its classes")

    def select_classes(self, index: torch.Tensor) -> TaggerModel:
        """A copy sharing every weight that answers the classes ``index`` (1-D, in that order, repeats allowed)."""
        queries, mask = self.label_queries()
        index = torch.as_tensor(index, device=queries.device)
        return self.with_label_queries(queries[index], None if mask is None else mask[index])

    def sharing_copy(self) -> TaggerModel:
        """A model sharing every weight with this one (the backbone is not duplicated) but with its own tables of
        parameters, buffers and submodules: replacing its label queries (another vocabulary) leaves this one
        as it is."""
        clone = copy.copy(self)
        clone._parameters = self._parameters.copy()
        clone._buffers = self._buffers.copy()
        clone._non_persistent_buffers_set = set(self._non_persistent_buffers_set)
        clone._modules = self._modules.copy()
        clone._query_cache = OrderedDict()
        return clone

    def _cached(self, classes: torch.Tensor | None, build) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-independent queries and their first-layer projection, kept for the last few vocabularies."""
        if torch.is_grad_enabled():  # training: the queries must stay in the graph
            return build()
        key = (None if classes is None else tuple(classes.tolist()), self.fc_device, torch.is_inference_mode_enabled())
        hit = self._query_cache.get(key)
        if hit is None:
            hit = build()
            self._query_cache[key] = hit
            while len(self._query_cache) > 4:
                self._query_cache.popitem(last=False)
        else:
            self._query_cache.move_to_end(key)
        return hit

    @property
    def fc_device(self) -> torch.device:
        return next(self.parameters()).device

    def _apply(self, fn, *args, **kwargs):  # .to(), .half(), ...: cached queries would be stale
        self._query_cache.clear()
        return super()._apply(fn, *args, **kwargs)


def frozen(tensor: torch.Tensor) -> nn.Parameter:
    """A parameter that inference uses and training leaves alone (label queries put in from outside)."""
    return nn.Parameter(tensor.detach().contiguous(), requires_grad=False)
