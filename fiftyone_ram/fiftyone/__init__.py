"""RAM, RAM++ and Tag2Text as FiftyOne models: the ``Model`` for ``apply_model`` / ``compute_embeddings``, its
inputs and outputs, and the zoo source's hooks. Nothing here runs over a dataset by itself: that is
:mod:`fiftyone_ram.driver`.

Import it as ``import fiftyone_ram.fiftyone as forf``; the names below load on first use so that importing
the package (done by the zoo hooks and operators on every request) stays cheap.
"""

from __future__ import annotations

from fiftyone_ram.lazy import lazy_exports

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.fiftyone.model import RamModel, RamModelConfig, from_tagger, load_model  # noqa: F401

_EXPORTS = {"RamModel": "model", "RamModelConfig": "model", "load_model": "model", "from_tagger": "model"}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
