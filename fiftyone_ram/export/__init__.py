"""Exporting a tagger for other runtimes: ONNX files with a dynamic batch axis, an int8 variant, and the tag
list, thresholds and preprocessing beside them (docs/export.md).

``export_onnx(tagger, folder)`` writes an export; ``read_export(folder)`` reads one back without torch's
models or the checkpoint (``fiftyone_ram.fiftyone.onnx_model`` tags a FiftyOne dataset with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fiftyone_ram.lazy import lazy_exports
from fiftyone_ram.export.folder import ExportError, ExportFolder, read_export

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.export.onnx import export_onnx  # noqa: F401

__getattr__, _names = lazy_exports(__name__, {"export_onnx": "onnx"})  # imports torch: only when asked for
__all__ = [*_names, "read_export", "ExportFolder", "ExportError"]
