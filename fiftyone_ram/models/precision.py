"""Reduced-precision inference for the taggers: which weights drop to bf16 / fp16 or int8, which parts stay fp32.

Pure torch: it knows the networks' module names, not the ``Tagger`` or the hardware (``fiftyone_ram.hardware``
chooses the precision). Three ways to run:

* ``fp32``: as loaded; the parity with upstream is exact to float rounding.
* ``bf16`` / ``fp16``: the Linear and convolution weights of the image encoder and the tagging head are
  stored in the half type (half the memory, no per-call weight casts) and the forward pass runs under
  ``torch.autocast``, which keeps the residual streams and the normalisations of Swin in fp32. The parts
  where rounding reaches the scores directly stay fp32 (:func:`fp32_region`): the final logit layer and
  RAM++'s per-image reweighting of its descriptions.
* ``int8``: static quantisation of the Linear layers of the image encoder and the tagging head
  (:data:`INT8_LINEARS`): weights int8 per output channel, inputs uint8 per tensor with scales fixed once by
  calibration (:func:`int8_ranges`, min/max over a few images), run by oneDNN's integer matrix product (VNNI
  where the CPU has it). Each MLP's GELU is fused into its first layer, which hands its second layer uint8
  directly. Fixed scales make an image's scores independent of its batch companions; the dynamic quantisation
  this replaced (scales per batch) moved a probability by up to 0.15 between batches of 1, 4 and 5. The image
  projection, RAM++'s description mix and the logit layer, whose rounding reaches the scores directly, stay
  fp32, as do the products of two activations (attention).
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from collections.abc import Iterator, Mapping
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

#: Linear layers quantised by ``int8`` (full module names): every Linear of Swin (attention projections, MLPs,
#: patch merging) and of the tagging head (cross-attention projections, feed-forward blocks). The image
#: projection, the label-query projection and the logit layer stay fp32.
INT8_LINEARS = re.compile(r"visual_encoder\..*|tagging_head\..*")
#: The second layers of the MLPs whose GELU is fused into the first (parent module name -> (first, second)).
INT8_MLPS = {"mlp": ("fc1", "fc2")}

#: The quantised engine that packs int8 weights: oneDNN (its integer kernels use VNNI, AVX-512 or AVX2, and
#: honour an instruction-set cap, ``ONEDNN_MAX_CPU_ISA``).
INT8_ENGINE = "onednn"


def set_precision(model: nn.Module, precision: str,
                  int8_ranges: Mapping[str, tuple[float, float]] | None = None) -> nn.Module:
    """Prepare a freshly loaded (fp32, inference) model to run at ``precision``, in place; returns it.

    ``int8_ranges``: for ``int8``, the input range of each quantised Linear (:func:`int8_ranges`).
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
            for name, parameter in list(module.named_parameters(recurse=False)):
                # a new parameter, not ``module.to``'s in-place conversion: a copy sharing its tensors with an
                # fp32 model (:func:`reduced_copy`) must leave that model's weights as they are
                setattr(module, name, nn.Parameter(parameter.detach().to(HALF_TYPES[precision]),
                                                   requires_grad=parameter.requires_grad))
    elif precision == "int8":
        if int8_ranges is None:
            raise ValueError("int8 needs the calibrated input ranges of its layers: int8_ranges(model, pixels)")
        quantize_int8(model, int8_ranges)
    clear = getattr(model, "clear_query_cache", None)
    if clear is not None:  # cached query projections were computed at the old precision
        clear()
    return model


def reduced_copy(model: nn.Module, precision: str,
                 int8_ranges: Mapping[str, tuple[float, float]] | None = None) -> nn.Module:
    """A copy of an fp32 ``model`` prepared by :func:`set_precision` for ``precision``, that shares the model's
    tensors (nothing is copied but the reduced weights) and leaves the model as it is: fine-tuning validates
    the weights it trains at the precision they will tag at."""
    shared: dict[int, object] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    cache = getattr(model, "_query_cache", None)
    if cache is not None:  # the copy starts with an empty cache of its own
        shared[id(cache)] = type(cache)()
    clone = copy.deepcopy(model, memo=shared)
    return set_precision(clone, precision, int8_ranges)


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


