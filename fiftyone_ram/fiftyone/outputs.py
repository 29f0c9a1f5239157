"""Model outputs to FiftyOne labels: one ``Classification`` per tag that passes its threshold.

FiftyOne's classifier output processing assumes a single label (its ``ClassifierOutputProcessor`` is softmax,
single label), so this is written here. Which tags are emitted is decided by the Tagger's own rule,
:func:`fiftyone_ram.decision.decide` (strictly above the threshold, excluded tags never, tag-list order).

An image's result is first a :class:`TagOutput` (plain lists: cheap to pickle to and from Ray workers), then
the ``Classifications`` FiftyOne stores (:meth:`TagOutput.to_label`, FiftyOne's own constructors). A batch's
outputs (:func:`tag_outputs`) are computed without FiftyOne, so that a Ray model actor runs them
(:class:`TagPredictor`) without importing it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fiftyone_ram.decision import decide

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone.core.labels as fol
    import torch

    from fiftyone_ram.tagger import Tagger
    from fiftyone_ram.tagger_spec import TaggerSpec


def tag_thresholds(per_class: np.ndarray, indices: np.ndarray, global_threshold: float | None) -> np.ndarray:
    """The threshold that decides each scored tag: the per-class value, or one number for all."""
    if global_threshold is None:
        return per_class[indices]
    return np.full(len(indices), global_threshold, dtype=np.float32)


@dataclass(slots=True)
class TagOutput:
    """One image's tags: names, scores and the thresholds that admitted them, in tag-list order.

    ``logits`` (over the scored tags, optional) and ``caption`` (Tag2Text) belong to the container.
    """

    labels: list[str]
    confidences: list[float]
    thresholds: list[float]
    logits: np.ndarray | None = None
    caption: str | None = None

    def to_label(self) -> fol.Classifications:
        """The ``Classifications`` that ``apply_model`` stores."""
        import fiftyone.core.labels as fol  # here: Ray's model actors decide outputs without importing FiftyOne

        tags = [fol.Classification(label=label, confidence=confidence, threshold=threshold)
                for label, confidence, threshold in zip(self.labels, self.confidences, self.thresholds)]
        container = fol.Classifications(classifications=tags)
        if self.logits is not None:
            container.logits = self.logits
        if self.caption is not None:
            container["caption"] = self.caption
        return container


def decide_outputs(probs: np.ndarray, indices: np.ndarray, limits: np.ndarray, names: Sequence[str],
                   excluded: np.ndarray, *, logits: np.ndarray | None = None,
                   captions: Sequence[str] | None = None,
                   keep_names: Collection[str] | None = None) -> list[TagOutput]:
    """The tags of a batch.

    ``probs`` (B, K) are sigmoid scores over the tag-list positions ``indices`` (K,), ``limits`` (K,) the
    thresholds used; each tag keeps its score and its threshold (rounded to 6 decimals: the float32 files
    hold values such as 0.65). ``logits`` (B, K), when given, go on the container (FiftyOne's
    ``Classifications.logits``, in the order of ``indices``); ``captions`` (Tag2Text) become its dynamic
    attribute ``caption``. ``keep_names`` restricts the emitted tags (apply_model's ``classes=``).
    """
    rows = decide(probs, limits, indices=indices, excluded=excluded)
    if keep_names is not None:
        allowed = np.asarray([names[i] in keep_names for i in indices], dtype=bool)
        rows = [columns[allowed[columns]] for columns in rows]
    rounded = [round(float(t), 6) for t in limits]
    positions = np.asarray(indices)
    outputs = []
    for row, columns in enumerate(rows):
        outputs.append(TagOutput(
            labels=[names[i] for i in positions[columns].tolist()],
            confidences=probs[row, columns].tolist(),
            thresholds=[rounded[j] for j in columns.tolist()],
            logits=None if logits is None else logits[row],
            caption=None if captions is None else captions[row]))
    return outputs


def to_classifications(probs: np.ndarray, indices: np.ndarray, limits: np.ndarray, names: Sequence[str],
                       excluded: np.ndarray, *, logits: np.ndarray | None = None,
                       captions: Sequence[str] | None = None,
                       keep_names: Collection[str] | None = None) -> list[fol.Classifications]:
    """Labels for a batch: :func:`decide_outputs` as ``Classifications``."""
    return [output.to_label() for output in decide_outputs(probs, indices, limits, names, excluded, logits=logits,
                                                            captions=captions, keep_names=keep_names)]


# -- a batch's outputs, here or in a Ray actor (no FiftyOne: importing it costs each actor seconds) ---------


@dataclass(frozen=True)
class OutputOptions:
    """What a model does with its tagger's scores (the ``RamModelConfig`` fields of these names, and the
    model's ``store_logits``)."""

    classes: list[str] | None = None
    language: str = "en"
    confidence_thresh: float | None = None
    filter_classes: list[str] | None = None
    caption: bool = True
    caption_options: dict[str, Any] = field(default_factory=dict)
    store_logits: bool = False


def tag_outputs(tagger: Tagger, pixels: torch.Tensor | None, errors: list[str | None], options: OutputOptions
                ) -> tuple[list[TagOutput | dict[str, str]], Any]:
    """Per item of a batch, its :class:`TagOutput` or ``{"error": message}`` (``errors``: None for the readable
    items, whose preprocessed ``pixels`` are stacked in order); and the batch's image embeddings."""
    out: list = [{"error": error} for error in errors]
    if pixels is None:
        return out, None
    (tagged,) = tagger.iter_batches(pixels, tags=options.classes, caption=options.caption and tagger.can_caption,
                                    caption_options=options.caption_options)
    limits = tag_thresholds(tagger.thresholds, tagged.indices, options.confidence_thresh)
    outputs = decide_outputs(
        tagged.probabilities, tagged.indices, limits, tagger.names(options.language), tagger.excluded,
        logits=tagged.logits if options.store_logits else None, captions=tagged.captions,
        keep_names=set(options.filter_classes) if options.filter_classes is not None else None)
    readable = [i for i, error in enumerate(errors) if error is None]
    for position, output in zip(readable, outputs, strict=True):
        out[position] = output
    return out, tagged.embeddings


@dataclass
class TagPredictor:
    """A model's tagger and output options, as a Ray actor receives them: the tagger travels as the spec it is
    loaded again from (its weights memory-mapped from the same path) unless it was built in memory (``spec``
    None: then the tagger travels whole)."""

    spec: TaggerSpec | None
    options: OutputOptions
    tagger: Tagger | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.spec is not None:
            state["tagger"] = None  # loaded again from the spec where it is unpickled
        return state

    def load(self) -> Tagger:
        """The tagger, loaded from the spec on first use."""
        if self.tagger is None:
            from fiftyone_ram.tagger import load_tagger

            self.tagger = load_tagger(self.spec)
        return self.tagger

    def predict_outputs(self, pixels: torch.Tensor | None, errors: list[str | None]
                        ) -> list[TagOutput | dict[str, str]]:
        """:func:`tag_outputs` of one batch."""
        return tag_outputs(self.load(), pixels, errors, self.options)[0]
