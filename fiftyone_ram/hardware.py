"""What the machine runs fast: the device a tagger goes to and the precision ``"auto"`` means there.

The capabilities are read with torch's own helpers, in one place (:func:`detect_capabilities`), so that tests
can fake a machine there and nowhere else:

* the CPU instruction set ATen dispatches to: ``torch.backends.cpu.get_cpu_capability()`` (it honours
  ``ATEN_CPU_CAPABILITY``, so ``ATEN_CPU_CAPABILITY=avx2`` makes an AVX-512 machine choose as an AVX2 one);
* bf16 arithmetic: ``torch.cpu._is_avx512_bf16_supported()`` and ``torch.cpu._is_amx_tile_supported()``
  (what the CPU has; used only when ATen runs AVX-512 kernels);
* int8: the quantised engines of this torch build (``torch.backends.quantized.supported_engines``), and VNNI
  (``torch.cpu._is_vnni_supported()``: int8 products without 16-bit saturation);
* CUDA: ``torch.cuda.get_device_capability()``.

What ``"auto"`` picks, and why (docs/tagging.md; figures in docs/benchmarks.md):

* CUDA, compute capability 8.0 and up (Ampere, Hopper, ...): ``bf16`` (tensor cores; fp16's range issues
  avoided); older CUDA devices: ``fp16`` (they have no bf16 arithmetic);
* a CPU with AVX512_BF16 or AMX: ``bf16`` (its matrix units run bf16 about 3x as fast as fp32, and bf16
  moves scores less than int8 does);
* another x86 CPU with AVX2 or AVX-512: ``int8`` (static int8 of the encoder's and the head's Linear layers:
  ``fiftyone_ram.models.precision``), which beats fp32 there;
* anything else (no AVX2, other architectures, other devices): ``fp32``.

``int8`` is faster still on CPUs with AVX512_BF16 and VNNI (1.5x bf16 on a 2-core AMD EPYC, docs/benchmarks.md)
but moves scores more: it is chosen there only when asked (``precision="int8"``).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fiftyone_ram.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The precisions a tagger runs at (``Tagger.precision``, stored with each tagging run).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: What ``precision=`` accepts (the CLI and the App forms import this without importing torch).
PRECISION_CHOICES = ("auto", *PRECISIONS)
#: The precision used when none is given; unset means ``"auto"`` (see docs/tagging.md).
PRECISION_ENV = "FIFTYONE_RAM_PRECISION"


class PrecisionError(UserError, ValueError):
    """A precision that is unknown or that the device cannot run."""


@dataclass(frozen=True)
class Capabilities:
    """What a device can run fast (see :func:`detect_capabilities`)."""

    device_type: str  # "cpu", "cuda", "mps", ...
    cpu_capability: str = ""  # ATen's dispatch level: "AVX512", "AVX2", "DEFAULT", ...
    cpu_bf16: bool = False  # AVX512_BF16 or AMX
    int8_engine: bool = False  # the quantised engine int8 uses is in this build
    cpu_vnni: bool = False  # AVX512_VNNI / AVX-VNNI: int8 products without saturation
    cuda_capability: tuple[int, int] | None = None


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch device; None: the first CUDA device when there is one, else the CPU."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def detect_capabilities(device: torch.device) -> Capabilities:
    """The capabilities of ``device``, read with torch's helpers (the one place tests fake)."""
    import torch

    from fiftyone_ram.models.precision import INT8_ENGINE

    if device.type == "cuda":
        return Capabilities("cuda", cuda_capability=tuple(torch.cuda.get_device_capability(device)))
    if device.type != "cpu":
        return Capabilities(device.type)
    cpu = torch.cpu
    bf16 = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return Capabilities("cpu", cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_bf16=bf16,
                        int8_engine=INT8_ENGINE in torch.backends.quantized.supported_engines,
                        cpu_vnni=bool(getattr(cpu, "_is_vnni_supported", lambda: False)()))


def auto_precision(capabilities: Capabilities) -> str:
    """The precision ``"auto"`` means on a device with these capabilities (the rules in the module docstring)."""
    if capabilities.device_type == "cuda":
        return "bf16" if capabilities.cuda_capability >= (8, 0) else "fp16"
    if capabilities.device_type == "cpu":
        if capabilities.cpu_capability == "AVX512" and capabilities.cpu_bf16:
            return "bf16"
        if capabilities.cpu_capability in ("AVX2", "AVX512") and capabilities.int8_engine:
            return "int8"
    return "fp32"


def default_precision() -> str:
    """``precision=None``: the ``FIFTYONE_RAM_PRECISION`` environment variable, else ``"auto"``."""
    return os.environ.get(PRECISION_ENV, "").strip().lower() or "auto"


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """The concrete precision ("fp32", "bf16", "fp16" or "int8") a tagger runs at on ``device``."""
    asked = default_precision() if precision is None else str(precision).strip().lower()
    if asked not in PRECISION_CHOICES:
        source = f" (from ${PRECISION_ENV})" if precision is None else ""
        raise PrecisionError(f"unknown precision {asked!r}{source}; expected one of {', '.join(PRECISION_CHOICES)}")
    if asked == "auto":
        return auto_precision(detect_capabilities(device))
    if asked == "int8" and device.type != "cpu":
        raise PrecisionError(f"int8 runs on the CPU only, not on {device}: use bf16 or fp16 there")
    return asked


def check_compile(precision: str, device: torch.device) -> None:
    """Refuse ``torch.compile`` of a half precision on a CPU running ATen's AVX2 kernels: there, torch 2.14's
    compiled code returned NaN for every score of RAM Swin-L 384 at bf16 and batch 4 (eager bf16 was right, and
    AVX-512 compiled right; docs/benchmarks.md). Other instruction sets were not measured, so are not refused.
    ``auto`` never picks a half type on AVX2, so only an explicit choice gets here."""
    if device.type != "cpu" or precision not in ("bf16", "fp16"):
        return
    capability = detect_capabilities(device).cpu_capability
    if capability == "AVX2":
        raise PrecisionError(f"compiled {precision} is not safe on this CPU ({capability} kernels: "
                             f"torch's compiled code returns NaN scores there): run {precision} uncompiled, or "
                             "compile int8 or fp32")


def describe(device: torch.device | str | None = "cpu") -> dict[str, object]:
    """What a benchmark ran on: CPU model and instruction set, threads, device, what ``auto`` picks there."""
    import torch

    device = resolve_device(device)
    capabilities = detect_capabilities(torch.device("cpu"))
    out: dict[str, object] = {
        "cpu": _cpu_model(), "cpu_capability": capabilities.cpu_capability, "cpu_bf16": capabilities.cpu_bf16,
        "cpu_vnni": capabilities.cpu_vnni,
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "device": str(device), "auto_precision": auto_precision(detect_capabilities(device)),
    }
    limits = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
              if k in os.environ}
    if limits:
        out["instruction_limits"] = limits
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["cuda_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
