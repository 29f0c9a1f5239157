"""The public tagging API: ``load_tagger`` and the ``Tagger`` it returns."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fiftyone_ram import assets
from fiftyone_ram.decision import check_threshold, decide
from fiftyone_ram.errors import OptionError
from fiftyone_ram.images import ImageError, ImageInput, preprocess, read_pixel_values
from fiftyone_ram.model_folder import find_model_folder
from fiftyone_ram.models.base import TaggerModel
from fiftyone_ram.models.config import ModelConfig
from fiftyone_ram.models.factory import model_from_checkpoint
from fiftyone_ram.models.precision import autocast, set_precision
from fiftyone_ram.models.registry import (
    FALLBACK_THRESHOLD,
    LabelSet,
    labels_for,
    resolve_config,
    tag_list_signature,
)
from fiftyone_ram.scheduling import prefetch
from fiftyone_ram.tagger_spec import TaggerSpec
from fiftyone_ram.tag_files import TagFileError, check_tag_names, read_tag_list, read_thresholds
from fiftyone_ram.upstream import CAPTION_PROMPT

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.vocabulary import Vocabulary


Prediction = list[tuple[str, float]]
Images = Sequence[ImageInput] | ImageInput | torch.Tensor


@dataclass
class TaggedBatch:
    """What :meth:`Tagger.iter_batches` gives per batch. Row i of the arrays is input ``positions[i]``;
    columns are the asked tags, at tag-list positions ``indices``."""

    positions: list[int]  # input positions of the readable images
    indices: np.ndarray  # (K,) tag-list positions of the columns
    logits: np.ndarray  # (n, K) float32
    probabilities: np.ndarray  # (n, K) float32, sigmoid of the logits
    embeddings: np.ndarray  # (n, D) float32, see Tagger.embed
    errors: dict[int, str]  # input position -> why that image could not be read
    captions: list[str] | None = None  # Tag2Text, when asked
    caption_ids: list[list[int]] | None = None  # their token ids, prompt included

    def raise_errors(self) -> None:
        """For callers that take no unreadable image: the first one's reason as an :class:`ImageError`."""
        if self.errors:
            raise ImageError(self.errors[min(self.errors)])


