"""The data engine's model passes on Ray (``executor="ray"``): generation's tagger and captioner, cleaning's
detector and crop encoder, through :func:`fiftyone_ram.driver.ray_executor.stream_pages` (decoding in Ray
tasks, the models in an actor pool). What is shared with the local passes lives here too
(:func:`results_of`, :func:`tag_batches`, :func:`crop_pass`), so that both engines compute the same thing.

Taggers travel as a :class:`PortableTagger`: the spec they were loaded from (``Tagger.spec``) and the
checkpoint's fingerprint, never the weights. Each actor loads the tagger again from the spec (the weights
memory-mapped from the same path) and checks the file is the one the driver loaded, so a cluster node with
another file there fails with one line rather than tagging with other weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fiftyone_ram.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.driver.ray_executor import RayOptions
    from fiftyone_ram.tagger import Tagger


class NotReloadableError(UserError, ValueError):
    """A tagger that a Ray worker cannot load again (built in memory, or from inputs held in memory)."""


@dataclass(frozen=True)
class PortableTagger:
    """A loaded tagger without its weights: its spec (``Tagger.spec``: what loads it again) and the fingerprint
    of the checkpoint the driver read, which the worker's copy must match."""

    spec: dict[str, Any]
    fingerprint: str

    def load(self, device: str) -> Tagger:
        """The tagger, loaded in this process from the driver's spec on ``device`` (a Ray actor's: ``cuda``
        when it reserved a GPU), checked to read the same checkpoint file."""
        from fiftyone_ram.tagger import load_tagger
        from fiftyone_ram.tagger_spec import TaggerSpec

        tagger = load_tagger(TaggerSpec.from_dict(self.spec), device=device)
        if tagger.checkpoint.fingerprint != self.fingerprint:
            raise NotReloadableError(f"the checkpoint at {tagger.checkpoint.path} on this Ray worker is not the "
                                     f"file the driver loaded: give a path that holds the same file on every node")
        return tagger


def tagger_spec(tagger: Tagger, what: str = "tagger") -> PortableTagger:
    """``tagger`` as a :class:`PortableTagger`, or one line saying why a Ray worker could not load it again."""
    identity, spec = tagger.checkpoint, tagger.spec
    if spec is None or identity is None or not identity.size or not identity.fingerprint:
        raise NotReloadableError(f"the {what} was built in memory, not loaded from a checkpoint file, so Ray "
                                 f"workers cannot load it: load it with fiftyone_ram.load_tagger(..., checkpoint) "
                                 f"or use the local executor")
    if not spec.portable:
        raise NotReloadableError(f"the {what}'s vocabulary was embedded with a text encoder held in memory, which "
                                 f"Ray workers cannot load: give the encoder's hub name or folder")
    return PortableTagger(spec.to_dict(), identity.fingerprint)


@dataclass
class ModelResult:
    """What the model pass of generation gives one sample: its predicted ``(tag, probability)`` in the
    tagger's order, the caption written for it, or why its image could not be read."""

    predicted: list[tuple[str, float]] = field(default_factory=list)
    caption: str | None = None
    error: str | None = None


def results_of(tagged: Any, captioned: Any, tagger: Tagger | None, captioner: Tagger | None,
               threshold: float | None) -> dict[int, ModelResult]:
    """Per input position of one batch, its :class:`ModelResult` (the local and the Ray pass share this, so
    both decide tags the same way)."""
    results = {position: ModelResult(error=message) for position, message in tagged.errors.items()}
    for position in tagged.positions:
        results[position] = ModelResult()
    if tagger is not None:
        predictions = tagger.decide(tagged.probabilities, tagged.indices, threshold=threshold)
        for position, predicted in zip(tagged.positions, predictions):
            results[position].predicted = [(name, float(p)) for name, p in predicted]
    if captioner is not None:
        for position, text in zip(captioned.positions, captioned.captions):
            results[position].caption = text
    return results


def tag_batches(images: Any, tagger: Tagger | None, captioner: Tagger | None,
                caption_options: dict[str, Any] | None, batch_size: int | None,
                pixels_for: Any = None) -> Iterator[tuple[Any, Any]]:
    """Per batch, the tagger's and the captioner's ``TaggedBatch`` (the same one when they are one model,
    whose backbone then runs once per image for both). ``images``: paths, or (``pixels_for(model)``) each
    model's preprocessed pixels."""
    if tagger is None and captioner is None:
        return iter(())
    first = tagger if tagger is not None else captioner

    def source(model: Tagger) -> Any:
        return images if pixels_for is None else pixels_for(model)

    runs = [first.iter_batches(source(first), tags=None if tagger is not None else [], caption=captioner is first,
                               caption_options=caption_options, batch_size=batch_size)]
    if captioner is not None and captioner is not first:
        runs.append(captioner.iter_batches(source(captioner), tags=[], caption=True, caption_options=caption_options,
                                           batch_size=batch_size))
    return ((batches[0], batches[-1]) for batches in zip(*runs))


