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

from collections.abc import Sequence
from typing import Any

import fiftyone.core.config as foc
import fiftyone.core.models as fom
import numpy as np
import torch

from fiftyone_ram.decision import check_threshold
from fiftyone_ram.errors import OptionError
from fiftyone_ram.fiftyone.inputs import ImageBatch, PixelTransform, TaggerGetItem, collate_images, read_input
from fiftyone_ram.fiftyone.outputs import OutputOptions, TagOutput, TagPredictor, tag_outputs
from fiftyone_ram.images import ImageError

#: Keys accepted by ``load_model`` / ``RamModelConfig`` (and so by ``foz.load_zoo_model(..., **kwargs)``): the
#: tagger's (FiftyOne's names for the fields of ``fiftyone_ram.tagger_spec.TaggerSpec``) and what the model does
#: with its scores. The vocabulary is ``vocabulary={...}``; ``load_model`` also takes its fields flat.
CONFIG_KEYS = ("model", "config", "family", "checkpoint_path", "tag_list", "tag_list_chinese", "thresholds",
               "tokenizer", "vocabulary", "device", "precision", "batch_size", "classes", "language",
               "confidence_thresh", "caption", "caption_options")


class RamModelConfig(foc.Config):
    """Settings of a :class:`RamModel` (JSON-serialisable, so ``fom.load_model`` can build one).

    The tagger (see ``fiftyone_ram.tagger_spec.TaggerSpec``, whose fields these are under FiftyOne's names):
    model: a released variant (``ram_plus_swin_large_14m``, ``ram_swin_large_14m``, ``tag2text_swin_14m``)
    config: an architecture JSON file or dict instead of (or overriding the sizes of) ``model``; with neither,
        the architecture is read from ``checkpoint_path``'s tensor shapes
    family: ``ram`` | ``ram_plus`` | ``tag2text`` when ``config`` does not say (read from the checkpoint's keys
        when neither does)
    checkpoint_path: the weights, or a model folder (fine-tuning's output); None downloads the released ones
        of ``model``
    tag_list, tag_list_chinese, thresholds, tokenizer: the checkpoint's own files (or lists)
    vocabulary: what to answer instead of the checkpoint's tags (``VocabularySpec``'s fields as a dict)
    device, precision, batch_size: how it runs (precision: ``auto`` | ``fp32`` | ``bf16`` | ``fp16`` | ``int8``)

    What the model does with the scores:
    classes: only score these tags (faster; their scores are the same as with the full list)
    language: ``en`` | ``zh`` label names
    confidence_thresh: one threshold for all tags instead of the per-class ones
    filter_classes: set by ``apply_model(classes=...)``: only emit these labels
    caption: Tag2Text only: also write a caption (beam search; slower), guided as upstream by the tags the
        per-class thresholds select
    caption_options: generation options for the caption (num_beams, max_length, min_length,
        repetition_penalty)
    """

    def __init__(self, d: dict[str, Any]) -> None:
        self.model = self.parse_string(d, "model", default=None)
        self.config = self.parse_raw(d, "config", default=None)
        self.family = self.parse_string(d, "family", default=None)
        self.checkpoint_path = self.parse_raw(d, "checkpoint_path", default=None)
        self.tag_list = self.parse_raw(d, "tag_list", default=None)
        self.tag_list_chinese = self.parse_raw(d, "tag_list_chinese", default=None)
        self.thresholds = self.parse_raw(d, "thresholds", default=None)
        self.tokenizer = self.parse_string(d, "tokenizer", default=None)
        self.vocabulary = self.parse_dict(d, "vocabulary", default=None)
        self.device = self.parse_string(d, "device", default=None)
        self.precision = self.parse_string(d, "precision", default=None)  # checked by load_tagger (one line)
        self.batch_size = self.parse_int(d, "batch_size", default=None)
        self.classes = self.parse_array(d, "classes", default=None)
        self.language = self.parse_categorical(d, "language", ["en", "zh"], default="en")
        self.confidence_thresh = self.parse_number(d, "confidence_thresh", default=None)
        self.filter_classes = self.parse_array(d, "filter_classes", default=None)
        self.caption = self.parse_bool(d, "caption", default=True)
        self.caption_options = self.parse_dict(d, "caption_options", default={})
        if self.model is None and self.config is None and self.checkpoint_path is None:
            raise OptionError("name a released model (model=...), give an architecture (config=...) or give a "
                              "checkpoint (checkpoint_path=...: its architecture is read from its shapes)")
        if self.confidence_thresh is not None:
            check_threshold(self.confidence_thresh, "confidence_thresh")

    @property
    def spec(self):
        """The tagger these settings load (a ``TaggerSpec``): the one translation between FiftyOne's names and
        the spec's."""
        from fiftyone_ram.models.registry import get_variant
        from fiftyone_ram.tagger_spec import TaggerSpec

        variant = get_variant(self.model) if self.model is not None else None
        checkpoint = self.checkpoint_path
        if checkpoint is None and self.config is not None and variant is not None:
            from fiftyone_ram import assets  # an architecture over a released model's weights

            checkpoint = assets.download_weights(variant.name)
        extra = {"batch_size": self.batch_size} if self.batch_size is not None else {}
        return TaggerSpec(
            model=self.config if self.config is not None else variant.name if variant is not None else None,
            checkpoint=checkpoint, family=self.family or (variant.family if variant is not None else None),
            tag_list=self.tag_list, tag_list_chinese=self.tag_list_chinese, thresholds=self.thresholds,
            tokenizer=self.tokenizer, vocabulary=self.vocabulary, precision=self.precision, device=self.device,
            **extra)

    @staticmethod
    def keys_of(spec) -> dict[str, Any]:
        """A ``TaggerSpec`` under this config's names (the other direction of :attr:`spec`)."""
        from fiftyone_ram.models.registry import is_variant

        values = spec.to_dict()
        out: dict[str, Any] = {}
        model = values.pop("model", None)
        if isinstance(model, str) and is_variant(model):
            out["model"] = model
        elif model is not None:
            out["config"] = model
        if "checkpoint" in values:
            out["checkpoint_path"] = values.pop("checkpoint")
        values.pop("caption_branch", None)
        out.update(values)
        return out


