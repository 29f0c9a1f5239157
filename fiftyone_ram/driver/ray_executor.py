"""The Ray executor: a model over a collection on Ray Data (one node or a cluster), results back to the driver.

The pipeline of one run (the narrow seam :func:`predict_pages`): the driver reads pages of
``(sample_id, filepath)`` from the view and puts them into a bounded Ray queue; *page slots* (Ray tasks, a
few at a time, on any node) each take one page from the queue and decode its images; an *actor pool* holds
the model (``map_batches`` with a callable class: ``workers`` actors with ``gpus_per_worker`` GPUs each); the
per-sample outputs stream back to the driver, which writes them by sample id
(:class:`~fiftyone_ram.driver.writer.LabelWriter`). So:

- the driver never holds the whole view: it reads one page at a time and the queue bounds what is in
  flight (Ray Data's back-pressure bounds the rest);
- only the driver talks to the FiftyOne database: workers need the media (shared storage or cloud URLs)
  and this package, not the database;
- a worker that dies is replaced and its batch retried (Ray Data's actor pools have ``max_restarts=-1`` and
  ``max_task_retries=-1``);
- a driver that dies loses only the outputs in flight; the run is resumed by sample id like a local one.

Why a queue and page slots rather than ``ray.data.from_items(all pages)``: the pages would be listed whole
up front; and rather than one long read task: Ray Data merges the small blocks a read task yields into one,
so nothing would reach the model before the task ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fiftyone_ram.errors import UserError
from fiftyone_ram.jobs import Job, setting

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.fiftyone.model import RamModel

#: Where a run over a collection runs its models: here, or on Ray Data.
EXECUTORS = ("local", "ray")
#: Pages waiting in the queue per read task: enough to keep the decoders busy, small enough to bound memory.
QUEUE_PAGES_PER_READER = 2


class RayUnavailableError(UserError, ImportError):
    """The Ray executor without Ray installed."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run goes.

    address: an existing cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a local one (or
        uses the one this process already started with ``ray.init``)
    workers: model actors (one per GPU, or CPU actors)
    gpus_per_worker: GPUs each actor reserves (0: CPU actors; fractions share a GPU)
    cpus_per_worker: CPUs each actor reserves (its torch threads)
    readers: decoding tasks at once
    """

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    readers: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise OptionValueError(f"workers must be at least 1, not {self.workers}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker < 0 or self.readers < 1:
            raise OptionValueError("gpus_per_worker and cpus_per_worker must be >= 0 and readers >= 1")


class OptionValueError(UserError, ValueError):
    """A Ray option out of range, or a cluster address that cannot be one."""


@dataclass
class ExecutorSettings(Job):
    """Where a job runs its models (the settings every job over a collection shares)."""

    executor: str = setting("local", choices=EXECUTORS, label="Executor",
                            help="local: the models run here; ray: on Ray Data over a cluster's workers (a local "
                                 "cluster, or ray_address)")
    ray_address: str | None = setting(None, label="Ray cluster address",
                                      help="with the Ray executor: the cluster (auto, ray://host:10001, host:6379); "
                                           "empty: start a local one")
    workers: int = setting(1, low=1, label="Model workers",
                           help="with the Ray executor: model workers (one per GPU, or CPU workers)")
    gpus_per_worker: float = setting(0.0, low=0.0, label="GPUs per worker",
                                     help="with the Ray executor: GPUs each worker reserves (fractions share a GPU)")

    @property
    def ray_options(self) -> RayOptions | None:
        """The Ray executor's options (None: the local executor)."""
        if self.executor != "ray":
            return None
        return RayOptions(address=self.ray_address, workers=self.workers, gpus_per_worker=self.gpus_per_worker)

    def check_executor(self) -> None:
        """Before anything is written: Ray importable, and the cluster address one that can answer."""
        if self.executor != "ray":
            return
        require_ray()
        check_address(self.ray_address)
        if self.ray_address == "auto":  # is there a cluster to join? Ray answers at once (no address to probe)
            connect(RayOptions(address="auto"))


