"""The public tagging API: ``load_tagger`` and the ``Tagger`` it returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fiftyone_ram import assets
from fiftyone_ram.images import ImageInput, preprocess
from fiftyone_ram.models.base import TaggerModel
from fiftyone_ram.models.config import ModelConfig
from fiftyone_ram.models.factory import load_model
from fiftyone_ram.models.registry import FALLBACK_THRESHOLD, LabelSet, labels_for, resolve_config
from fiftyone_ram.tag_files import read_tag_list, read_thresholds

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.vocabulary import Vocabulary

CAPTION_PROMPT = "a picture of "

Prediction = list[tuple[str, float]]


class Tagger:
    """A loaded tagger. Scores of a tag never depend on which other tags are asked for, so ``tags=`` subsets
    give the same numbers as the full vocabulary, faster."""

    #: The custom vocabulary this tagger answers (see ``with_vocabulary``); None: the checkpoint's tags.
    vocabulary: Vocabulary | None = None

    def __init__(self, model: TaggerModel, config: ModelConfig, tag_list: list[str], thresholds: np.ndarray,
                 *, tag_list_chinese: list[str] | Callable[[], list[str] | None] | None = None,
                 excluded: Sequence[int] = (), device: torch.device | str = "cpu", batch_size: int = 4) -> None:
        """``tag_list_chinese`` may be a function, called on the first Chinese request (the file may need a
        download that an English-only user should not depend on)."""
        self.model = model.to(device)
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

    # -- facts ----------------------------------------------------------------------------------------
    @property
    def tag_list_chinese(self) -> list[str] | None:
        if callable(self._chinese):
            names = self._chinese()
            if names is not None and len(names) != len(self.tag_list):
                raise ValueError(f"the Chinese tag list has {len(names)} names, the tag list {len(self.tag_list)}")
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

    def class_indices(self, tags: Sequence[str] | None) -> np.ndarray:
        """Positions of the given tag names in the tag list (all tags when None)."""
        if tags is None:
            return np.arange(len(self.tag_list))
        unknown = [t for t in tags if t not in self._index]
        if unknown:
            shown = ", ".join(repr(t) for t in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ValueError(f"{len(unknown)} tag(s) are not in this tagger's vocabulary: {shown}")
        return np.asarray([self._index[t] for t in tags], dtype=np.int64)

    def with_vocabulary(self, vocabulary: Vocabulary) -> Tagger:
        """A tagger answering ``vocabulary`` (from ``fiftyone_ram.vocabulary.build_vocabulary(self, ...)``).

        Every weight is shared with this tagger, which is left unchanged; only the label queries differ.
        """
        from fiftyone_ram.vocabulary.queries import model_for_vocabulary
        from fiftyone_ram.vocabulary.vocabulary import tag_list_signature

        if vocabulary.base_signature != tag_list_signature(self.tag_list):
            raise ValueError("this vocabulary was built for a tagger with another tag list")
        builtin = vocabulary.builtin_index
        def chinese() -> list[str] | None:  # new tags have no Chinese name: their English name stands in
            base = self.tag_list_chinese
            return None if base is None else [base[i] if i >= 0 else name for name, i in zip(vocabulary.names, builtin)]

        excluded = [c for c, i in enumerate(builtin) if i >= 0 and self.excluded[i]]
        tagger = Tagger(model_for_vocabulary(self.model, vocabulary), self.config, list(vocabulary.names),
                        vocabulary.thresholds, tag_list_chinese=chinese, excluded=excluded, device=self.device,
                        batch_size=self.batch_size)
        tagger.vocabulary = vocabulary
        tagger._tokenizer = self._tokenizer
        return tagger

    # -- computing --------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        return preprocess(images, self.image_size)

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor, tags: Sequence[str] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, C) and image embeddings (B, D) of a preprocessed batch, on the CPU in float32."""
        classes = None if tags is None else torch.as_tensor(self.class_indices(tags), device=self.device)
        embeds = self.model.image_embeds(pixel_values.to(self.device, self._dtype))
        logits = self.model.logits(embeds, classes)
        return logits.float().cpu(), self.model.image_embedding(embeds).float().cpu()

    def logits(self, pixel_values: torch.Tensor, tags: Sequence[str] | None = None) -> torch.Tensor:
        return self.forward(pixel_values, tags)[0]

    def probabilities(self, images: Sequence[ImageInput] | ImageInput, tags: Sequence[str] | None = None
                      ) -> np.ndarray:
        """Sigmoid scores (B, C); columns follow ``tags`` when given, else the tag list."""
        return np.concatenate([torch.sigmoid(self.logits(p, tags)).numpy() for p in self._batches(images)])

    def predict(self, images: Sequence[ImageInput] | ImageInput, threshold: float | None = None,
                tags: Sequence[str] | None = None, language: str = "en") -> list[Prediction]:
        """Per image, ``(tag, probability)`` for the tags above threshold, in tag-list order.

        Per-class thresholds apply by default; a number overrides them all. A tag is predicted when its
        probability is strictly above its threshold, as upstream's ``generate_tag``.
        """
        indices = self.class_indices(tags)
        probs = self.probabilities(images, tags)
        return self.decide(probs, indices, threshold=threshold, language=language)

    def decide(self, probs: np.ndarray, indices: np.ndarray, *, threshold: float | None = None,
               language: str = "en") -> list[Prediction]:
        """Turn scores over ``indices`` of the tag list into per-image predictions."""
        names = self.names(language)
        limit = self.thresholds[indices] if threshold is None else np.full(len(indices), threshold, np.float32)
        order = np.argsort(indices, kind="stable")  # output in tag-list order whatever order was asked
        keep = (probs > limit) & ~self.excluded[indices]
        return [[(names[indices[j]], float(row[j])) for j in order if hit[j]] for row, hit in zip(probs, keep)]

    def names(self, language: str = "en") -> list[str]:
        if language == "en":
            return self.tag_list
        if language == "zh":
            if self.tag_list_chinese is None:
                raise ValueError(f"no Chinese tag names for this {self.family} tagger: pass tag_list_chinese=")
            return self.tag_list_chinese
        raise ValueError(f"unknown language {language!r}; expected 'en' or 'zh'")

    def embed(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        """Image embeddings (B, D): RAM/RAM++'s 512-d projected mean token (CLIP-aligned by upstream's
        distillation), Tag2Text's Swin-B mean token."""
        out = []
        for pixels in self._batches(images):
            with torch.inference_mode():
                embeds = self.model.image_embeds(pixels.to(self.device, self._dtype))
                out.append(self.model.image_embedding(embeds).float().cpu().numpy())
        return np.concatenate(out)

    # -- captions (Tag2Text) ----------------------------------------------------------------------------
    def caption(self, images: Sequence[ImageInput] | ImageInput, tags: str | Sequence[str] | None = None,
                **generation) -> list[str]:
        """Captions guided by the predicted tags, or by ``tags`` (one string "a | b" or list per image, or
        one for all). Generation options: num_beams=3, max_length=30, min_length=10, repetition_penalty=1.0."""
        tokenizer = self.tokenizer
        ids = self.caption_ids(images, tags, **generation)
        return [tokenizer.decode(seq, skip_special_tokens=True)[len(CAPTION_PROMPT):] for seq in ids]

    def caption_ids(self, images: Sequence[ImageInput] | ImageInput, tags: str | Sequence[str] | None = None,
                    **generation) -> list[list[int]]:
        from fiftyone_ram.models.captioner import generate_caption_ids

        if self.family != "tag2text" or not getattr(self.model, "can_caption", False):
            raise ValueError(f"captions need a Tag2Text checkpoint with its captioning branch, not {self.family}")
        batches = list(self._batches(images))
        count = sum(len(p) for p in batches)
        given = _tags_per_image(tags, count)
        out: list[list[int]] = []
        for pixels in batches:
            start = len(out)
            with torch.inference_mode():
                embeds = self.model.image_embeds(pixels.to(self.device, self._dtype))
                if given is None:
                    probs = torch.sigmoid(self.model.logits(embeds)).float().cpu().numpy()
                    predicted = self.decide(probs, self.class_indices(None))
                    tags = [" | ".join(name for name, _ in row) for row in predicted]
                else:
                    tags = given[start:start + len(pixels)]
            out.extend(generate_caption_ids(self.model, self.tokenizer, embeds, tags, **generation))
        return out

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from fiftyone_ram.models.captioner import load_tokenizer

            self._tokenizer = load_tokenizer(self.config.tokenizer)
        return self._tokenizer

    # -- helpers ----------------------------------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _batches(self, images: Sequence[ImageInput] | ImageInput) -> Iterator[torch.Tensor]:
        if isinstance(images, torch.Tensor):
            yield images
            return
        if isinstance(images, (str, Path)) or not isinstance(images, Sequence):
            images = [images]
        for start in range(0, len(images), self.batch_size):
            yield self.preprocess(images[start:start + self.batch_size])


def _tags_per_image(tags: str | Sequence[str] | None, count: int) -> list[str] | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        return [tags] * count
    tags = list(tags)
    if len(tags) != count:
        raise ValueError(f"{len(tags)} tag strings given for {count} images")
    return [" | ".join(t) if not isinstance(t, str) else t for t in tags]


def load_tagger(name_or_config: str | Path | dict | ModelConfig, checkpoint: str | Path | None = None, *,
                tag_list: str | Path | Sequence[str] | None = None,
                tag_list_chinese: str | Path | Sequence[str] | None = None,
                thresholds: str | Path | Sequence[float] | None = None,
                device: str | torch.device | None = None, family: str | None = None,
                batch_size: int = 4, tags: str | Path | Sequence[str] | None = None,
                descriptions: str | Path | Sequence[Mapping] | Mapping | None = None, keep_builtin: bool = False,
                new_tag_threshold: float | None = None, tag_thresholds: Mapping[str, float] | None = None,
                text_encoder=None, templates: Sequence[str] | None = None) -> Tagger:
    """Load RAM, RAM++ or Tag2Text.

    ``name_or_config``: a released variant (``ram_plus_swin_large_14m``, ``ram_swin_large_14m``,
    ``tag2text_swin_14m``), a JSON config file or dict (``family`` fills a missing family field).
    Files not given are taken from the cache (downloaded on first use): the released weights and upstream's
    tag lists and thresholds. Explicit paths always win.

    ``tag_list`` names the checkpoint's own tags; ``tags`` / ``descriptions`` / ``keep_builtin`` /
    ``new_tag_threshold`` / ``tag_thresholds`` / ``text_encoder`` / ``templates`` choose the vocabulary the
    tagger answers: a subset of its tags or new ones (see ``fiftyone_ram.vocabulary.build_vocabulary``).
    """
    config = resolve_config(name_or_config, family=family)
    labels = labels_for(config)
    missing: list[str] = []

    def fetch(name: str | None) -> Path | None:
        if name is None:
            return None
        try:
            return assets.upstream_file(name)
        except assets.AssetError as exc:
            missing.append(str(exc))
            return None

    if checkpoint is None:
        if config.name is None:
            raise ValueError("a checkpoint path is required for a model given by a config file")
        try:
            checkpoint = assets.download_weights(config.name)
        except assets.AssetError as exc:
            missing.append(str(exc))
    # The label set's own rules (Chinese names, thresholds, excluded tags) apply to its own tag list only.
    own_labels = tag_list is None
    if own_labels:
        tag_list = fetch(labels.tag_list)
        if tag_list_chinese is None and labels.tag_list_chinese is not None:
            tag_list_chinese = fetch(labels.tag_list_chinese)
    else:
        own_labels = labels.matches(read_tag_list(tag_list))
    if own_labels and thresholds is None:
        thresholds = fetch(labels.thresholds)
    if missing:  # one message for everything a first offline use lacks
        raise assets.AssetError("missing files:\n  " + "\n  ".join(missing))
    names = read_tag_list(tag_list)

    chinese: list[str] | Callable[[], list[str] | None] | None = None
    if tag_list_chinese is not None:
        chinese = read_tag_list(tag_list_chinese)
        if len(chinese) != len(names):
            raise ValueError(f"the Chinese tag list has {len(chinese)} names, the tag list {len(names)}")
    elif own_labels and labels.tag_list_chinese is not None:
        chinese_file = labels.tag_list_chinese
        chinese = lambda: read_tag_list(assets.upstream_file(chinese_file))  # noqa: E731  fetched on first use
    limits = (read_thresholds(thresholds, len(names)) if thresholds is not None
              else default_thresholds(labels if own_labels else None, len(names)))
    excluded: Sequence[int] = labels.excluded if own_labels else ()
    model = load_model(config, checkpoint, len(names))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tagger = Tagger(model, config, names, limits, tag_list_chinese=chinese, excluded=excluded, device=device,
                    batch_size=batch_size)
    if tags is None and descriptions is None and not keep_builtin and not tag_thresholds:
        return tagger
    from fiftyone_ram.vocabulary import build_vocabulary

    return tagger.with_vocabulary(build_vocabulary(
        tagger, tags=tags, descriptions=descriptions, keep_builtin=keep_builtin, new_tag_threshold=new_tag_threshold,
        tag_thresholds=tag_thresholds, text_encoder=text_encoder, templates=templates))


def default_thresholds(labels: LabelSet | None, count: int) -> np.ndarray:
    """Thresholds when no file is given: the label set's default and overrides, or upstream's fallback."""
    limits = np.full(count, FALLBACK_THRESHOLD if labels is None else labels.default_threshold, np.float32)
    for index, value in ({} if labels is None else labels.threshold_overrides).items():
        limits[index] = value
    return limits