class ImageTaggerModel(fom.EmbeddingsMixin, fom.SupportsGetItem, fom.TorchModelMixin, fom.LogitsMixin, fom.Model):
    """What every tagger of the package is to ``apply_model``: an image model with logits and embeddings whose
    images are decoded in DataLoader workers (``build_get_item``) and batched by its own ``collate_fn``
    (subclasses give both, ``transforms`` for the inputs ``predict_all`` reads itself, and ``embed_all``; their
    ``predict_all`` keeps the batch's embeddings in ``_embeddings``)."""

    def __init__(self) -> None:
        fom.LogitsMixin.__init__(self)
        self._preprocess = True
        self._embeddings: np.ndarray | None = None

    @property
    def media_type(self) -> str:
        return "image"

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
    def has_collate_fn(self) -> bool:
        return True

    def get_embeddings(self) -> np.ndarray:
        """The embeddings of the last batch ``predict_all`` tagged."""
        if self._embeddings is None:
            raise ValueError("no embeddings yet: call predict() or predict_all() first")
        return self._embeddings

    def embed(self, arg) -> np.ndarray:
        return self.embed_all([arg])[0]

    def ray_predictor(self) -> TagPredictor | None:
        """What a Ray model actor runs instead of this model (None: the model itself, pickled)."""
        return None


