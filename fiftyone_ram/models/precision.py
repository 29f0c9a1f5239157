"""Reduced-precision inference for the taggers: which weights drop to bf16 / fp16 or int8, which parts stay fp32.

Pure torch: it knows the networks' module names, not the ``Tagger`` or the hardware (``fiftyone_ram.hardware``
chooses the precision). Three ways to run:

* ``fp32``: as loaded; the parity with upstream is exact to float rounding.
* ``bf16`` / ``fp16``: the Linear and convolution weights of the image encoder and the tagging head are
  stored in the half type (half the memory, no per-call weight casts) and the forward pass runs under
  ``torch.autocast``, which keeps the residual streams and the normalisations of Swin in fp32. The parts
  where rounding reaches the scores directly stay fp32 (:func:`fp32_region`): the final logit layer and
  RAM++'s per-image reweighting of its descriptions.
* ``int8``: torch's dynamic quantisation (weights int8 per output channel, activations quantised per batch) of
  the Linear layers that hold most of the arithmetic (:data:`INT8_LINEARS`): Swin's MLPs and the head's
  feed-forward blocks, where int8 took 0.47-0.8x fp32's CPU time per layer with AVX2 kernels (0.19-0.63x with
  AVX-512). The attention projections, the image projection and the logit layer, whose rounding reaches the
  scores most directly, stay fp32.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import ContextManager

import torch
from torch import nn

#: The half types, by the names ``load_tagger(precision=...)`` takes.
HALF_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: Submodules whose Linear / Conv2d weights are stored in the half type. The captioner (Tag2Text's tag encoder
#: and text decoder) is not among them: its weights stay memory-mapped until a caption is asked for, and beam
#: search runs in fp32.
HALF_PARTS = ("visual_encoder", "image_proj", "wordvec_proj", "tagging_head")
#: The parts that always run in fp32, outside autocast (beam search over the caption branch).
FP32_PARTS = ("tag_encoder", "text_decoder")

#: Linear layers quantised by ``int8`` (full module names): Swin's MLPs (two thirds of its multiply-adds) and the
#: tagging head's feed-forward blocks (most of the head's, at 4,585 queries). Attention projections, the image
#: projection and the logit layer stay fp32.
INT8_LINEARS = re.compile(r"visual_encoder\.layers\.\d+\.blocks\.\d+\.mlp\.fc[12]"
                          r"|tagging_head\.encoder\.layer\.\d+\.(intermediate|output)\.dense")

#: The quantised engine that packs int8 weights. oneDNN is as fast as fbgemm on AVX-512 here and, unlike
#: fbgemm, honours an instruction-set cap (``ONEDNN_MAX_CPU_ISA``), so its AVX2 speed could be measured.
INT8_ENGINE = "onednn"


def set_precision(model: nn.Module, precision: str) -> nn.Module:
    """Prepare a freshly loaded (fp32, inference) model to run at ``precision``, in place; returns it.

    The model's ``compute_dtype`` attribute then says which autocast type its forward pass needs (None: none);
    run it inside :func:`autocast`.
    """
    if precision not in ("fp32", "int8", *HALF_TYPES):
        raise ValueError(f"unknown precision {precision!r}; expected fp32, int8 or one of {', '.join(HALF_TYPES)}")
    model.compute_dtype = HALF_TYPES.get(precision)
    if precision != "fp32":
        _untie_fp32_parts(model)
    if precision in HALF_TYPES:
        for module in _half_modules(model):
            module.to(HALF_TYPES[precision])
    elif precision == "int8":
        quantize_int8(model)
    clear = getattr(model, "clear_query_cache", None)
    if clear is not None:  # cached query projections were computed at the old precision
        clear()
    return model


def _untie_fp32_parts(model: nn.Module) -> None:
    """Give the fp32 parts their own parameter objects where they share one with a part that is reduced.

    Upstream ties the tag encoder's lowest layers to the tagging head's (``captioning.tie_caption_branch``);
    halving or quantising the head would otherwise hand the captioner bf16 weights, or none. The new parameter
    wraps the same fp32 tensor as loaded (memory-mapped, nothing copied); reducing the head then gives the head
    a new tensor and leaves this one as it is. Inference only: training keeps the ties (it never reduces).
    """
    reduced = {id(p) for part in HALF_PARTS if getattr(model, part, None) is not None
               for p in getattr(model, part).parameters()}
    for part in FP32_PARTS:
        root = getattr(model, part, None)
        if root is None:
            continue
        for module in root.modules():
            for name, parameter in list(module.named_parameters(recurse=False)):
                if id(parameter) in reduced:
                    setattr(module, name, nn.Parameter(parameter.data, requires_grad=parameter.requires_grad))


def _half_modules(model: nn.Module) -> Iterator[nn.Module]:
    for part in HALF_PARTS:
        root = getattr(model, part, None)
        if root is None:
            continue
        for module in root.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                yield module


def quantize_int8(model: nn.Module, pattern: re.Pattern[str] = INT8_LINEARS) -> nn.Module:
    """Dynamic int8 quantisation of the Linear layers whose names match ``pattern``, in place (CPU only)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if INT8_ENGINE not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"this torch build has no {INT8_ENGINE} quantised engine: int8 is not available")
    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and pattern.fullmatch(name)}
    engine = torch.backends.quantized.engine
    torch.backends.quantized.engine = INT8_ENGINE  # weights are packed for the engine active now, and keep it
    try:
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, whose CPU int8 path needs torch.compile;
            # torch's own eager kernels are what runs fast here without a compiler.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    finally:
        torch.backends.quantized.engine = engine
    return model


def autocast(model: nn.Module, device: torch.device | str) -> ContextManager:
    """The context a model prepared by :func:`set_precision` runs its forward pass in."""
    dtype = getattr(model, "compute_dtype", None)
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


@contextmanager
def fp32_region(like: torch.Tensor) -> Iterator[None]:
    """Autocast off for a part whose rounding would reach the scores; the caller casts its inputs ``.float()``."""
    with torch.autocast(like.device.type, enabled=False):
        yield
