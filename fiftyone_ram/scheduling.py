"""Splitting the machine between image decoding and the model, for every loop that runs a tagger over images.

What each side costs decides the split. The model's cost per image is estimated from its multiply-adds and
the device (:func:`model_seconds_per_image`); decoding one image (read, decode, resize, normalise) costs about
the same on any CPU core (:data:`DECODE_SECONDS`, measured on PNGs and JPEGs of about 640x480). At the released
sizes on a CPU the model costs hundreds of times more, so it gets every core and decoding runs beside it: one
DataLoader worker (``apply_model``), or a thread of the main process (:func:`prefetch`, used by
``Tagger.iter_batches``). Where decoding dominates (tiny models, or a GPU), workers decode in parallel; on a CPU
the model's threads then share the cores with them (:func:`plan_loading`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.models.config import ModelConfig

T = TypeVar("T")

#: Seconds one CPU core spends to read, decode, resize and normalise one image (PIL; 640x480 PNG ~12 ms, JPEG
#: ~6 ms on the 2-core development machines), used when nothing was measured.
DECODE_SECONDS = 0.012
#: Multiply-adds per second one CPU core sustains on the taggers' matrices, by precision (RAM Swin-L 384 on an
#: AVX-512 core: fp32 ~1.8 s, bf16 ~0.6 s per image for ~160 GMAC on two cores).
CPU_MACS_PER_CORE = {"fp32": 45e9, "int8": 60e9, "bf16": 130e9, "fp16": 45e9}
#: The same for a whole GPU at bf16 / fp16 (a mid-range card; fp32 at a quarter): on any GPU the model outruns
#: decoding on one core many times over, which is all the plan needs to know.
GPU_MACS = 100e12
#: Decoding processes at most for a GPU (each holds a copy of the interpreter and prefetched batches).
MAX_GPU_WORKERS = 16


@dataclass(frozen=True)
class LoadingPlan:
    """How a run over images uses the machine."""

    num_workers: int  # DataLoader decoding processes (0: decode in the main process)
    pin_memory: bool  # page-locked batches, for asynchronous copies to a GPU
    decode_share: float  # decoding's cost relative to the model's, per image (both on one core's terms)

    def describe(self) -> str:
        return (f"{self.num_workers} decoding worker(s), pinned memory {'on' if self.pin_memory else 'off'}, "
                f"decoding/model cost {self.decode_share:.3f}")


def multiply_adds(config: ModelConfig, num_classes: int) -> float:
    """Multiply-adds per image of the tagging pass (Swin + tagging head), from the architecture's sizes.

    The Linear layers dominate: per token, a Swin block costs 12 C^2 (qkv, projection, 4x MLP) plus 2 w^2 C of
    windowed attention; each label query costs its layers' projections and feed-forward block (the first
    layer's query projection is cached). RAM Swin-L 384 with 4,585 tags: ~104 G for Swin, ~54 G for the head.
    """
    swin, head = config.swin, config.q2l
    side = config.image_size // swin.patch_size
    total = side * side * 3 * swin.patch_size ** 2 * swin.embed_dim  # patch embedding
    for stage, depth in enumerate(swin.depths):
        tokens, width = (side >> stage) ** 2, swin.embed_dim << stage
        if stage:  # patch merging: 4C -> 2C of the previous stage's width
            total += tokens * 4 * (width // 2) * width
        window = min(swin.window_size, side >> stage) ** 2
        total += depth * tokens * (12 * width * width + 2 * window * width)
    tokens, hidden = config.num_tokens, head.hidden_size
    kv_width = swin.num_features if config.family == "tag2text" else config.embed_dim
    if config.family != "tag2text":
        total += tokens * swin.num_features * config.embed_dim  # image projection
    per_query = head.num_hidden_layers * (hidden * hidden * 2 + 2 * tokens * hidden + 2 * hidden * head.intermediate_size)
    total += head.num_hidden_layers * tokens * 2 * kv_width * hidden + num_classes * per_query
    if config.family == "ram_plus":  # per-image queries: the description mix and their projection
        total += num_classes * (2 * config.descriptions_per_tag * config.embed_dim + config.embed_dim * hidden)
    return float(total)


def plan_for(tagger: Any, *, num_workers: int | None = None, cores: int | None = None) -> LoadingPlan:
    """:func:`plan_loading` for a loaded ``Tagger`` (its architecture, vocabulary size, precision, device)."""
    macs = multiply_adds(tagger.config, len(tagger.tag_list))
    return plan_loading(macs, tagger.precision, tagger.device.type, num_workers=num_workers, cores=cores)


def model_seconds_per_image(macs: float, precision: str, device_type: str, cores: int) -> float:
    """Estimated model time per image: its multiply-adds over what the device sustains."""
    if device_type == "cpu":
        return macs / (CPU_MACS_PER_CORE.get(precision, CPU_MACS_PER_CORE["fp32"]) * max(cores, 1))
    return macs / (GPU_MACS / (4 if precision == "fp32" else 1))


def plan_loading(macs_per_image: float, precision: str, device_type: str, *, num_workers: int | None = None,
                 cores: int | None = None, decode_seconds: float = DECODE_SECONDS) -> LoadingPlan:
    """The split for a model of ``macs_per_image`` at ``precision`` on ``device_type``; ``num_workers`` (given
    by the user) is kept as given, and the model's threads are then left alone.

    * GPU: decoding must keep up with the device: every core but one decodes (the main process feeds the GPU
      and writes labels), up to :data:`MAX_GPU_WORKERS`, into pinned memory.
    * CPU, decoding cheap next to the model (ratio under 1/10 of a core's share): one worker, the model on every
      core; the worker is idle more than 90 % of the time, so the model loses nothing measurable.
    * CPU, decoding expensive (tiny models): workers take the share of the cores decoding needs and the model the
      rest, so that neither side waits on threads the other is using.
    """
    cores = max(cores or os.cpu_count() or 1, 1)
    model = model_seconds_per_image(macs_per_image, precision, device_type, cores)
    share = decode_seconds / max(model, 1e-9)  # core-seconds of decoding per second of model time
    if device_type != "cpu":
        wanted = num_workers if num_workers is not None else min(max(cores - 1, 1), MAX_GPU_WORKERS)
        return LoadingPlan(wanted, device_type == "cuda", share)
    if num_workers is not None:  # the user's split
        return LoadingPlan(num_workers, False, share)
    if share < 0.1 * cores:
        return LoadingPlan(1, False, share)
    # Decoding gets the cores in proportion to its cost (at least one, the model keeps at least one).
    workers = min(max(round(cores * share / (1 + share)), 1), max(cores - 1, 1))
    return LoadingPlan(workers, False, share)


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, each produced in a background thread up to ``depth`` ahead of the consumer.

    For decoding beside the model: PIL and numpy release the GIL while they work, so the thread costs the
    model only its CPU time. An exception in the producer is raised at the consumer, at its place in the order.
    Closing the iterator early stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                if not _put(slots, (item, None), stop):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _put(slots, (None, exc), stop)
            return
        _put(slots, (done, None), stop)

    thread = threading.Thread(target=produce, name="fiftyone-ram-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting for a free slot
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _put(slots: queue.Queue, entry: tuple, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            slots.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else every core)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


def plan_for_model(model: Any, num_workers: int | None = None) -> LoadingPlan | None:
    """The plan for a FiftyOne ``apply_model`` run of ``model`` (a ``RamModel``, or anything with a ``tagger``);
    None for other models. It only advises: how many DataLoader workers to ask for and whether to pin memory.
    Torch's own thread setting is left as the process has it (this may run inside the App server or a
    notebook, whose settings are not ours to change)."""
    tagger = getattr(model, "tagger", None)
    if tagger is None or not hasattr(tagger, "config"):
        return None
    return plan_for(tagger, num_workers=num_workers, cores=available_cores())