#: How long a cluster address may take to answer a connection before the run is refused.
CONNECT_TIMEOUT_S = 5.0


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse in one line an address that is no Ray cluster's: not ``auto`` nor ``[ray://]host:port``, or nothing
    listening there (Ray itself would retry for minutes). ``auto`` with no cluster fails in :func:`connect`."""
    import socket

    if address is None or address in ("auto", "local"):
        return
    host_port = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = host_port.rpartition(":")
    if "://" in host_port or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionValueError(f"ray_address (CLI: --ray-address) {address!r} is not a Ray cluster address: give "
                               f"auto, host:port (the head's GCS, 6379) or ray://host:port (Ray Client, 10001)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise OptionValueError(f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one with "
                               f"`ray start --head`, or leave the address empty for a local cluster") from None


def require_ray():
    """The ``ray`` module with Ray Data, or the one line that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(
            f"the Ray executor needs Ray Data ({exc}): pip install 'fiftyone-ram[ray]'") from None
    return ray


def connect(options: RayOptions) -> None:
    """Join ``options.address``, or start a local cluster, unless this process is connected already (a
    caller's own ``ray.init`` wins: tests start a small one, notebooks their own)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    if options.address is None:
        # A local cluster of this run's must not outlive a killed run, even one killed while the cluster starts
        # (seconds): the watcher is up first and notes the cluster's processes as they appear.
        from fiftyone_ram.driver.ray_cleanup import guard_local_cluster

        guard_local_cluster()
    try:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    except ConnectionError as exc:  # "auto" with no cluster running, a head that went away
        raise OptionValueError(f"cannot connect to the Ray cluster at {options.address}: "
                               f"{str(exc).splitlines()[0]}") from None


def predict_pages(pages: Iterable[Sequence[tuple[str, str]]], model: RamModel, options: RayOptions, *,
                  max_pages: int) -> Iterator[tuple[list[str], list[Any]]]:
    """Run ``model`` over ``pages`` of ``(sample_id, filepath)`` on Ray; yield ``(ids, outputs)`` as results
    arrive (any order). An output is what ``RamModel.predict_outputs`` gives: a ``TagOutput``, or ``{"error": ...}``
    for an unreadable image. One page is one model batch."""
    size = model.tagger.image_size
    # Our models give the actors their FiftyOne-free predictor (importing FiftyOne costs each actor seconds).
    predictor = model.ray_predictor()
    for batch in stream_pages(pages, max_pages=max_pages, decode=_DecodeImages(size), predictor=_ModelActor,
                              predictor_kwargs={"model": model if predictor is None else predictor}, options=options):
        yield list(batch["id"]), list(batch["output"])


def stream_pages(pages: Iterable[Sequence[tuple[str, str]]], *, max_pages: int, decode: Callable[[dict], dict],
                 predictor: type, predictor_kwargs: dict[str, Any], options: RayOptions,
                 ) -> Iterator[dict[str, np.ndarray]]:
    """The generic pipeline: ``pages`` (at most ``max_pages``) → ``options.readers`` tasks at a time taking one
    page each from the queue and running ``decode`` on it (columns ``id``, ``filepath``) → ``options.workers``
    actors of ``predictor(**predictor_kwargs)`` → batches back here, as they finish."""
    ray = require_ray()
    from ray.util.queue import Queue

    connect(options)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows one bar over the samples
    queue = Queue(maxsize=options.readers * QUEUE_PAGES_PER_READER)
    feeder = _Feeder(pages, queue)
    feeder.start()
    # One row (a page slot) per block: each slot is one task that takes the next page from the queue, so
    # pages stay one block each (Ray Data merges the small blocks of one long read task into one). From the
    # driver, not ``ray.data.range``: its read tasks would each wait for a CPU the actors may all hold.
    count = max(max_pages, 1)
    slots = ray.data.from_items([{"slot": i} for i in range(count)], override_num_blocks=count)
    decoded = slots.map_batches(_TakePage(queue, decode), batch_size=None, batch_format="numpy",
                                compute=ray.data.TaskPoolStrategy(size=options.readers), num_cpus=0)
    # Ray Data gives actor pools max_restarts=-1 and max_task_retries=-1: a dead actor is replaced and the
    # batch it held is run again on a live one.
    outputs = decoded.map_batches(
        predictor, fn_constructor_kwargs=predictor_kwargs, batch_size=None, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.workers), num_gpus=options.gpus_per_worker or None,
        num_cpus=options.cpus_per_worker)
    try:
        yield from outputs.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
    finally:
        feeder.stop()
    if feeder.error is not None:
        raise feeder.error


class _Feeder(threading.Thread):
    """Puts the driver's pages into the queue (blocking while it is full), then end markers until stopped:
    page slots left over (fewer pages than slots, or a retried task) find a marker and return nothing."""

    def __init__(self, pages: Iterable[Sequence[tuple[str, str]]], queue) -> None:
        super().__init__(name="fiftyone-ram-ray-feeder", daemon=True)
        self.pages, self.queue = pages, queue
        self.error: BaseException | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            for page in self.pages:
                if not page:
                    continue
                ids, paths = zip(*page)
                if not self._put({"id": list(ids), "filepath": [str(p) for p in paths]}):
                    return
        except BaseException as exc:  # raised by the driver once the stream ends
            self.error = exc
        while self._put(None):
            pass

    def _put(self, item) -> bool:
        """False once stopped."""
        from ray.util.queue import Full

        while not self._stopped.is_set():
            try:
                self.queue.put(item, timeout=0.5)
                return True
            except Full:
                continue
            except Exception:  # the queue's actor is gone: the cluster shut down
                return False
        return False

    def stop(self) -> None:
        self._stopped.set()


class _TakePage:
    """A page slot: the next page from the queue, decoded (an empty batch at the end marker)."""

    def __init__(self, queue, decode: Callable[[dict], dict]) -> None:
        self.queue, self.decode = queue, decode

    def __call__(self, slot: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        page = self.queue.get()
        if page is None:
            page = {"id": [], "filepath": []}
        return self.decode({"id": np.array(page["id"], dtype=object),
                            "filepath": np.array(page["filepath"], dtype=object)})


class _DecodeImages:
    """A page's images to pixels, as the local engine's loader workers do; an unreadable one becomes zeros
    and its message (the model skips it)."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Not through inputs.read_input (the same call and messages) nor torch: they import FiftyOne's torch
        # utilities and torch, seconds of start-up in every decoding process.
        from fiftyone_ram.images import ImageError, read_pixel_array

        pixels = np.zeros((len(batch["id"]), 3, self.image_size, self.image_size), np.float32)
        errors = []
        for row, path in enumerate(batch["filepath"]):
            try:
                pixels[row] = read_pixel_array(str(path), self.image_size)
                errors.append("")
            except ImageError as exc:
                errors.append(str(exc))
        return {"id": batch["id"], "pixels": pixels, "error": np.array(errors, dtype=object)}


class _ModelActor:
    """One model in one Ray actor: loaded once (from its checkpoint, memory-mapped), then batch after batch.
    ``model``: a ``TagPredictor`` (``RamModel.ray_predictor``), or a model with ``predict_outputs``."""

    def __init__(self, model: Any) -> None:
        from fiftyone_ram.fiftyone.outputs import TagPredictor

        self.model = model
        self.predictor = model if isinstance(model, TagPredictor) else None
        if self.predictor is not None:
            self.predictor.load()  # now, not in the first batch
        else:
            self.model.tagger  # noqa: B018 - load now, not in the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        errors = [str(e) or None for e in batch["error"]]
        readable = [row for row, error in enumerate(errors) if error is None]
        pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][readable])) if readable else None
        if self.predictor is not None:
            outputs = self.predictor.predict_outputs(pixels, errors)
        else:
            from fiftyone_ram.fiftyone.inputs import ImageBatch

            outputs = self.model.predict_outputs(ImageBatch(pixels, errors))
        column = np.empty(len(outputs), dtype=object)
        column[:] = outputs
        return {"id": batch["id"], "output": column}
