"""An ONNX export (``fiftyone_ram.export``) as a FiftyOne ``Model``: tag a dataset with onnxruntime alone.

It needs the export folder and onnxruntime, not the checkpoint nor ``load_tagger``, and stores what
:class:`fiftyone_ram.fiftyone.model.RamModel` stores: one ``Classification`` per predicted tag with its
``confidence`` and ``threshold``, ``logits`` with ``store_logits``, an ``{"error": ...}`` for an unreadable
image. Pixels are prepared by the same code (``fiftyone_ram.fiftyone.inputs``) and tags decided by the same rule
(``fiftyone_ram.fiftyone.outputs.decide_outputs``), so the two models differ only by the runtime's rounding.
Tag2Text captions are not part of the export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fiftyone.core.config as foc
import fiftyone.core.models as fom
import numpy as np
import torch

from fiftyone_ram.decision import check_threshold
from fiftyone_ram.errors import OptionError
from fiftyone_ram.export.folder import ExportFolder, read_export
from fiftyone_ram.export.runtime import open_session, run_session, sigmoid
from fiftyone_ram.fiftyone.inputs import ImageBatch, PixelTransform, TaggerGetItem, collate_images, read_input
from fiftyone_ram.fiftyone.model import ImageTaggerModel
from fiftyone_ram.fiftyone.outputs import TagOutput, decide_outputs, tag_thresholds

CONFIG_KEYS = ("export_dir", "variant", "classes", "language", "confidence_thresh", "threads")


class OnnxRamModelConfig(foc.Config):
    """Settings of an :class:`OnnxRamModel` (JSON-serialisable).

    export_dir: the folder ``export_onnx`` / ``fiftyone-ram export`` wrote
    variant: ``fp32`` (default) or ``int8`` (the quantised file, when exported)
    classes: only these tags (their scores are the same as with all tags)
    language: ``en`` | ``zh`` label names (``zh`` needs the export's Chinese tag list)
    confidence_thresh: one threshold for all tags instead of the per-class ones
    filter_classes: set by ``apply_model(classes=...)``: only emit these labels
    threads: onnxruntime intra-op threads (default: one per core)
    """

    def __init__(self, d: dict[str, Any]) -> None:
        self.export_dir = self.parse_string(d, "export_dir")
        self.variant = self.parse_categorical(d, "variant", ["fp32", "int8"], default="fp32")
        self.classes = self.parse_array(d, "classes", default=None)
        self.language = self.parse_categorical(d, "language", ["en", "zh"], default="en")
        self.confidence_thresh = self.parse_number(d, "confidence_thresh", default=None)
        self.filter_classes = self.parse_array(d, "filter_classes", default=None)
        self.threads = self.parse_int(d, "threads", default=None)
        if self.confidence_thresh is not None:
            check_threshold(self.confidence_thresh, "confidence_thresh")


class OnnxRamModel(ImageTaggerModel):
    """An export run by onnxruntime; DataLoader batching with decoding in the workers, as ``RamModel``.

    ``TorchModelMixin``: FiftyOne then collates with :func:`collate_images` (its numpy path would drop the
    markers of unreadable images); the pixels are torch tensors until they are handed to onnxruntime."""

    _using_gpu = False  # read by apply_model(pin_memory=True): onnxruntime copies from host memory

    def __init__(self, config: OnnxRamModelConfig) -> None:
        super().__init__()
        self.config = config
        self.export: ExportFolder = read_export(config.export_dir)
        self._session = None
        names = self.names(config.language)
        index = {name: i for i, name in reversed(list(enumerate(self.export.tag_list)))}
        if config.classes is not None:
            unknown = [t for t in config.classes if t not in index]
            if unknown:
                raise OptionError(f"{len(unknown)} tag(s) are not in this export's tag list: "
                                  + ", ".join(repr(t) for t in unknown[:10]))
        self._indices = (np.arange(len(names)) if config.classes is None
                         else np.asarray([index[t] for t in config.classes], dtype=np.int64))

    def names(self, language: str = "en") -> list[str]:
        if language == "zh":
            if self.export.tag_list_chinese is None:
                raise OptionError(f"the export in {self.export.path} has no Chinese tag names")
            return self.export.tag_list_chinese
        return self.export.tag_list

    @property
    def session(self):
        if self._session is None:
            self._session = open_session(self.export.model_path(self.config.variant), threads=self.config.threads)
        return self._session

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get the model without its session
        state = self.__dict__.copy()
        state["_session"] = None
        state["_embeddings"] = None
        return state

    # -- fom.Model -------------------------------------------------------------------------------------
    @property
    def ragged_batches(self) -> bool:
        return False

    @property
    def transforms(self) -> PixelTransform:
        return PixelTransform(self.export.image_size)

    @property
    def has_embeddings(self) -> bool:
        return True

    collate_fn = staticmethod(collate_images)

    def build_get_item(self, field_mapping: dict[str, str] | None = None) -> TaggerGetItem:
        return TaggerGetItem(self.export.image_size, field_mapping=field_mapping)

    def predict(self, arg):
        return self.predict_all([arg])[0]

    def predict_all(self, args) -> list:
        """Labels per input: a ``Classifications``, or ``{"error": message}`` for an unreadable image."""
        return [output.to_label() if isinstance(output, TagOutput) else output
                for output in self.predict_outputs(args)]

    def predict_outputs(self, args) -> list[TagOutput | dict[str, str]]:
        batch = self._as_batch(args)
        out: list = [{"error": error} for error in batch.errors]
        if batch.pixel_values is None:
            return out
        logits, self._embeddings = run_session(self.session, batch.pixel_values.numpy())
        logits = np.ascontiguousarray(logits[:, self._indices])
        limits = tag_thresholds(self.export.thresholds, self._indices, self.config.confidence_thresh)
        keep = set(self.config.filter_classes) if self.config.filter_classes is not None else None
        outputs = decide_outputs(sigmoid(logits), self._indices, limits, self.names(self.config.language),
                                 self.export.excluded_mask(), logits=logits if self.store_logits else None,
                                 keep_names=keep)
        for position, output in zip(batch.readable, outputs, strict=True):
            out[position] = output
        return out

    # -- fom.EmbeddingsMixin ---------------------------------------------------------------------------
    def embed_all(self, args) -> np.ndarray:
        batch = self._as_batch(args)
        if batch.pixel_values is None or any(error is not None for error in batch.errors):
            from fiftyone_ram.images import ImageError

            raise ImageError("; ".join(e for e in batch.errors if e is not None) or "no image")
        return run_session(self.session, batch.pixel_values.numpy())[1]

    # -- helpers ---------------------------------------------------------------------------------------
    def _as_batch(self, args) -> ImageBatch:
        if isinstance(args, ImageBatch):
            return args
        if isinstance(args, torch.Tensor):
            return ImageBatch(args, [None] * len(args))
        size = self.export.image_size
        if isinstance(args, np.ndarray) and args.ndim == 4 and args.shape[1:] == (3, size, size):
            return ImageBatch(torch.from_numpy(np.ascontiguousarray(args, np.float32)), [None] * len(args))
        if isinstance(args, np.ndarray) and args.ndim == 4:  # an NHWC stack of images
            args = list(args)
        if not self._preprocess:
            return collate_images(list(args))
        transform = self.transforms
        return collate_images([read_input(a, transform) for a in args])


def load_onnx_model(export_dir: str | Path, **kwargs: Any) -> OnnxRamModel:
    """An :class:`OnnxRamModel` of an export folder (keywords: :data:`CONFIG_KEYS`, as ``OnnxRamModelConfig``)."""
    unknown = sorted(set(kwargs) - set(CONFIG_KEYS) - {"filter_classes"})
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(CONFIG_KEYS)}")
    settings = {"export_dir": str(export_dir), **{k: v for k, v in kwargs.items() if v is not None}}
    return OnnxRamModel(OnnxRamModelConfig(settings))


__all__ = ["OnnxRamModel", "OnnxRamModelConfig", "load_onnx_model"]
