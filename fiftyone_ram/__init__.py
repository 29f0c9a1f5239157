"""Recognize Anything (RAM, RAM++, Tag2Text) image tagging for FiftyOne.

The heavy pieces (torch, timm, transformers, FiftyOne) are imported only when used, so that the plugin and
zoo hooks that import this package stay cheap.
"""

from typing import TYPE_CHECKING

from fiftyone_ram.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.tagger import Tagger, load_tagger  # noqa: F401

__getattr__, _names = lazy_exports(__name__, {"load_tagger": "tagger", "Tagger": "tagger"})
__all__ = [*_names, "__version__"]
