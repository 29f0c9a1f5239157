"""Running an exported network with onnxruntime: numpy pixels in, logits and embeddings out.

Only onnxruntime and numpy: what a user of the export needs, without the package's torch models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fiftyone_ram.export.folder import ExportError
from fiftyone_ram.export.graph import INPUT_NAME, OUTPUT_NAMES

#: Execution providers tried in this order when present in the installed onnxruntime.
PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def open_session(model: str | Path, *, threads: int | None = None, providers: list[str] | None = None):
    """An ``onnxruntime.InferenceSession`` of ``model``; ``threads``: its intra-op threads (None: one per core).

    Threads are a property of the session, so choosing them changes nothing else in the process."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("running an ONNX export needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    available = ort.get_available_providers()
    chosen = providers or [p for p in PROVIDERS if p in available]
    return ort.InferenceSession(str(model), options, providers=chosen)


def run_session(session, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``logits`` (B, C) and ``embedding`` (B, D) of a (B, 3, S, S) float32 batch."""
    feed = {INPUT_NAME: np.ascontiguousarray(pixel_values, dtype=np.float32)}
    logits, embedding = session.run(list(OUTPUT_NAMES), feed)
    return logits, embedding


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits in float32, stable for large |logit|."""
    logits = np.asarray(logits, np.float32)
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
