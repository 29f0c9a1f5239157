"""The other taggers of a comparison (the RAM paper's table on a user's data): CLIP, SigLIP and BLIP's contrastive
head (dual encoders), Grounding-DINO (an open-set detector), and our taggers over any classes.

Each is a scorer (:class:`~fiftyone_ram.comparators.scorer.Scorer`): the classes it scores and ``logits(images)``
whose sigmoid is each tag's score; what the score means per kind is in :mod:`.dual_encoder`, :mod:`.grounding`
and :mod:`.tagger_scorer`. Which model is meant is a :class:`~fiftyone_ram.comparators.choice.ModelChoice`
(``KIND[=SOURCE][,KEY=VALUE...]``). Pure torch and transformers: FiftyOne's ``Model`` around a scorer is
:mod:`fiftyone_ram.fiftyone.comparator`; the comparison itself is ``fiftyone_ram.evaluation.compare``.

The names load on first use: the choices (what the command line is built from) import no torch.
"""

from typing import TYPE_CHECKING

from fiftyone_ram.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.comparators.choice import (DEFAULT_MODELS, KINDS, ModelChoice, parse_choice,  # noqa: F401
                                                 parse_choices)
    from fiftyone_ram.comparators.choice import ComparatorError  # noqa: F401
    from fiftyone_ram.comparators.scorer import Scorer, load_scorer  # noqa: F401

_EXPORTS = {
    "DEFAULT_MODELS": "choice", "KINDS": "choice", "ModelChoice": "choice", "parse_choice": "choice",
    "parse_choices": "choice", "ComparatorError": "choice", "Scorer": "scorer", "load_scorer": "scorer",
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