def int8_linears(model: nn.Module, pattern: re.Pattern[str] = INT8_LINEARS) -> dict[str, nn.Linear]:
    """The Linear layers ``int8`` quantises, by full module name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and pattern.fullmatch(name)}


@torch.no_grad()
def int8_ranges(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Calibration: the (min, max) of each quantised layer's input over fp32 forward passes of ``batches``
    (preprocessed pixels). The model must still be fp32."""
    ranges: dict[str, tuple[float, float]] = {}
    clear = getattr(model, "clear_query_cache", None)
    if clear is not None:  # cached query projections would hide the first layer's query input
        clear()

    def observe(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach()
            low, high = float(x.min()), float(x.max())
            old = ranges.get(name, (low, high))
            ranges[name] = (min(old[0], low), max(old[1], high))
        return hook

    handles = [module.register_forward_pre_hook(observe(name)) for name, module in int8_linears(model).items()]
    try:
        for pixels in batches:
            model(pixels)
    finally:
        for handle in handles:
            handle.remove()
    clear = getattr(model, "clear_query_cache", None)
    if clear is not None:
        clear()
    return ranges


class StaticInt8Linear(nn.Module):
    """A Linear run as oneDNN's int8 matrix product: int8 weights per output channel, a uint8 input with a fixed
    scale. ``gelu`` fuses the activation that follows; ``output_range`` makes it return uint8 quantised for the
    next :class:`StaticInt8Linear` (whose ``takes_uint8`` is set), so the activation never exists in fp32.

    Written here because torch's own static modules (``torch.ao.nn.quantized.Linear``) take and return
    quantised tensors, with a requantisation and a dequantisation around every layer, and its PT2E flow now
    lives in torchao and needs ``torch.compile``; the oneDNN operator below is what both run in the end.
    """

    def __init__(self, linear: nn.Linear, input_range: tuple[float, float], *, gelu: bool = False,
                 output_range: tuple[float, float] | None = None, takes_uint8: bool = False) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_scale", scale, persistent=False)
        self.register_buffer("weight_zero_point", torch.zeros(len(scale), dtype=torch.int64), persistent=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        # oneDNN's blocked layout, packed once; a buffer so that a compiled graph holds it as a constant
        self.register_buffer("packed", torch.ops.onednn.qlinear_prepack(quantized, None), persistent=False)
        self.levels = input_levels()
        self.input_scale, self.input_zero_point = _uint8_params(*input_range, levels=self.levels)
        self.gelu = gelu
        self.takes_uint8 = takes_uint8
        self.output_scale, self.output_zero_point = ((1.0, 0) if output_range is None
                                                     else _uint8_params(*output_range, levels=self.levels))
        self.output_dtype = torch.float32 if output_range is None else torch.uint8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if not self.takes_uint8:
            x = _to_uint8(x, self.input_scale, self.input_zero_point, self.levels)
        y = int8_linear(x, self.input_scale, self.input_zero_point, self.packed, self.weight_scale,
                        self.weight_zero_point, self.bias, self.output_scale, self.output_zero_point,
                        self.output_dtype == torch.uint8, self.gelu)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, gelu={self.gelu}, "
                f"uint8_out={self.output_dtype == torch.uint8}, uint8_in={self.takes_uint8}")


@torch.library.custom_op("fiftyone_ram::int8_linear", mutates_args=())
def int8_linear(x: torch.Tensor, x_scale: float, x_zero_point: int, packed: torch.Tensor, w_scale: torch.Tensor,
                w_zero_point: torch.Tensor, bias: torch.Tensor | None, output_scale: float, output_zero_point: int,
                uint8_out: bool, gelu: bool) -> torch.Tensor:
    """oneDNN's int8 matrix product of uint8 ``x`` (2-D) and a packed int8 weight, as one opaque operator:
    ``torch.compile`` fuses what surrounds it and calls it as it is (inductor's own lowering of the oneDNN
    operator wants the packed weight as a constant of the graph, which a module's buffer is not)."""
    return torch.ops.onednn.qlinear_pointwise(
        x, x_scale, x_zero_point, packed, w_scale, w_zero_point, bias, output_scale, output_zero_point,
        torch.uint8 if uint8_out else torch.float32, "gelu" if gelu else "none", [], "none" if gelu else "")


@int8_linear.register_fake
def _(x, x_scale, x_zero_point, packed, w_scale, w_zero_point, bias, output_scale, output_zero_point, uint8_out,
      gelu):
    return x.new_empty((x.shape[0], w_scale.shape[0]), dtype=torch.uint8 if uint8_out else torch.float32)


def _to_uint8(x: torch.Tensor, scale: float, zero_point: int, levels: int) -> torch.Tensor:
    """``x`` on the uint8 grid of ``scale`` and ``zero_point`` (round half to even, clamped to 0..``levels``)."""
    if torch.compiler.is_compiling():  # plain arithmetic, which inductor fuses into the op that made ``x``
        return torch.clamp(torch.round(x.float() * (1.0 / scale)) + zero_point, 0, levels).to(torch.uint8)
    with warnings.catch_warnings():  # quantized tensors are deprecated; this one lives for a line
        warnings.simplefilter("ignore", UserWarning)
        q = torch.quantize_per_tensor(x.float(), scale, zero_point, torch.quint8).int_repr()
    return q if levels == 255 else q.clamp_(max=levels)


def input_levels() -> int:
    """The top of the uint8 range the inputs use: 255 where oneDNN runs VNNI; 127 otherwise, because AVX2's
    u8 x s8 products pass through 16-bit sums that a full-range input could saturate."""
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("AVX2", "AVX", "SSE41")
    return 255 if vnni and not capped and torch.backends.cpu.get_cpu_capability() == "AVX512" else 127


def _uint8_params(low: float, high: float, levels: int = 255) -> tuple[float, int]:
    """Scale and zero point mapping [low, high] (widened to hold 0) onto 0..``levels``."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max((high - low) / levels, 1e-8)
    return scale, int(min(levels, max(0, round(-low / scale))))


def quantize_int8(model: nn.Module, ranges: Mapping[str, tuple[float, float]],
                  pattern: re.Pattern[str] = INT8_LINEARS) -> nn.Module:
    """Static int8 of the Linear layers whose names match ``pattern``, in place (CPU only; see the module doc).

    An MLP's first layer takes its GELU and hands its second layer uint8: timm's Swin MLP (``fc1``, ``act``,
    ``fc2``) and BERT's feed-forward block (``intermediate``: dense and GELU; ``output.dense``)."""
    if INT8_ENGINE not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"this torch build has no {INT8_ENGINE} quantised engine: int8 is not available")
    linears = int8_linears(model, pattern)
    missing = sorted(set(linears) - set(ranges))
    if missing:
        raise ValueError(f"no calibrated input range for {len(missing)} layer(s), e.g. {missing[0]}")
    fused: dict[str, StaticInt8Linear] = {}
    for name, module in model.named_modules():
        pair = _mlp_pair(name, module, linears)
        if pair is None:
            continue
        first, second, act_owner, act_name = pair
        fused[first] = StaticInt8Linear(linears[first], ranges[first], gelu=True, output_range=ranges[second])
        fused[second] = StaticInt8Linear(linears[second], ranges[second], takes_uint8=True)
        setattr(act_owner, act_name, nn.Identity())
    for name, linear in linears.items():
        replacement = fused.get(name) or StaticInt8Linear(linear, ranges[name])
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, replacement)
    return model


