"""RAM, RAM++ and Tag2Text as a FiftyOne ``Model``: ``apply_model``, ``compute_embeddings`` and the zoo.

What ends up in the label field (``fo.Classifications``):

* one ``Classification`` per predicted tag: ``label`` (English, or Chinese with ``language="zh"``),
  ``confidence`` = sigmoid score, attribute ``threshold`` = the threshold that admitted it;
* ``logits`` over the scored tags (all, or the ``classes`` subset, in that order) with ``store_logits``;
* Tag2Text: the caption as the container's dynamic attribute ``caption`` (``<field>.caption``).

Thresholds: by default each tag has its own threshold (upstream's per-class file), so results equal
``Tagger.predict``. A number, ``confidence_thresh`` (from ``apply_model(confidence_thresh=...)`` or the
config), replaces all per-class thresholds with that single value; it is not combined with them.

An image that cannot be read yields ``{"error": message}`` instead of labels, which ``apply_model`` stores
as the string field ``<label_field>_error`` and leaves ``<label_field>`` untouched; the other images of the
batch are tagged normally.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import fiftyone.core.config as foc
import fiftyone.core.models as fom
import numpy as np
import torch

from fiftyone_ram.decision import check_threshold
from fiftyone_ram.errors import OptionError
from fiftyone_ram.fiftyone.inputs import ImageBatch, PixelTransform, TaggerGetItem, collate_images, read_input
from fiftyone_ram.fiftyone.outputs import TagOutput, decide_outputs, tag_thresholds
from fiftyone_ram.images import ImageError

#: The vocabulary options of ``load_tagger`` (see ``fiftyone_ram.vocabulary.build_vocabulary``).
VOCABULARY_KEYS = ("tags", "descriptions", "keep_builtin", "new_tag_threshold", "tag_thresholds", "text_encoder",
                   "templates")

#: Keys accepted by ``load_model`` / ``RamModelConfig`` (and so by ``foz.load_zoo_model(..., **kwargs)``).
CONFIG_KEYS = ("model", "config", "family", "checkpoint_path", "tag_list", "tag_list_chinese", "thresholds",
               "classes", "language", "confidence_thresh", "device", "precision", "caption", "caption_options",
               "tokenizer", *VOCABULARY_KEYS)


class RamModelConfig(foc.Config):
    """Settings of a :class:`RamModel` (JSON-serialisable, so ``fom.load_model`` can build one).

    model: a released variant (``ram_plus_swin_large_14m``, ``ram_swin_large_14m``, ``tag2text_swin_14m``)
    config: an architecture JSON file or dict instead of (or overriding the sizes of) ``model``; with neither,
        the architecture is read from ``checkpoint_path``'s tensor shapes
    family: ``ram`` | ``ram_plus`` | ``tag2text`` when ``config`` does not say (read from the checkpoint's keys
        when neither does)
    checkpoint_path: the weights, or a model folder (fine-tuning's output); None downloads the released ones
        of ``model``
    tokenizer: Tag2Text: the captioner's vocab.txt when it is not bert-base-uncased's
    tag_list, tag_list_chinese, thresholds: files (or lists) replacing upstream's
    classes: only score these tags (faster; their scores are the same as with the full list)
    language: ``en`` | ``zh`` label names
    confidence_thresh: one threshold for all tags instead of the per-class ones
    filter_classes: set by ``apply_model(classes=...)``: only emit these labels
    device: ``cpu``, ``cuda``, ``cuda:1``...; None picks CUDA when available
    precision: ``auto`` | ``fp32`` | ``bf16`` | ``fp16`` | ``int8`` (see ``load_tagger``); None: the default
    caption: Tag2Text only: also write a caption (beam search, one image at a time; slower), guided as
        upstream by the tags the per-class thresholds select
    caption_options: generation options for the caption (num_beams, max_length, min_length,
        repetition_penalty)
    tags: the vocabulary to answer (a list, or a file with one tag per line): the model's own tags are
        selected, new ones (RAM, RAM++) embedded with CLIP, once (cached)
    descriptions: RAM++: a JSON file of tag descriptions in upstream's format (the vocabulary when no tags)
    keep_builtin: the model's own tags plus ``tags``
    new_tag_threshold: threshold of new tags (default 0.5, upstream's open set)
    tag_thresholds: ``{tag: threshold}`` overrides, any tag
    text_encoder: the CLIP text model for new tags (hub name or folder; default openai/clip-vit-base-patch16)
    templates: prompt templates for new tags instead of upstream's 63
    """

    def __init__(self, d: dict[str, Any]) -> None:
        self.model = self.parse_string(d, "model", default=None)
        self.config = self.parse_raw(d, "config", default=None)
        self.family = self.parse_string(d, "family", default=None)
        self.checkpoint_path = self.parse_raw(d, "checkpoint_path", default=None)
        self.tag_list = self.parse_raw(d, "tag_list", default=None)
        self.tag_list_chinese = self.parse_raw(d, "tag_list_chinese", default=None)
        self.thresholds = self.parse_raw(d, "thresholds", default=None)
        self.classes = self.parse_array(d, "classes", default=None)
        self.language = self.parse_categorical(d, "language", ["en", "zh"], default="en")
        self.confidence_thresh = self.parse_number(d, "confidence_thresh", default=None)
        self.filter_classes = self.parse_array(d, "filter_classes", default=None)
        self.device = self.parse_string(d, "device", default=None)
        self.precision = self.parse_string(d, "precision", default=None)  # checked by load_tagger (one line)
        self.caption = self.parse_bool(d, "caption", default=True)
        self.caption_options = self.parse_dict(d, "caption_options", default={})
        self.tags = self.parse_raw(d, "tags", default=None)
        self.descriptions = self.parse_raw(d, "descriptions", default=None)
        self.keep_builtin = self.parse_bool(d, "keep_builtin", default=False)
        self.new_tag_threshold = self.parse_number(d, "new_tag_threshold", default=None)
        self.tag_thresholds = self.parse_dict(d, "tag_thresholds", default=None)
        self.text_encoder = self.parse_string(d, "text_encoder", default=None)
        self.templates = self.parse_array(d, "templates", default=None)
        self.tokenizer = self.parse_string(d, "tokenizer", default=None)
        if self.model is None and self.config is None and self.checkpoint_path is None:
            raise OptionError("name a released model (model=...), give an architecture (config=...) or give a "
                              "checkpoint (checkpoint_path=...: its architecture is read from its shapes)")
        if self.confidence_thresh is not None:
            check_threshold(self.confidence_thresh, "confidence_thresh")


class RamModel(fom.SupportsGetItem, fom.TorchModelMixin, fom.LogitsMixin, fom.EmbeddingsMixin, fom.Model):
    """A tagger wrapped for FiftyOne: DataLoader batching with image decoding in the workers.

    Pickles without its weights when they can be re-read from ``config`` (memory-mapped, so cheaply);
    ``build_get_item()`` and ``collate_fn`` carry only the image size.
    """

    def __init__(self, config: RamModelConfig, tagger=None) -> None:
        fom.LogitsMixin.__init__(self)
        self.config = config
        self._tagger = tagger
        self._preprocess = True
        self._embeddings: np.ndarray | None = None

    # -- the tagger, loaded on first use --------------------------------------------------------------
    @property
    def tagger(self):
        if self._tagger is None:
            self._tagger = _load_tagger(self.config)
        return self._tagger

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_embeddings"] = None
        state.pop("_contexts", None)
        if self.config.checkpoint_path is not None or self.config.model is not None:
            state["_tagger"] = None  # re-read from the checkpoint where it is unpickled
        return state

    # -- fom.Model -------------------------------------------------------------------------------------
    def __enter__(self) -> RamModel:
        """``apply_model`` runs inside the model's context: the run's heap is kept out of the garbage
        collector's scans (:func:`fiftyone_ram.scheduling.frozen_heap`)."""
        from fiftyone_ram.scheduling import frozen_heap

        context = frozen_heap()
        context.__enter__()
        self.__dict__.setdefault("_contexts", []).append(context)
        return self

    def __exit__(self, *exc_info) -> None:
        contexts = self.__dict__.get("_contexts")
        if contexts:
            contexts.pop().__exit__(*exc_info)

    @property
    def media_type(self) -> str:
        return "image"

    @property
    def ragged_batches(self) -> bool:
        return False  # every image is resized to the same square

    @property
    def transforms(self) -> PixelTransform:
        return PixelTransform(self.tagger.image_size)

    @property
    def preprocess(self) -> bool:
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        self._preprocess = value

    @property
    def has_logits(self) -> bool:
        return True

    @property
    def has_embeddings(self) -> bool:
        return True

    @property
    def has_collate_fn(self) -> bool:
        return True

    collate_fn = staticmethod(collate_images)

    @property
    def _using_gpu(self) -> bool:  # read by apply_model(pin_memory=True)
        return self.tagger.device.type in ("cuda", "mps")

    def build_get_item(self, field_mapping: dict[str, str] | None = None) -> TaggerGetItem:
        return TaggerGetItem(self.tagger.image_size, field_mapping=field_mapping)

    def predict(self, arg):
        return self.predict_all([arg])[0]

    def predict_all(self, args) -> list:
        """Labels per input: a ``Classifications``, or ``{"error": message}`` for an unreadable image.

        ``args``: a collated :class:`ImageBatch` (DataLoader), a (B, 3, S, S) tensor of preprocessed
        pixels, or a list of paths / PIL images / HWC arrays.
        """
        return [output.to_label() if isinstance(output, TagOutput) else output
                for output in self.predict_outputs(args)]

    def predict_outputs(self, args) -> list[TagOutput | dict[str, str]]:
        """What :meth:`predict_all` returns before the label objects are built: a :class:`TagOutput` per
        readable input (for writers that store documents themselves: the tagging driver, the Ray engine)."""
        batch = self._as_batch(args)
        out: list = [{"error": error} for error in batch.errors]
        if batch.pixel_values is None:
            return out
        tagger = self.tagger
        (tagged,) = tagger.iter_batches(batch.pixel_values, tags=self.config.classes,
                                        caption=self.config.caption and tagger.can_caption,
                                        caption_options=self.config.caption_options)
        self._embeddings = tagged.embeddings
        limits = tag_thresholds(tagger.thresholds, tagged.indices, self.config.confidence_thresh)
        outputs = decide_outputs(
            tagged.probabilities, tagged.indices, limits, tagger.names(self.config.language), tagger.excluded,
            logits=tagged.logits if self.store_logits else None, captions=tagged.captions,
            keep_names=set(self.config.filter_classes) if self.config.filter_classes is not None else None)
        for position, output in zip(batch.readable, outputs, strict=True):
            out[position] = output
        return out

    # -- fom.EmbeddingsMixin ---------------------------------------------------------------------------
    def get_embeddings(self) -> np.ndarray:
        if self._embeddings is None:
            raise ValueError("no embeddings yet: call predict() or predict_all() first")
        return self._embeddings

    def embed(self, arg) -> np.ndarray:
        return self.embed_all([arg])[0]

    def embed_all(self, args) -> np.ndarray | list[np.ndarray | None]:
        """The tagger's image embeddings (B, D).

        An unreadable image costs only its own embedding when ``compute_embeddings`` stores them in a field
        with ``skip_failures=True`` (the default): the result is then a list with None in its place, which
        FiftyOne 1.22 stores per sample. Anywhere else (the returned array, ``skip_failures=False``, a direct
        call) an unreadable image raises :class:`ImageError`, as FiftyOne's own models do: its returned
        embeddings are ``np.stack``-ed, which a None would break, and ``skip_failures=False`` asks for an error.
        """
        batch = self._as_batch(args)
        bad = [error for error in batch.errors if error is not None]
        if not bad:
            return self.tagger.embed(batch.pixel_values)
        if not _storing_embeddings_per_sample():
            raise ImageError("; ".join(bad))
        rows = iter(self.tagger.embed(batch.pixel_values) if batch.pixel_values is not None else [])
        return [next(rows) if error is None else None for error in batch.errors]

    # -- helpers ---------------------------------------------------------------------------------------
    def _as_batch(self, args) -> ImageBatch:
        if isinstance(args, ImageBatch):
            return args
        if isinstance(args, torch.Tensor):  # pixels already prepared: (B, 3, S, S)
            return ImageBatch(args, [None] * len(args))
        if isinstance(args, np.ndarray) and args.ndim == 4:  # an NHWC stack of images
            args = list(args)
        if not self._preprocess:  # items prepared elsewhere with self.transforms
            return collate_images(list(args))
        transform = self.transforms
        return collate_images([read_input(a, transform) for a in args])


def _storing_embeddings_per_sample() -> bool:
    """Whether the caller is FiftyOne 1.22's ``compute_embeddings`` loop storing into a field and skipping
    failures (``_compute_image_embeddings_data_loader`` / ``_batch``: it stores ``list(model.embed_all(imgs))``
    item by item). Read from the caller's frame: FiftyOne passes the model no other sign of it."""
    import sys

    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name.startswith("_compute_image_embeddings") and code.co_filename.endswith(
                f"fiftyone{os.sep}core{os.sep}models.py"):
            return frame.f_locals.get("embeddings_field") is not None and bool(frame.f_locals.get("skip_failures"))
        frame = frame.f_back
    return False


def _load_tagger(config: RamModelConfig):
    from fiftyone_ram.models.registry import get_variant
    from fiftyone_ram.tagger import load_tagger

    variant = get_variant(config.model) if config.model is not None else None
    family = config.family or (variant.family if variant is not None else None)
    source = config.config if config.config is not None else variant.name if variant is not None else None
    checkpoint = config.checkpoint_path
    if checkpoint is None and config.config is not None and variant is not None:
        from fiftyone_ram import assets

        checkpoint = assets.download_weights(variant.name)
    return load_tagger(source, checkpoint, tag_list=config.tag_list, tag_list_chinese=config.tag_list_chinese,
                       thresholds=config.thresholds, device=config.device, family=family,
                       precision=config.precision, tokenizer=config.tokenizer,
                       **{key: getattr(config, key) for key in VOCABULARY_KEYS})


def load_model(**kwargs: Any) -> RamModel:
    """A :class:`RamModel` from :class:`RamModelConfig` keywords, loaded now so that bad paths, unknown tags
    or a missing Chinese tag list fail here rather than in the middle of ``apply_model``.

    ``threshold`` is accepted as another name of ``confidence_thresh``.
    """
    if "threshold" in kwargs:
        value = kwargs.pop("threshold")
        if kwargs.get("confidence_thresh") is None:
            kwargs["confidence_thresh"] = value
    unknown = sorted(set(kwargs) - set(CONFIG_KEYS) - {"filter_classes"})
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(CONFIG_KEYS)}")
    settings = {k: _plain(v) for k, v in kwargs.items() if v is not None}
    model = RamModel(RamModelConfig(settings))
    tagger = model.tagger
    tagger.class_indices(model.config.classes)  # unknown tags in `classes` raise here
    tagger.names(model.config.language)  # so does language="zh" without Chinese names
    return model


def from_tagger(tagger, **kwargs: Any) -> RamModel:
    """Wrap an already loaded ``Tagger``. Give ``checkpoint_path`` (and ``config``/``model``) too if the model
    must be pickled to spawned workers without copying the weights."""
    config = RamModelConfig({"config": tagger.config.to_dict(), "family": tagger.family,
                             "precision": getattr(tagger, "precision", None),  # a re-read tagger runs the same
                             **{k: _plain(v) for k, v in kwargs.items() if v is not None}})
    return RamModel(config, tagger=tagger)


def _plain(value: Any) -> Any:
    """Paths and arrays to JSON-friendly values (the config is serialisable)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


__all__: Sequence[str] = ("RamModel", "RamModelConfig", "load_model", "from_tagger", "CONFIG_KEYS")
