"""On-disk cache of text embeddings, keyed by content: the encoder's identity and the exact texts.

One entry per tag: the unit embeddings (K, D) of the texts that describe it (its filled-in templates or its
descriptions). A tag is therefore embedded once per encoder, whatever vocabulary it later appears in, and
RAM's prompt ensemble and RAM++'s template rows share entries (both start from the same unit rows).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    from fiftyone_ram.assets import ram_home

    return ram_home() / "vocabularies"


def entry_key(encoder_identity: str, texts: Sequence[str], *, truncate: bool) -> str:
    """sha256 of everything the embeddings depend on."""
    payload = json.dumps({"encoder": encoder_identity, "truncate": bool(truncate), "texts": list(texts)},
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """``.npy`` files under ``root/<key[:2]>/<key>.npy`` (root: ``ram_home()/vocabularies`` by default)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str, rows: int) -> np.ndarray | None:
        """The stored (rows, D) array, or None when absent or unreadable (it is then recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if array.ndim != 2 or array.shape[0] != rows or array.dtype != np.float32 or not np.isfinite(array).all():
            return None
        return array

    def save(self, key: str, array: np.ndarray) -> None:
        """Written to a temporary file and renamed, so readers never see half an entry."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                np.save(f, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
