"""Resumable training state: everything an interrupted run needs to continue as if never stopped.

Saved at optimizer-step boundaries: the model's tensors, the optimizer's and scheduler's state, where the run
is (epoch, batches done in it, global step, the best validation so far, the history) and the random
generators of every process (each process writes its own; dropout and stochastic depth draw from them). The
data order needs no state of its own: it is a function of the seed and the epoch (see ``data``). Files are
written beside their final name and renamed, so a run killed while saving leaves the previous state intact;
they hold tensors and plain values only (read back with ``weights_only=True``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESUME_DIR = "resume"
STATE_FILE = "state.pt"


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


def capture_rng() -> dict[str, Any]:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), position, has_gauss, gauss],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, rank: int, state: dict[str, Any] | None) -> None:
    """This process's generators, and on the main process (``state`` given) the run's state."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / rng_file(rank), capture_rng())
    if state is not None:
        _atomic(folder / STATE_FILE, state)


def load(folder: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    rng = torch.load(folder / rng_file(rank), map_location="cpu", weights_only=True)
    return state, rng


def exists(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def _atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