class RamModel(ImageTaggerModel):
    """A tagger wrapped for FiftyOne: DataLoader batching with image decoding in the workers.

    Pickles without its weights when they can be loaded again from ``config`` (memory-mapped, so cheaply);
    ``build_get_item()`` and ``collate_fn`` carry only the image size.
    """

    def __init__(self, config: RamModelConfig, tagger=None) -> None:
        super().__init__()
        self.config = config
        self._tagger = tagger

    # -- the tagger, loaded on first use --------------------------------------------------------------
    @property
    def tagger(self):
        if self._tagger is None:
            self._tagger = _load_tagger(self.config)
        return self._tagger

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_embeddings"] = None
        if self.config.checkpoint_path is not None or self.config.model is not None:
            state["_tagger"] = None  # loaded again from its spec where it is unpickled
        return state

    # -- fom.Model -------------------------------------------------------------------------------------
    @property
    def ragged_batches(self) -> bool:
        return False  # every image is resized to the same square

    @property
    def transforms(self) -> PixelTransform:
        return PixelTransform(self.tagger.image_size)

    @property
    def has_embeddings(self) -> bool:
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
        readable input (for writers that store documents themselves: the tagging driver, the Ray executor)."""
        batch = self._as_batch(args)
        out, embeddings = tag_outputs(self.tagger, batch.pixel_values, list(batch.errors), self._output_options())
        if embeddings is not None:
            self._embeddings = embeddings
        return out

    def ray_predictor(self) -> TagPredictor | None:
        """What a Ray model actor runs instead of this model: the same predictions, without FiftyOne (seconds
        of each actor's start-up). The tagger travels as its spec, as this model pickles it; None (the actor
        runs this model) for an architecture over a released model's weights, whose spec would name this
        machine's download of them."""
        if self.config.checkpoint_path is None and self.config.config is not None:
            return None
        reloadable = self.config.checkpoint_path is not None or self.config.model is not None
        return TagPredictor(self.config.spec if reloadable else None, self._output_options(),
                            None if reloadable else self.tagger)

    def _output_options(self) -> OutputOptions:
        config = self.config
        return OutputOptions(classes=config.classes, language=config.language,
                             confidence_thresh=config.confidence_thresh, filter_classes=config.filter_classes,
                             caption=config.caption, caption_options=config.caption_options,
                             store_logits=bool(self.store_logits))

    # -- fom.EmbeddingsMixin ---------------------------------------------------------------------------
    def embed_all(self, args) -> np.ndarray:
        """The tagger's image embeddings (B, D). An unreadable image raises :class:`ImageError`, as FiftyOne's own
        models do: ``compute_embeddings(skip_failures=True)`` then leaves that batch without embeddings and says
        which file failed (use ``batch_size=1`` to lose only the unreadable images)."""
        batch = self._as_batch(args)
        bad = [error for error in batch.errors if error is not None]
        if bad:
            raise ImageError("; ".join(bad))
        return self.tagger.embed(batch.pixel_values)

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


def _load_tagger(config: RamModelConfig):
    from fiftyone_ram.tagger import load_tagger

    return load_tagger(config.spec)


def load_model(**kwargs: Any) -> RamModel:
    """A :class:`RamModel` from :class:`RamModelConfig` keywords, loaded now so that bad paths, unknown tags
    or a missing Chinese tag list fail here rather than in the middle of ``apply_model``.

    ``threshold`` is accepted as another name of ``confidence_thresh``; the vocabulary's fields
    (``tags``, ``descriptions``, ...: ``VocabularySpec``) may be given flat, as the zoo passes them.
    """
    from fiftyone_ram.vocabulary import VocabularySpec

    if "threshold" in kwargs:
        value = kwargs.pop("threshold")
        if kwargs.get("confidence_thresh") is None:
            kwargs["confidence_thresh"] = value
    flat = {k: kwargs.pop(k) for k in VocabularySpec.names() if k in kwargs}
    if flat:
        if kwargs.get("vocabulary"):
            raise OptionError("give the vocabulary as vocabulary={...} or as its options, not both")
        kwargs["vocabulary"] = flat
    unknown = sorted(set(kwargs) - set(CONFIG_KEYS) - {"filter_classes"})
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(CONFIG_KEYS)} and the "
                        f"vocabulary's {', '.join(VocabularySpec.names())}")
    if kwargs.get("vocabulary") is not None:
        spec = VocabularySpec.of(kwargs["vocabulary"])
        kwargs["vocabulary"] = spec.to_dict() if spec is not None else None
    settings = {k: _plain(v) for k, v in kwargs.items() if v is not None}
    model = RamModel(RamModelConfig(settings))
    tagger = model.tagger
    tagger.class_indices(model.config.classes)  # unknown tags in `classes` raise here
    tagger.names(model.config.language)  # so does language="zh" without Chinese names
    return model


def from_tagger(tagger, **kwargs: Any) -> RamModel:
    """Wrap an already loaded ``Tagger`` (``kwargs``: what the model does with its scores: ``classes``,
    ``language``, ``confidence_thresh``, ``caption``...). Pickled to spawned workers, it is loaded there again
    from its spec, without copying the weights; a tagger built in memory travels whole."""
    spec = getattr(tagger, "spec", None)
    keys = RamModelConfig.keys_of(spec) if spec is not None and spec.portable else {
        "config": tagger.config.to_dict(), "family": tagger.family, "precision": tagger.precision}
    config = RamModelConfig({**keys, **{k: _plain(v) for k, v in kwargs.items() if v is not None}})
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


__all__: Sequence[str] = ("ImageTaggerModel", "RamModel", "RamModelConfig", "load_model", "from_tagger", "CONFIG_KEYS")