def generation_results_on_ray(paths: Sequence[str], tagger: Tagger | None, captioner: Tagger | None, *,
                              threshold: float | None, caption_options: dict[str, Any] | None, batch_size: int,
                              options: RayOptions) -> Iterator[tuple[int, ModelResult]]:
    """``(position in paths, ModelResult)`` of every path, as Ray's actors finish them (any order). One page of
    ``batch_size`` paths is one model batch, as locally."""
    from fiftyone_ram.driver.ray_executor import stream_pages

    specs = {"tagger": tagger_spec(tagger) if tagger is not None else None,
             "captioner": tagger_spec(captioner, "captioner") if captioner not in (None, tagger) else None}
    sizes = sorted({m.image_size for m in (tagger, captioner) if m is not None})
    pages = _pages(paths, batch_size)
    kwargs = {**specs, "same": captioner is not None and captioner is tagger, "threshold": threshold,
              "caption_options": caption_options, "gpu": options.gpus_per_worker > 0}
    for batch in stream_pages(pages, max_pages=-(-len(paths) // batch_size), decode=DecodeSizes(sizes),
                              predictor=GenerationActor, predictor_kwargs=kwargs, options=options):
        yield from zip((int(i) for i in batch["id"]), batch["result"])


def _pages(paths: Sequence[str], size: int) -> Iterator[list[tuple[str, str]]]:
    """Pages of ``(position, path)``: positions stand for sample ids, so results map back without a lookup."""
    for start in range(0, len(paths), size):
        yield [(str(i), str(paths[i])) for i in range(start, min(start + size, len(paths)))]


class DecodeSizes:
    """A page's images at each model's input size (``pixels_<size>``; two models of one size share them);
    an unreadable image is zeros and its message, as :class:`~fiftyone_ram.driver.ray_executor` decodes."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fiftyone_ram.driver.ray_executor import _DecodeImages

        out: dict[str, np.ndarray] = {"id": batch["id"]}
        for size in self.sizes:
            decoded = _DecodeImages(size)(batch)
            out[f"pixels_{size}"], out["error"] = decoded["pixels"], decoded["error"]
        return out


class GenerationActor:
    """Generation's tagger and captioner in one Ray actor: loaded once, then page after page."""

    def __init__(self, tagger: PortableTagger | None, captioner: PortableTagger | None, same: bool,
                 threshold: float | None, caption_options: dict[str, Any] | None, gpu: bool) -> None:
        device = "cuda" if gpu else "cpu"
        self.tagger = tagger.load(device) if tagger is not None else None
        self.captioner = self.tagger if same else captioner.load(device) if captioner is not None else None
        self.threshold, self.caption_options = threshold, caption_options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        errors = [str(e) or None for e in batch["error"]]
        readable = [row for row, error in enumerate(errors) if error is None]
        results = [ModelResult(error=error) for error in errors]
        if readable:
            def pixels_for(model: Tagger) -> torch.Tensor:
                column = batch[f"pixels_{model.image_size}"][readable]
                return torch.from_numpy(np.ascontiguousarray(column))

            for tagged, captioned in tag_batches(None, self.tagger, self.captioner, self.caption_options,
                                                 None, pixels_for):
                for position, result in results_of(tagged, captioned, self.tagger, self.captioner,
                                                   self.threshold).items():
                    results[readable[position]] = result
        column = np.empty(len(results), dtype=object)
        column[:] = results
        return {"id": batch["id"], "result": column}


# -- cleaning: regions, crops and their embeddings ----------------------------------------------------------


@dataclass
class CropItem:
    """One (image, category) pair of a cleaning chunk: its ``position`` among the category batch's pairs,
    its sample's ``index`` in the collection, and the boxes when they come from a field (None: detect)."""

    position: int
    index: int
    sample_id: str
    category: str
    path: str
    boxes: list | None = None


@dataclass
class ChunkResult:
    """What the region and crop pass gives one chunk of pairs, in the chunk's order: the unreadable images
    ``(index, message)``, each readable pair's regions ``(position, boxes)``, the crops' embeddings and
    category probabilities, and the pair position owning each crop row."""

    chunk: int
    batch: int = 0  # the category batch (Ray: one pipeline carries the chunks of every batch)
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    found: list[tuple[int, list]] = field(default_factory=list)
    vectors: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    owners: list[int] = field(default_factory=list)


def crop_pass(chunk: int, items: Sequence[CropItem], images: dict[int, Any], errors: dict[int, str], regions: Any,
              encoder: Any, crop_margin: float) -> ChunkResult:
    """Regions, crops and embeddings of one chunk (``images``/``errors`` by sample index): the local and the
    Ray pass share it, so both cut and embed the same crops in the same order."""
    from fiftyone_ram.engine.crops import crop

    result = ChunkResult(chunk)
    seen: set[int] = set()
    for item in items:
        if item.index in errors and item.index not in seen:
            result.unreadable.append((item.index, errors[item.index]))
        seen.add(item.index)
    readable = [item for item in items if item.index not in errors]
    if not readable:
        return result
    pictures = [images[item.index] for item in readable]
    if regions is None:  # boxes from a field, travelled with the pairs
        answers = [item.boxes for item in readable]
    else:
        answers = regions.regions(pictures, [i.sample_id for i in readable], [i.category for i in readable])
    crops, owners = [], []
    for item, image, boxes in zip(readable, pictures, answers):
        result.found.append((item.position, boxes))
        for region in boxes:
            crops.append(crop(image, region.box, crop_margin))
            owners.append(item)
    if crops:
        vectors, probs = encoder.encode(crops, [item.category for item in owners])
        result.vectors = np.asarray(vectors, dtype=np.float32)
        result.probabilities = np.full(len(crops), np.nan) if probs is None else np.asarray(probs, float)
        result.owners = [item.position for item in owners]
    return result


def encoder_spec(encoder: Any) -> tuple:
    """A crop encoder as what a Ray worker needs to build it again, or one line saying it cannot."""
    from fiftyone_ram.engine.crops import ClipCrops, EncoderWithTagger, TaggerCrops

    if isinstance(encoder, TaggerCrops):
        return ("tagger", tagger_spec(encoder.tagger), encoder.check)
    if isinstance(encoder, EncoderWithTagger):
        return ("with_tagger", encoder_spec(encoder.encoder), tagger_spec(encoder.checker.tagger))
    if isinstance(encoder, ClipCrops) and encoder.source is not None:
        return ("clip", encoder.source, encoder.batch_size)
    raise NotReloadableError("the crop encoder was built in memory, so Ray workers cannot load it: give the "
                             "CLIP model as a hub id or folder, or use the local executor")


def build_encoder(spec: tuple, device: str) -> Any:
    """The crop encoder of :func:`encoder_spec`, loaded in this process."""
    from fiftyone_ram.engine.crops import ClipCrops, EncoderWithTagger, TaggerCrops

    kind = spec[0]
    if kind == "tagger":
        return TaggerCrops(spec[1].load(device), check=spec[2])
    if kind == "with_tagger":
        return EncoderWithTagger(build_encoder(spec[1], device), spec[2].load(device))
    return ClipCrops(spec[1], device=device, batch_size=spec[2])


def regions_spec(regions: Any) -> tuple | None:
    """A region source as a Ray worker builds it again: None for a ``Detections`` field (its boxes travel
    with the pairs, read on the driver), the detector's settings, or one line saying it cannot."""
    from fiftyone_ram.engine.regions import DetectionsRegions, GroundingDinoRegions

    if isinstance(regions, DetectionsRegions):
        return None
    if isinstance(regions, GroundingDinoRegions) and regions.source is not None:
        return (regions.source, regions.box_threshold, regions.text_threshold, regions.max_regions)
    raise NotReloadableError("the region source was built in memory, so Ray workers cannot load it: give the "
                             "detector as a hub id or folder, or use the local executor")


def check_cleaning_on_ray(regions: Any, encoder: Any) -> None:
    """Refuse, before anything is written, what Ray workers could not load."""
    regions_spec(regions)
    encoder_spec(encoder)


def cleaning_results_on_ray(batches: Iterable[Sequence[list[CropItem]]], chunk_counts: Sequence[int], regions: Any,
                            encoder: Any, crop_margin: float, options: RayOptions) -> Iterator[list[ChunkResult]]:
    """:func:`crop_pass` of every chunk of every category batch on Ray (images decoded in Ray tasks, the detector
    and the encoder in actors): per batch, in batch order, its results in chunk order (the outliers are judged
    over a batch's, as locally). One pipeline serves all the batches, so the actors load their models once per
    run; ``batches`` is read as the pipeline takes pages (``chunk_counts``: each batch's number of chunks)."""
    import json

    from fiftyone_ram.driver.ray_executor import stream_pages

    detector = regions_spec(regions)

    def pages() -> Iterator[list[tuple[str, str]]]:
        for number, chunks in enumerate(batches):
            for n, chunk in enumerate(chunks):
                if not chunk:
                    continue
                if detector is None:  # boxes from a field: read here, they travel with the pairs
                    found = regions.regions([None] * len(chunk), [i.sample_id for i in chunk],
                                            [i.category for i in chunk])
                    for item, boxes in zip(chunk, found):
                        item.boxes = [[*r.box, r.score] for r in boxes]
                yield [(json.dumps({"batch": number, "chunk": n, **item.__dict__}), item.path) for item in chunk]

    kwargs = {"detector": detector, "encoder": encoder_spec(encoder), "crop_margin": crop_margin,
              "gpu": options.gpus_per_worker > 0}
    stream = stream_pages(pages(), max_pages=sum(chunk_counts), decode=DecodeFull(), predictor=CleaningActor,
                          predictor_kwargs=kwargs, options=options)
    arrived: dict[int, list[ChunkResult]] = {}
    with closing(stream):
        for number, count in enumerate(chunk_counts):
            while len(arrived.get(number, ())) < count:  # results come in any order: later batches' wait here
                try:
                    batch = next(stream)
                except StopIteration:
                    raise RuntimeError("the Ray pipeline ended before every chunk of the cleaning came back") from None
                for result in batch["result"]:
                    arrived.setdefault(result.batch, []).append(result)
            yield sorted(arrived.pop(number, []), key=lambda r: r.chunk)


class DecodeFull:
    """A page's images as RGB arrays at their own size (the detector and the crops need them whole), each
    file read once; an unreadable one is its message."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fiftyone_ram.images import ImageError, load_image

        read: dict[str, tuple[Any, str]] = {}
        for path in batch["filepath"]:
            if path not in read:
                try:
                    read[path] = (np.asarray(load_image(str(path))), "")
                except ImageError as exc:
                    read[path] = (np.zeros((1, 1, 3), np.uint8), str(exc))
        pixels = np.empty(len(batch["id"]), dtype=object)
        pixels[:] = [read[p][0] for p in batch["filepath"]]
        return {"id": batch["id"], "image": pixels,
                "error": np.array([read[p][1] for p in batch["filepath"]], dtype=object)}


class CleaningActor:
    """Cleaning's detector (if any) and crop encoder in one Ray actor: one chunk of pairs per batch."""

    def __init__(self, detector: tuple | None, encoder: tuple, crop_margin: float, gpu: bool) -> None:
        device = "cuda" if gpu else "cpu"
        self.regions = None
        if detector is not None:
            from fiftyone_ram.engine.regions import GroundingDinoRegions

            source, box, text, limit = detector
            self.regions = GroundingDinoRegions(source, box_threshold=box, text_threshold=text, max_regions=limit,
                                                device=device)
        self.encoder = build_encoder(encoder, device)
        self.crop_margin = crop_margin

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import json

        from PIL import Image

        from fiftyone_ram.engine.regions import Region

        if not len(batch["id"]):
            return {"id": np.array([], dtype=object), "result": np.array([], dtype=object)}
        keys = [json.loads(key) for key in batch["id"]]
        items = [CropItem(k["position"], k["index"], k["sample_id"], k["category"], k["path"],
                          None if k["boxes"] is None else [Region(tuple(b[:4]), b[4]) for b in k["boxes"]])
                 for k in keys]
        images, errors = {}, {}
        for item, pixels, error in zip(items, batch["image"], batch["error"]):
            if error:
                errors[item.index] = str(error)
            elif item.index not in images:
                images[item.index] = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
        chunks: dict[tuple[int, int], list[CropItem]] = {}
        for key, item in zip(keys, items):  # one page is one chunk; a merged batch holds several
            chunks.setdefault((key["batch"], key["chunk"]), []).append(item)
        results = []
        for (number, n), chunk in chunks.items():
            result = crop_pass(n, chunk, images, errors, self.regions, self.encoder, self.crop_margin)
            result.batch = number
            results.append(result)
        column = np.empty(len(results), dtype=object)
        column[:] = results
        return {"id": np.array([f"{r.batch}:{r.chunk}" for r in results], dtype=object), "result": column}
