"""Scores to FiftyOne labels: one ``Classification`` per predicted tag, in a ``Classifications``.

FiftyOne 1.22 has no multi-label (sigmoid) output processor (its ``ClassifierOutputProcessor`` is softmax,
single label), so this is written here. Which tags are emitted is decided by the Tagger's own rule,
:func:`fiftyone_ram.decision.decide` (strictly above the threshold, excluded tags never, tag-list order).

An image's result is first a :class:`TagOutput` (plain lists: cheap to build, to pickle to and from Ray
workers and to write), then, where FiftyOne wants objects (``apply_model``), a ``Classifications``
(:meth:`TagOutput.to_label`), or, where we write the database ourselves (the tagging driver, the Ray
engine), the document FiftyOne would store for that label (:meth:`TagOutput.to_document`).

Why not simply ``fol.Classification(...)``: mongoengine sets every field through its descriptors and
validates, ~90 us per label. A random-weight model at the released size emits ~1,900 tags per image (a real
one 10-30), and then building the objects alone costs a third of the bf16 model's time. :class:`_LabelMaker`
builds them by copying a template's state instead, after checking once per process that the copy equals
what the constructor makes (else it uses the constructor).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import fiftyone.core.labels as fol
import numpy as np
from bson import ObjectId

from fiftyone_ram.decision import decide

logger = logging.getLogger(__name__)


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
        return _MAKER.label(self)

    def to_document(self) -> dict[str, Any]:
        """What FiftyOne stores for :meth:`to_label` (``to_mongo()``), built without the label objects."""
        return _MAKER.document(self)


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


class _LabelMaker:
    """Builds ``Classification`` objects by copying a constructed template's state, and documents as FiftyOne
    serialises them; both checked once against FiftyOne's own construction (:meth:`_check`)."""

    def __init__(self) -> None:
        self._checked: bool | None = None
        self._tag_template: fol.Classification | None = None
        self._list_template: fol.Classifications | None = None
        self._slots: tuple[str, ...] = ()

    # -- objects -------------------------------------------------------------------------------------------
    def label(self, output: TagOutput) -> fol.Classifications:
        if self._ready():
            tags = [self._copy_tag(label, confidence, threshold) for label, confidence, threshold
                    in zip(output.labels, output.confidences, output.thresholds)]
            container = self._copy(self._list_template, classifications=tags)
        else:
            tags = [fol.Classification(label=label, confidence=confidence, threshold=threshold)
                    for label, confidence, threshold in zip(output.labels, output.confidences, output.thresholds)]
            container = fol.Classifications(classifications=tags)
        if output.logits is not None:
            container.logits = output.logits
        if output.caption is not None:
            container["caption"] = output.caption
        return container

    def _copy_tag(self, label: str, confidence: float, threshold: float) -> fol.Classification:
        tag = self._copy(self._tag_template, id=str(ObjectId()), tags=[], label=label, confidence=confidence,
                         threshold=threshold)
        tag.__dict__["threshold"] = threshold  # mongoengine keeps dynamic values in the instance dict too
        return tag

    def _copy(self, template, **data):
        """A new document of ``template``'s class whose state is the template's with ``data`` replaced.
        Every mutable part (the field values, the change list, the dynamic-field map) is the copy's own."""
        new = object.__new__(type(template))
        for name in self._slots:
            try:
                value = object.__getattribute__(template, name)
            except AttributeError:
                continue
            object.__setattr__(new, name, value)
        object.__setattr__(new, "_data", {**template._data, **data})
        object.__setattr__(new, "_changed_fields", [])
        son = type(template._dynamic_fields)
        dynamic = son.__new__(son)  # (SON's __init__ costs more than the rest of the copy)
        for key, field in template._dynamic_fields.items():
            dynamic[key] = field
        object.__setattr__(new, "_dynamic_fields", dynamic)
        new.__dict__.update(template.__dict__)
        return new

    # -- documents -----------------------------------------------------------------------------------------
    def document(self, output: TagOutput) -> dict[str, Any]:
        if not self._ready():
            return output.to_label().to_mongo().to_dict()
        document: dict[str, Any] = {"_cls": "Classifications", "classifications": [
            {"_id": ObjectId(), "_cls": "Classification", "tags": [], "label": label, "confidence": confidence,
             "threshold": threshold}
            for label, confidence, threshold in zip(output.labels, output.confidences, output.thresholds)]}
        if output.logits is not None:
            document["logits"] = fol.Classifications._fields["logits"].to_mongo(output.logits)
        if output.caption is not None:
            document["caption"] = output.caption
        return document

    # -- the check -----------------------------------------------------------------------------------------
    def _ready(self) -> bool:
        if self._checked is None:
            try:
                self._checked = self._check()
            except Exception as exc:  # an other FiftyOne or mongoengine: the constructor it is
                logger.debug("fast label construction unavailable: %s", exc)
                self._checked = False
            if not self._checked:
                logger.debug("building FiftyOne labels with their constructors (slower)")
        return self._checked

    def _check(self) -> bool:
        self._slots = tuple(dict.fromkeys(
            name for cls in fol.Classification.__mro__ for name in getattr(cls, "__slots__", ())
            if name not in ("__weakref__", "__dict__", "_data", "_changed_fields", "_dynamic_fields")))
        self._tag_template = fol.Classification(label="template", confidence=0.125, threshold=0.25)
        self._list_template = fol.Classifications(classifications=[])
        probe = TagOutput(["a", "b"], [0.75, 0.5], [0.5, 0.375], np.asarray([0.5, -1.0], dtype=np.float32),
                          "a caption")
        self._checked = True
        made = self.label(probe)
        made.validate()
        reference = fol.Classifications(
            classifications=[fol.Classification(label=label, confidence=confidence, threshold=threshold)
                             for label, confidence, threshold in zip(probe.labels, probe.confidences,
                                                                     probe.thresholds)],
            logits=probe.logits)
        reference["caption"] = probe.caption
        other = self.label(probe)  # a new attribute on a copy must reach neither the templates nor the others
        other["extra"] = 1
        other.classifications[0]["extra"] = 1
        same = (_without_ids(made.to_mongo()) == _without_ids(reference.to_mongo())
                == _without_ids(self.document(probe))
                and made.classifications[0].threshold == 0.5 and made.classifications[1].id != made.classifications[0].id
                and "extra" not in self._tag_template._fields_ordered and not self._list_template.classifications
                and "extra" not in made._fields_ordered and "extra" not in made.classifications[0]._fields_ordered)
        return bool(same)


def _without_ids(document: Any) -> Any:
    """A document with its ``_id`` values left out (each label has a new one), as plain dicts and lists."""
    if isinstance(document, dict):
        return {key: _without_ids(value) for key, value in document.items() if key != "_id"}
    if isinstance(document, list):
        return [_without_ids(value) for value in document]
    return document


_MAKER = _LabelMaker()
