"""The RAM, RAM++ and Tag2Text networks in plain torch (timm's Swin, transformers' BERT blocks).

Nothing here knows the ``Tagger``, FiftyOne or the CLI: these modules take tensors and configs and return
tensors. ``registry`` (the released variants) and ``config`` need no torch and are what the zoo hooks and
App forms import; the names below load on first use so that importing them stays cheap.
"""

from __future__ import annotations

from fiftyone_ram.lazy import lazy_exports

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.models.base import TaggerModel  # noqa: F401
    from fiftyone_ram.models.captioner import generate_caption_ids, load_tokenizer  # noqa: F401
    from fiftyone_ram.models.factory import build_model, model_from_checkpoint  # noqa: F401
    from fiftyone_ram.models.ram import RAM  # noqa: F401
    from fiftyone_ram.models.ram_plus import RAMPlus  # noqa: F401
    from fiftyone_ram.models.tag2text import Tag2Text  # noqa: F401

_EXPORTS = {
    "TaggerModel": "base", "RAM": "ram", "RAMPlus": "ram_plus", "Tag2Text": "tag2text",
    "build_model": "factory", "model_from_checkpoint": "factory",
    "generate_caption_ids": "captioner", "load_tokenizer": "captioner",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