class Tagger:
    """A loaded tagger. Scores of a tag never depend on which other tags are asked for, so ``tags=`` subsets
    give the same numbers as the full vocabulary, faster."""

    #: The custom vocabulary this tagger answers (see ``with_vocabulary``); None: the checkpoint's tags.
    vocabulary: Vocabulary | None = None
    #: What the weights were read from (set by ``load_tagger``): tagging runs record it with their labels.
    checkpoint: assets.CheckpointIdentity | None = None
    #: How to load this tagger again (set by ``load_tagger``; None for a tagger built in memory).
    spec: TaggerSpec | None = None

    def __init__(self, model: TaggerModel, config: ModelConfig, tag_list: list[str], thresholds: np.ndarray,
                 *, tag_list_chinese: list[str] | Callable[[], list[str] | None] | None = None,
                 excluded: Sequence[int] = (), device: torch.device | str = "cpu", batch_size: int = 4,
                 precision: str = "fp32") -> None:
        """``tag_list_chinese`` may be a function, called on the first Chinese request (the file may need a
        download that an English-only user should not depend on). ``precision``: what the model was prepared
        for (``fiftyone_ram.models.precision.set_precision``); ``load_tagger`` resolves and applies it."""
        self.model = model.to(device)
        #: "fp32", "bf16", "fp16" or "int8": the resolved precision (never "auto"); tagging runs record it.
        self.precision = precision
        self.config = config
        self.tag_list = tag_list
        self.thresholds = thresholds
        self._chinese = tag_list_chinese
        self.excluded = np.zeros(len(tag_list), dtype=bool)
        self.excluded[list(excluded)] = True
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._index = {name: i for i, name in reversed(list(enumerate(tag_list)))}  # first of duplicates
        self._tokenizer = None
        self._seen_shapes: set[tuple] = set()

    # -- facts ----------------------------------------------------------------------------------------
    @property
    def tag_list_chinese(self) -> list[str] | None:
        if callable(self._chinese):
            names = self._chinese()
            if names is not None and len(names) != len(self.tag_list):
                raise TagFileError(f"the Chinese tag list has {len(names)} names, the tag list {len(self.tag_list)}")
            self._chinese = names
        return self._chinese

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def embedding_dim(self) -> int:
        return self.config.embed_dim if self.family != "tag2text" else self.config.swin.num_features

    @property
    def can_caption(self) -> bool:
        return self.family == "tag2text" and getattr(self.model, "can_caption", False)

    def class_indices(self, tags: Sequence[str] | None) -> np.ndarray:
        """Positions of the given tag names in the tag list (all tags when None)."""
        if tags is None:
            return np.arange(len(self.tag_list))
        unknown = [t for t in tags if t not in self._index]
        if unknown:
            shown = ", ".join(repr(t) for t in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise OptionError(f"{len(unknown)} tag(s) are not in this tagger's vocabulary: {shown}")
        return np.asarray([self._index[t] for t in tags], dtype=np.int64)

    def with_vocabulary(self, vocabulary: Vocabulary) -> Tagger:
        """A tagger answering ``vocabulary`` (from ``fiftyone_ram.vocabulary.build_vocabulary(self, ...)``).

        Every weight is shared with this tagger, which is left unchanged; only the label queries differ.
        """
        if vocabulary.family != self.family:
            raise ValueError(f"a {vocabulary.family} vocabulary cannot be used by a {self.family} tagger")
        if vocabulary.base_signature != tag_list_signature(self.tag_list):
            raise ValueError("this vocabulary was built for a tagger with another tag list")
        builtin = vocabulary.builtin_index
        if vocabulary.is_builtin_only:
            model = self.model.select_classes(torch.as_tensor(builtin))
        else:
            model = self.model.with_label_queries(*vocabulary.label_queries(*self.model.label_queries()))

        def chinese() -> list[str] | None:  # new tags have no Chinese name: their English name stands in
            base = self.tag_list_chinese
            return None if base is None else [base[i] if i >= 0 else name for name, i in zip(vocabulary.names, builtin)]

        excluded = [c for c, i in enumerate(builtin) if i >= 0 and self.excluded[i]]
        tagger = Tagger(model, self.config, list(vocabulary.names), vocabulary.thresholds, tag_list_chinese=chinese,
                        excluded=excluded, device=self.device, batch_size=self.batch_size, precision=self.precision)
        tagger.vocabulary = vocabulary
        tagger.checkpoint = self.checkpoint
        if self.spec is not None:  # reloadable only when the vocabulary's inputs are known
            tagger.spec = self.spec.replace(vocabulary=vocabulary.spec) if vocabulary.spec is not None else None
        tagger._tokenizer = self._tokenizer
        tagger.compiled = self.compiled  # the model (compiled or not) is shared
        return tagger

    def at_precision(self, precision: str | None = None, *,
                     calibration: Sequence[ImageInput] | None = None) -> Tagger:
        """This fp32 tagger's current weights at ``precision`` (None: the default, as ``load_tagger``), as a new
        tagger sharing them; this one is left as it is (fine-tuning validates the weights it trains at the
        precision they will tag at). ``int8`` is calibrated as ``load_tagger`` does (the default images, or
        ``calibration``), never from the cache: the weights are not a checkpoint's."""
        from fiftyone_ram.hardware import resolve_precision
        from fiftyone_ram.models.precision import reduced_copy

        resolved = resolve_precision(precision, self.device)
        if resolved == self.precision:
            return self
        if self.precision != "fp32":
            raise ValueError(f"only an fp32 tagger can be run at another precision, not a {self.precision} one")
        ranges = _int8_ranges(self.model, self.config, None, calibration) if resolved == "int8" else None
        tagger = Tagger(reduced_copy(self.model, resolved, ranges), self.config, self.tag_list, self.thresholds,
                        tag_list_chinese=self._chinese, excluded=np.flatnonzero(self.excluded), device=self.device,
                        batch_size=self.batch_size, precision=resolved)
        tagger.vocabulary, tagger.checkpoint, tagger._tokenizer = self.vocabulary, self.checkpoint, self._tokenizer
        tagger.spec = None if self.spec is None else self.spec.replace(precision=resolved)
        return tagger

    # -- the tagging loop -------------------------------------------------------------------------------
    def iter_batches(self, images: Images, *, tags: Sequence[str] | None = None, caption: bool = False,
                     caption_options: Mapping[str, Any] | None = None,
                     caption_tags: str | Sequence[str] | None = None,
                     batch_size: int | None = None) -> Iterator[TaggedBatch]:
        """Score ``images`` ``batch_size`` at a time (default: the tagger's ``batch_size``): every way of
        tagging goes through here.

        ``images``: paths, PIL images or HWC arrays (one, or a sequence), or a preprocessed (B, 3, S, S)
        tensor (one batch). ``tags``: the columns (default: the whole tag list; ``[]``: embeddings only,
        the tagging head is skipped). Each image goes through the backbone once, for its scores, its
        embedding and, with ``caption`` (Tag2Text), its caption: guided as upstream by the tags the
        per-class thresholds select over the whole tag list, or by ``caption_tags`` (one "a | b" string or
        list per image, or one for all). ``caption_options``: num_beams=3, max_length=30, min_length=10,
        repetition_penalty=1.0. An unreadable image does not stop the loop: it is in the batch's ``errors``.
        """
        indices = self.class_indices(tags)
        classes = None if tags is None else torch.as_tensor(indices, device=self.device)
        if caption and not self.can_caption:
            raise ValueError(f"captions need a Tag2Text checkpoint with its captioning branch, not {self.family}")
        if caption_tags is not None and not caption:
            raise TypeError("caption_tags guide captions: pass caption=True as well")
        options = dict(caption_options or {})
        if isinstance(images, torch.Tensor):
            given = _tags_per_image(caption_tags, len(images))
            yield self._score(images, list(range(len(images))), {}, indices, classes, caption, options, given)
            return
        if isinstance(images, (str, Path)) or not isinstance(images, Sequence):
            images = [images]
        given = _tags_per_image(caption_tags, len(images))
        size = max(int(batch_size or self.batch_size), 1)
        decoded = (self._decode(images, start, min(start + size, len(images))) for start in range(0, len(images), size))
        # The next batch is decoded in a thread while the model runs this one (decoding costs milliseconds per
        # image next to the model's hundreds; the model keeps every core).
        for pixels, positions, errors in prefetch(decoded):
            yield self._score(pixels, positions, errors, indices, classes, caption, options,
                              None if given is None else [given[p] for p in positions])

    def _decode(self, images: Sequence[ImageInput], start: int, stop: int
                ) -> tuple[torch.Tensor | None, list[int], dict[int, str]]:
        """Pixels of ``images[start:stop]`` that can be read (pinned for a GPU), their positions, and why the
        others cannot."""
        pixels, positions, errors = [], [], {}
        for position in range(start, stop):
            try:
                pixels.append(read_pixel_values(images[position], self.image_size))
                positions.append(position)
            except ImageError as exc:
                errors[position] = str(exc)
        batch = torch.stack(pixels) if pixels else None
        if batch is not None and self.device.type == "cuda":
            batch = batch.pin_memory()  # lets the copy to the device run asynchronously
        return batch, positions, errors

    @torch.inference_mode()
    def _score(self, pixels: torch.Tensor | None, positions: list[int], errors: dict[int, str],
               indices: np.ndarray, classes: torch.Tensor | None, caption: bool, options: dict[str, Any],
               guidance: list[str] | None) -> TaggedBatch:
        """One batch: the backbone once, then the tagging head, the embedding and the captioner on its tokens."""
        if pixels is None:
            return TaggedBatch([], indices, np.zeros((0, len(indices)), np.float32),
                               np.zeros((0, len(indices)), np.float32), np.zeros((0, self.embedding_dim), np.float32),
                               errors, [] if caption else None, [] if caption else None)
        shape = (tuple(pixels.shape), None if classes is None else len(classes))
        first = self.compiled and shape not in self._seen_shapes
        started = time.perf_counter()
        with autocast(self.model, self.device):
            embeds = self.model.image_embeds(pixels.to(self.device, self._dtype, non_blocking=True))
            logits = self.model.logits(embeds, classes).float() if len(indices) else None
            embedding = self.model.image_embedding(embeds).float()
        if first:  # a compiled tagger's first batch of this shape: mostly compilation
            self._seen_shapes.add(shape)
            self.compile_seconds += time.perf_counter() - started
        logits = logits.cpu() if logits is not None else torch.zeros(len(pixels), 0)
        probs = torch.sigmoid(logits).numpy()
        batch = TaggedBatch(positions, indices, logits.numpy(), probs, embedding.cpu().numpy(), errors)
        if caption:
            from fiftyone_ram.models.captioner import generate_caption_ids

            if guidance is None:
                if classes is None:
                    full = probs
                else:
                    with autocast(self.model, self.device):
                        full = torch.sigmoid(self.model.logits(embeds).float().cpu()).numpy()
                guidance = [" | ".join(name for name, _ in row) for row in self.decide(full, self.class_indices(None))]
            # beam search runs in fp32 on fp32 weights (the captioner is never reduced)
            batch.caption_ids = generate_caption_ids(self.model, self.tokenizer, embeds.float(), guidance, **options)
            prompt = options.get("prompt", CAPTION_PROMPT)
            batch.captions = [self.tokenizer.decode(ids, skip_special_tokens=True)[len(prompt):]
                              for ids in batch.caption_ids]
        return batch

    def decide(self, probs: np.ndarray, indices: np.ndarray, *, threshold: float | None = None,
               language: str = "en") -> list[Prediction]:
        """Turn scores over ``indices`` of the tag list into per-image predictions (see
        :func:`fiftyone_ram.decision.decide`: strictly above the threshold, excluded tags never, tag-list order)."""
        names = self.names(language)
        limits = self.thresholds[indices] if threshold is None else check_threshold(threshold)
        rows = decide(probs, limits, indices=indices, excluded=self.excluded)
        return [[(names[indices[j]], float(row[j])) for j in columns] for row, columns in zip(probs, rows)]

    # -- computing --------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        return preprocess(images, self.image_size)

    def forward(self, pixel_values: torch.Tensor, tags: Sequence[str] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and image embeddings (B, D) of a preprocessed batch, on the CPU in float32."""
        (batch,) = self.iter_batches(pixel_values, tags=tags)
        return torch.from_numpy(batch.logits), torch.from_numpy(batch.embeddings)

    def logits(self, pixel_values: torch.Tensor, tags: Sequence[str] | None = None) -> torch.Tensor:
        return self.forward(pixel_values, tags)[0]

    def probabilities(self, images: Images, tags: Sequence[str] | None = None) -> np.ndarray:
        """Sigmoid scores (B, C); columns follow ``tags`` when given, else the tag list."""
        return np.concatenate([b.probabilities for b in self._readable(self.iter_batches(images, tags=tags))])

    def predict(self, images: Images, threshold: float | None = None, tags: Sequence[str] | None = None,
                language: str = "en") -> list[Prediction]:
        """Per image, ``(tag, probability)`` for the tags above threshold, in tag-list order.

        Per-class thresholds apply by default; a number overrides them all. A tag is predicted when its
        probability is strictly above its threshold, as upstream's ``generate_tag``.
        """
        self.names(language)  # an unavailable language fails before any image is read
        return [prediction for batch in self._readable(self.iter_batches(images, tags=tags))
                for prediction in self.decide(batch.probabilities, batch.indices, threshold=threshold,
                                              language=language)]

    def names(self, language: str = "en") -> list[str]:
        if language == "en":
            return self.tag_list
        if language == "zh":
            if self.tag_list_chinese is None:
                raise OptionError(f"no Chinese tag names for this {self.family} tagger: pass tag_list_chinese= "
                                  f"(CLI: --tag-list-chinese)")
            return self.tag_list_chinese
        raise OptionError(f"unknown language {language!r}; expected 'en' or 'zh'")

    def embed(self, images: Images) -> np.ndarray:
        """Image embeddings (B, D): RAM/RAM++'s 512-d projected mean token (CLIP-aligned by upstream's
        distillation), Tag2Text's Swin-B mean token."""
        return np.concatenate([b.embeddings for b in self._readable(self.iter_batches(images, tags=[]))])

    def compile(self, **options: Any) -> Tagger:
        """``torch.compile`` the image encoder and the tagging head in place; returns the tagger.

        The encoder's ``forward_features`` (what the tagger calls) and the head's ``forward`` are compiled, so the
        state dict keeps its keys. Each new input shape compiles on its first batch (the second new one compiles
        a graph with a dynamic batch axis); :attr:`compile_seconds` adds up the time those batches took. Inductor
        caches compiled code where torch's settings say (``$TORCHINDUCTOR_CACHE_DIR``): this process's settings
        are the caller's, not changed here. ``options`` go to ``torch.compile``. A half precision on a CPU
        running AVX2 kernels is refused (``hardware.check_compile``).
        """
        from fiftyone_ram.hardware import check_compile

        check_compile(self.precision, self.device)
        encoder = self.model.visual_encoder
        encoder.forward_features = torch.compile(encoder.forward_features, **options)
        self.model.tagging_head.compile(**options)
        self.compiled = True
        return self

    #: Whether :meth:`compile` was called; and the seconds its first batches of each shape took so far.
    compiled: bool = False
    compile_seconds: float = 0.0

    # -- captions (Tag2Text) ----------------------------------------------------------------------------
    def caption(self, images: Images, tags: str | Sequence[str] | None = None, **generation) -> list[str]:
        """Captions guided by the predicted tags, or by ``tags`` (one string "a | b" or list per image, or
        one for all). Generation options: num_beams=3, max_length=30, min_length=10, repetition_penalty=1.0."""
        return [text for batch in self._captioned(images, tags, generation) for text in batch.captions]

    def caption_ids(self, images: Images, tags: str | Sequence[str] | None = None, **generation) -> list[list[int]]:
        return [ids for batch in self._captioned(images, tags, generation) for ids in batch.caption_ids]

    def _captioned(self, images: Images, tags: str | Sequence[str] | None,
                   generation: Mapping[str, Any]) -> Iterator[TaggedBatch]:
        return self._readable(self.iter_batches(images, tags=[], caption=True, caption_options=generation,
                                                caption_tags=tags))

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from fiftyone_ram.models.captioner import load_tokenizer

            self._tokenizer = load_tokenizer(self.config.tokenizer)
        return self._tokenizer

    # -- helpers ----------------------------------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        """The type pixels go in as: float32 under autocast (reduced precision), else the weights' type."""
        if self.model.compute_dtype is not None:
            return torch.float32
        return next(self.model.parameters()).dtype

    @staticmethod
    def _readable(batches: Iterator[TaggedBatch]) -> Iterator[TaggedBatch]:
        """The batches of a caller that takes no unreadable image (``predict`` and friends raise on one)."""
        for batch in batches:
            batch.raise_errors()
            yield batch


def _tags_per_image(tags: str | Sequence[str] | None, count: int) -> list[str] | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        return [tags] * count
    tags = list(tags)
    if len(tags) != count:
        raise ValueError(f"{len(tags)} tag strings given for {count} images")
    return [" | ".join(t) if not isinstance(t, str) else t for t in tags]


def load_tagger(model: TaggerSpec | str | Path | dict | ModelConfig | None = None,
                checkpoint: str | Path | None = None, *, calibration: Sequence[ImageInput] | None = None,
                **options: Any) -> Tagger:
    """Load RAM, RAM++ or Tag2Text: a :class:`~fiftyone_ram.tagger_spec.TaggerSpec`, or its fields.

    ``model``: a spec, or a released variant (``ram_plus_swin_large_14m``, ``ram_swin_large_14m``,
    ``tag2text_swin_14m``), a JSON config file or dict (``family`` fills a missing family field), a model folder
    as fine-tuning writes it (also when given as ``checkpoint``; see ``fiftyone_ram.model_folder``), or None:
    the architecture of ``checkpoint`` read from its tensor shapes (``fiftyone_ram.models.architecture``).
    ``options``: the spec's other fields (``tag_list``, ``thresholds``, ``vocabulary``, ``precision``,
    ``device``, ...). Files not given are taken from the cache (downloaded on first use): the released weights
    and upstream's tag lists and thresholds. Explicit paths always win. The tagger's ``spec`` is the spec with
    the checkpoint that was read and the precision it resolved to (``"auto"``: what the device runs fast,
    ``fiftyone_ram.hardware``). At ``int8`` (CPU, static) the layers' input ranges are calibrated once per
    checkpoint on two sample photos that scikit-learn ships and cached, or on the ``calibration`` images given.
    """
    from fiftyone_ram.hardware import check_compile, resolve_device, resolve_precision

    spec = TaggerSpec.of(model, checkpoint, **options)
    device = resolve_device(spec.device)
    precision = resolve_precision(spec.precision, device)  # a bad value fails before anything is read
    if spec.compile:
        check_compile(precision, device)
    name_or_config, checkpoint, family = spec.model, spec.checkpoint, spec.family
    tag_list, tag_list_chinese, thresholds = spec.tag_list, spec.tag_list_chinese, spec.thresholds
    folder = find_model_folder(name_or_config, checkpoint)
    if folder is not None:  # a fine-tuned model folder: its files unless others are given
        name_or_config, checkpoint = folder.config, folder.checkpoint
        tag_list = folder.tag_list if tag_list is None else tag_list
        tag_list_chinese = folder.tag_list_chinese if tag_list_chinese is None else tag_list_chinese
        thresholds = folder.thresholds if thresholds is None else thresholds
    if name_or_config is None:
        name_or_config = _architecture_of(checkpoint, family, tag_list)
    config = resolve_config(name_or_config, family=family)
    if spec.tokenizer is not None:
        config = replace(config, tokenizer=str(spec.tokenizer))
    labels = labels_for(config)
    missing: list[str] = []  # messages of other missing files (the weights)
    missing_upstream: list[str] = []  # upstream data files that could not be fetched

    def fetch(name: str | None) -> Path | None:
        if name is None:
            return None
        try:
            return assets.upstream_file(name)
        except assets.AssetError:
            missing_upstream.append(name)
            return None

    if checkpoint is None:
        if config.name is None:
            raise OptionError("a checkpoint path is required for a model given by a config file (CLI: --checkpoint)")
        try:
            checkpoint = assets.download_weights(config.name)
        except assets.AssetError as exc:
            missing.append(str(exc))
    # The label set's own rules (Chinese names, thresholds, excluded tags) apply to its own tag list only.
    own_labels = tag_list is None
    if own_labels:
        tag_list = fetch(labels.tag_list)  # the Chinese names are fetched when first asked for (below)
    else:
        own_labels = labels.matches(read_tag_list(tag_list))
    if own_labels and thresholds is None:
        thresholds = fetch(labels.thresholds)
    if missing_upstream:
        missing.append(assets.missing_upstream_message(missing_upstream))
    if missing:  # one message for everything a first offline use lacks
        raise assets.AssetError(missing[0] if len(missing) == 1 else
                                f"{len(missing)} file(s) missing: " + "; ".join(missing))
    names = read_tag_list(tag_list)
    if not labels.matches(names):  # upstream's own lists are trusted by sha256 (Tag2Text's has homographs)
        check_tag_names(names, _origin(tag_list, "the tag list"))

    chinese: list[str] | Callable[[], list[str] | None] | None = None
    if tag_list_chinese is not None:
        chinese = read_tag_list(tag_list_chinese)
        if len(chinese) != len(names):
            raise TagFileError(f"{_origin(tag_list_chinese, 'the Chinese tag list')} has {len(chinese)} names, the "
                               f"tag list {len(names)}")
        blank = [i + 1 for i, name in enumerate(chinese) if not name]
        if blank:  # repeats are fine here: several English tags may share one Chinese name
            raise TagFileError(f"{_origin(tag_list_chinese, 'the Chinese tag list')} has a blank name at line "
                               f"{blank[0]}")
    elif own_labels and labels.tag_list_chinese is not None:
        chinese_file = labels.tag_list_chinese
        chinese = lambda: read_tag_list(_fetch_when_asked(chinese_file))  # noqa: E731  fetched on first use
    limits = (read_thresholds(thresholds, len(names)) if thresholds is not None
              else default_thresholds(labels if own_labels else None, len(names)))
    excluded: Sequence[int] = labels.excluded if own_labels else ()
    identity = assets.verify_checkpoint(checkpoint)  # once per file (cached): a damaged file fails here
    model_ = model_from_checkpoint(config, checkpoint, len(names), caption_branch=spec.caption_branch)
    if folder is not None and folder.description_counts is not None:
        model_.description_mask = folder.description_mask(config.descriptions_per_tag)
    ranges = _int8_ranges(model_, config, identity, calibration) if precision == "int8" else None
    model_ = set_precision(model_, precision, ranges)
    tagger = Tagger(model_, config, names, limits, tag_list_chinese=chinese, excluded=excluded, device=device,
                    batch_size=spec.batch_size, precision=precision)
    tagger.checkpoint = identity
    if spec.compile:
        tagger.compile()
    # What loads this tagger again elsewhere: the file that was read, the precision it resolved to.
    tagger.spec = spec.replace(checkpoint=str(spec.checkpoint if folder is not None and spec.checkpoint is not None
                                              else checkpoint),
                               precision=precision, vocabulary=None)
    if spec.vocabulary is None:
        return tagger
    from fiftyone_ram.vocabulary.vocabulary import build_vocabulary

    return tagger.with_vocabulary(build_vocabulary(tagger, spec=spec.vocabulary, device=tagger.device))


#: Bump when the calibration changes (images, statistics): cached input ranges of older versions are not used.
INT8_CALIBRATION_VERSION = 1


def _int8_ranges(model: TaggerModel, config: ModelConfig, identity: assets.CheckpointIdentity | None,
                 calibration: Sequence[ImageInput] | None) -> dict[str, tuple[float, float]]:
    """The calibrated input ranges of the int8 layers: computed once per checkpoint on the default images and
    cached under the package's cache (``int8/``), or computed on the ``calibration`` images given."""
    import json

    from fiftyone_ram.models.precision import int8_ranges

    cache = None
    if calibration is None and identity is not None:
        key = f"{identity.fingerprint[:32]}-{model.family}-{model.num_classes}-v{INT8_CALIBRATION_VERSION}"
        cache = assets.ram_home() / "int8" / f"{key}.json"
        try:
            return {name: (low, high) for name, (low, high) in json.loads(cache.read_text()).items()}
        except (OSError, ValueError):
            pass
    images = calibration_images() if calibration is None else list(calibration)
    pixels = preprocess(images, config.image_size)
    ranges = int8_ranges(model, [pixels[i:i + 2] for i in range(0, len(pixels), 2)])
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(ranges))
            partial.replace(cache)
        except OSError:  # a read-only cache: calibrate again next time
            pass
    return ranges