def _mlp_pair(name: str, module: nn.Module, linears: Mapping[str, nn.Linear]):
    """(first, second, module holding the GELU, its attribute) when ``module`` is an MLP whose GELU can be fused."""
    prefix = f"{name}." if name else ""
    fc1, fc2, act = getattr(module, "fc1", None), getattr(module, "fc2", None), getattr(module, "act", None)
    if (isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear) and _is_exact_gelu(act)
            and isinstance(getattr(module, "norm", nn.Identity()), nn.Identity)
            and f"{prefix}fc1" in linears and f"{prefix}fc2" in linears):  # timm's Mlp
        return f"{prefix}fc1", f"{prefix}fc2", module, "act"
    intermediate, output = getattr(module, "intermediate", None), getattr(module, "output", None)
    dense = getattr(intermediate, "dense", None)
    if (isinstance(dense, nn.Linear) and isinstance(getattr(output, "dense", None), nn.Linear)
            and _is_exact_gelu(getattr(intermediate, "intermediate_act_fn", None))
            and f"{prefix}intermediate.dense" in linears and f"{prefix}output.dense" in linears):  # BERT
        return f"{prefix}intermediate.dense", f"{prefix}output.dense", intermediate, "intermediate_act_fn"
    return None


def _is_exact_gelu(act: object) -> bool:
    """The erf GELU (what oneDNN's ``gelu`` post-op with algorithm ``none`` computes)."""
    if isinstance(act, nn.GELU):
        return act.approximate == "none"
    return type(act).__name__ == "GELUActivation" and not getattr(act, "use_gelu_python", False) \
        and getattr(act, "act", None) in (nn.functional.gelu,)


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
