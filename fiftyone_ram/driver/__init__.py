"""The dataset driver: running a model over a FiftyOne collection safely and at the model's speed.

What it holds: the plan of a run (never overwrite unasked, resume only the same run), the claims that let
concurrent runs share the work (:mod:`.claims`), the one run store every kind of run is recorded in
(:mod:`.runs`), the writer that stores outputs by sample id (:mod:`.writer`), and the two executors that run
the model, here (:mod:`.local_executor`) or on Ray Data (:mod:`.ray_executor`).

``import fiftyone_ram.driver as frd``; the names below load on first use.
"""

from __future__ import annotations

from fiftyone_ram.lazy import lazy_exports

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.driver.tagging import (  # noqa: F401
        FieldExistsError,
        RunMismatchError,
        TaggingSummary,
        tag_samples,
    )

_EXPORTS = {"tag_samples": "tagging", "TaggingSummary": "tagging", "FieldExistsError": "tagging",
            "RunMismatchError": "tagging"}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
