"""Recognize Anything (RAM, RAM++, Tag2Text) image tagging for FiftyOne.

The heavy pieces (torch, timm, transformers, FiftyOne) are imported only when used, so that the plugin and
zoo hooks that import this package stay cheap.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.tagger import Tagger, load_tagger  # noqa: F401

__all__ = ["load_tagger", "Tagger", "__version__"]


def __getattr__(name: str):
    if name in ("load_tagger", "Tagger"):
        from fiftyone_ram import tagger

        return getattr(tagger, name)
    raise AttributeError(f"module 'fiftyone_ram' has no attribute {name!r}")
