"""What every comparator is to a comparison: a :class:`Scorer` (the classes it scores and a ``logits(images)``
whose sigmoid is each tag's score), and :func:`load_scorer`, which builds the one a :class:`ModelChoice` names.

A scorer's ``classes`` are those it can score, in the order of its logits: all the asked classes, except for a
tagger that cannot answer new tags (Tag2Text: its ``unsupported`` ones are left out of its figures and
reported, as the RAM paper marks such classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from fiftyone_ram.comparators.choice import DETECTORS, DUAL_ENCODERS, FIELD, OURS, ComparatorError, ModelChoice


class Scorer(Protocol):
    #: The classes scored, in the order of the logits' columns.
    classes: list[str]
    #: What was loaded, in words (``clip openai/clip-vit-base-patch16``).
    description: str
    #: Where it runs (a torch device).
    device: Any

    def logits(self, images: Sequence[Any]) -> np.ndarray:
        """(len(images), len(classes)) float32 logits of RGB PIL images; their sigmoid is the tag's score."""
        ...


def load_scorer(choice: ModelChoice, classes: Sequence[str], *, device: str | None = None,
                templates: Sequence[str] | str | None = None, text_encoder: Any = None,
                batch_size: int | None = None) -> Scorer:
    """The scorer of ``choice`` over ``classes``, loaded (weights download at first use; offline, a missing
    model is one line). ``templates``: the dual encoders' prompt templates and RAM's for tags outside its list;
    ``text_encoder``: the CLIP text model of RAM / RAM++'s tags outside its list."""
    if choice.kind in OURS:
        from fiftyone_ram.comparators.tagger_scorer import TaggerScorer

        return TaggerScorer(choice, classes, device=device, templates=templates, text_encoder=text_encoder,
                            batch_size=batch_size)
    if choice.kind in DUAL_ENCODERS:
        from fiftyone_ram.comparators.dual_encoder import DualEncoderScorer

        midpoint = choice.option("midpoint")
        return DualEncoderScorer(choice.kind, classes, choice.source, templates=templates, device=device,
                                 midpoint=float(midpoint) if midpoint is not None else None)
    if choice.kind in DETECTORS:
        from fiftyone_ram.comparators.grounding import GroundingDinoScorer

        return GroundingDinoScorer(classes, choice.source, device=device)
    if choice.kind == FIELD:
        raise ComparatorError(f"{choice}: a field's predictions are read, not computed")
    raise ComparatorError(f"unknown model kind {choice.kind!r}")
