"""Where a tag's category is in an image: boxes from an open-set detector or from a ``Detections`` field.

Both sources answer the same question for a batch of (image, category) pairs: the boxes of that category, in
FiftyOne's relative ``[x, y, width, height]``, with a score, best first. The cleaning step does not care
which source answered.

Detector defaults (the paper does not give them): ``box_threshold=0.35`` and ``text_threshold=0.25`` are
Grounding-DINO's own demo values; at most ``max_regions=3`` boxes per tag, since a wrong tag is judged by
*all* its regions and a few strong boxes are enough to vouch for a right one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from fiftyone_ram.comparators.grounding import prompt_for
from fiftyone_ram.hub_models import GROUNDING_DINO

DEFAULT_DETECTOR = GROUNDING_DINO
DEFAULT_BOX_THRESHOLD = 0.35
DEFAULT_TEXT_THRESHOLD = 0.25
DEFAULT_MAX_REGIONS = 3


@dataclass(frozen=True)
class Region:
    """One box of one category in one image; ``box`` is relative ``[x, y, width, height]``."""

    box: tuple[float, float, float, float]
    score: float


class RegionSource(Protocol):
    """Finds the regions of categories in images."""

    #: Whether ``regions`` needs the decoded images (a detector) or only the sample ids (a labels field).
    needs_images: bool

    def regions(self, images: Sequence[Image.Image | None], sample_ids: Sequence[str],
                categories: Sequence[str]) -> list[list[Region]]:
        """Per (image, sample id, category) triple, the category's regions, best first."""
        ...


class GroundingDinoRegions:
    """Regions from transformers' Grounding-DINO, prompted with the tag name.

    ``model``: a hub id (downloaded once by transformers) or a folder with the model and its processor, or
    already loaded ``(model, processor)``. Images of a batch are processed together with one prompt each.
    """

    needs_images = True

    def __init__(self, model: str | tuple[Any, Any] = DEFAULT_DETECTOR, *,
                 box_threshold: float = DEFAULT_BOX_THRESHOLD, text_threshold: float = DEFAULT_TEXT_THRESHOLD,
                 max_regions: int = DEFAULT_MAX_REGIONS, device: str | None = None) -> None:
        import torch

        if isinstance(model, tuple):
            self.model, self.processor = model
        else:
            from transformers import AutoProcessor, GroundingDinoForObjectDetection

            from fiftyone_ram.engine.hub import load_pretrained

            instead = "take the regions from a Detections field"
            self.model = load_pretrained(GroundingDinoForObjectDetection.from_pretrained, model,
                                         "Grounding-DINO detector", instead)
            self.processor = load_pretrained(AutoProcessor.from_pretrained, model, "Grounding-DINO detector",
                                             instead)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.model.to(self.device).eval()
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.max_regions = max_regions
        self.name = model if isinstance(model, str) else type(self.model).__name__
        self.source = model if isinstance(model, str) else None  # what a Ray worker loads again

    def regions(self, images: Sequence[Image.Image | None], sample_ids: Sequence[str],
                categories: Sequence[str]) -> list[list[Region]]:
        import torch

        if not images:
            return []
        texts = [prompt_for(c) for c in categories]
        inputs = self.processor(images=list(images), text=texts, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            outputs = self.model(**inputs)
        sizes = [(im.height, im.width) for im in images]
        found = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
            target_sizes=sizes)
        return [_to_regions(r["boxes"], r["scores"], size, self.max_regions) for r, size in zip(found, sizes)]


def _to_regions(boxes, scores, size: tuple[int, int], limit: int) -> list[Region]:
    """Absolute ``xyxy`` boxes to relative ``xywh`` regions, the best ``limit`` first, empty boxes dropped."""
    height, width = size
    boxes = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes, dtype=np.float64)
    scores = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    out = []
    for i in np.argsort(-scores, kind="stable"):
        x0, y0, x1, y1 = np.clip(boxes[i], 0, [width, height, width, height])
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        out.append(Region((x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height), float(scores[i])))
        if len(out) == limit:
            break
    return out


class DetectionsRegions:
    """Regions from a ``Detections`` field the dataset already has: the boxes whose label is the category.

    Objects without a confidence count as certain (score 1). ``categories()`` lists the labels present, so
    cleaning can skip tags this field never boxes instead of flagging them all as "no region".
    """

    needs_images = False

    def __init__(self, samples: Any, field: str, *, max_regions: int = DEFAULT_MAX_REGIONS) -> None:
        import fiftyone.core.labels as fol

        schema = samples.get_field(field)
        document = getattr(schema, "document_type", None)
        if document is None or not issubclass(document, fol.Detections):
            raise ValueError(f"region field '{field}' must be a Detections field")
        self.field = field
        self.max_regions = max_regions
        self.name = f"field:{field}"
        ids, labels, boxes, confs = samples.values(
            ["id", f"{field}.detections.label", f"{field}.detections.bounding_box",
             f"{field}.detections.confidence"])
        self._boxes: dict[tuple[str, str], list[Region]] = {}
        for sample_id, names, rects, scores in zip(ids, labels, boxes, confs):
            for name, rect, score in zip(names or (), rects or (), scores or [None] * len(names or ())):
                if name is None or rect is None:
                    continue
                region = Region(tuple(float(v) for v in rect), 1.0 if score is None else float(score))
                self._boxes.setdefault((sample_id, name), []).append(region)
        for key, regions in self._boxes.items():
            self._boxes[key] = sorted(regions, key=lambda r: -r.score)[:max_regions]
        self._labels = {name for _, name in self._boxes}

    def categories(self) -> set[str]:
        return set(self._labels)

    def regions(self, images: Sequence[Image.Image | None], sample_ids: Sequence[str],
                categories: Sequence[str]) -> list[list[Region]]:
        return [list(self._boxes.get((i, c), ())) for i, c in zip(sample_ids, categories)]


def make_regions(samples: Any, *, field: str | None = None, detector: str | None = None,
                 box_threshold: float = DEFAULT_BOX_THRESHOLD, text_threshold: float = DEFAULT_TEXT_THRESHOLD,
                 max_regions: int = DEFAULT_MAX_REGIONS, device: str | None = None) -> RegionSource:
    """The region source the CLI and the operator ask for: ``field`` (a ``Detections`` field) wins, else
    Grounding-DINO (``detector``: hub id or folder, default :data:`DEFAULT_DETECTOR`)."""
    if field:
        return DetectionsRegions(samples, field, max_regions=max_regions)
    return GroundingDinoRegions(detector or DEFAULT_DETECTOR, box_threshold=box_threshold,
                                text_threshold=text_threshold, max_regions=max_regions, device=device)