def calibration_images() -> list[np.ndarray]:
    """Eight views (whole, mirrored, two crops) of the two photographs scikit-learn ships (a temple, a
    flower): the default int8 calibration set, real photographs without a download."""
    from sklearn.datasets import load_sample_images

    views = []
    for image in load_sample_images().images:
        h, w = image.shape[:2]
        views += [image, image[:, ::-1], image[: 2 * h // 3, : 2 * w // 3], image[h // 3:, w // 3:]]
    return [np.ascontiguousarray(view) for view in views]


def _fetch_when_asked(name: str) -> Path:
    try:
        return assets.upstream_file(name)
    except assets.AssetError:
        raise assets.AssetError(assets.missing_upstream_message([name])) from None


def _architecture_of(checkpoint: str | Path | None, family: str | None,
                     tag_list: str | Path | Sequence[str] | None) -> ModelConfig:
    """A checkpoint's architecture from its shapes; RAM++ needs its number of tags (the tag list's, else
    the family's released label set's)."""
    from fiftyone_ram.models.config import ConfigError
    from fiftyone_ram.models.factory import checkpoint_family, config_from_checkpoint
    from fiftyone_ram.models.registry import labels_for_family

    if checkpoint is None:
        raise ConfigError("name a released model, give an architecture config file, or give a checkpoint "
                          "(its architecture is read from its tensor shapes)")
    family = family or checkpoint_family(checkpoint)
    if family is None:
        raise ConfigError(f"cannot tell which model wrote {checkpoint}: give the model family")
    count = len(read_tag_list(tag_list)) if tag_list is not None else labels_for_family(family).num_classes
    return config_from_checkpoint(checkpoint, count, family=family, tokenizer=_own_vocabulary(checkpoint))


def _own_vocabulary(checkpoint: str | Path) -> str | None:
    """A ``vocab.txt`` beside a Tag2Text checkpoint whose captioner is not bert-base-uncased's size (how
    upstream-layout checkpoints with their own tokenizer travel); None otherwise."""
    from fiftyone_ram.models.architecture import BERT_BASE_CAPTION_VOCAB, caption_vocab_size
    from fiftyone_ram.models.checkpoint import read_state_dict

    vocab = Path(checkpoint).with_name("vocab.txt")
    size = caption_vocab_size(read_state_dict(checkpoint))
    return str(vocab) if size not in (None, BERT_BASE_CAPTION_VOCAB) and vocab.is_file() else None


def _origin(source: Any, what: str) -> str:
    """How a tag list is named in messages: its file, or what it is when given as a list."""
    return f"{what} {source}" if isinstance(source, (str, Path)) else what


def default_thresholds(labels: LabelSet | None, count: int) -> np.ndarray:
    """Thresholds when no file is given: the label set's default and overrides, or upstream's fallback."""
    limits = np.full(count, FALLBACK_THRESHOLD if labels is None else labels.default_threshold, np.float32)
    for index, value in ({} if labels is None else labels.threshold_overrides).items():
        limits[index] = value
    return limits
