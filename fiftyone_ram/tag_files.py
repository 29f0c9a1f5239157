"""Reading and writing upstream's plain-text tag lists and threshold files (one entry per line)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def read_tag_list(source: str | Path | Sequence[str]) -> list[str]:
    """Names in file order; surrounding whitespace is dropped (upstream keeps it in its Chinese output)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"tag list {path} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines]
        while names and not names[-1]:
            names.pop()
        return names
    return [str(name).strip() for name in source]


def read_thresholds(source: str | Path | Sequence[float] | np.ndarray, expected: int) -> np.ndarray:
    """Per-class thresholds aligned with a tag list of ``expected`` names."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"threshold file {path} does not exist")
        values = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    values.append(float(line))
                except ValueError:
                    raise ValueError(f"{path}:{number}: {line!r} is not a number") from None
        thresholds = np.asarray(values, dtype=np.float32)
        origin = str(path)
    else:
        thresholds = np.asarray(source, dtype=np.float32).reshape(-1)
        origin = "thresholds"
    if thresholds.shape[0] != expected:
        raise ValueError(f"{origin} has {thresholds.shape[0]} values but the tag list has {expected} tags")
    return thresholds


def write_thresholds(path: str | Path, thresholds: Sequence[float] | np.ndarray) -> Path:
    """Upstream's format, one value per line aligned with the tag list, each in the shortest form that reads
    back to the same float32 (rounding could move a tuned threshold across a score)."""
    values = np.asarray(thresholds, dtype=np.float32)
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError("thresholds must be a 1-D array of finite numbers")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(np.format_float_positional(v, unique=True, trim="-") for v in values)
    path.write_text(text + "\n", encoding="utf-8")
    return path
