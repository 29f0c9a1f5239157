"""RAM, RAM++ and Tag2Text as FiftyOne models: the ``Model`` for ``apply_model`` / ``compute_embeddings``, its
inputs and outputs, and the zoo source's hooks. Nothing here runs over a dataset by itself: that is
:mod:`fiftyone_ram.driver`.

Import it as ``import fiftyone_ram.fiftyone as forf``; the names below load on first use so that importing
the package (done by the zoo hooks and operators on every request) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.fiftyone.model import RamModel, RamModelConfig, from_tagger, load_model  # noqa: F401

_EXPORTS = {"RamModel": "model", "RamModelConfig": "model", "load_model": "model", "from_tagger": "model"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
