"""Resumable training state: everything an interrupted run needs to continue as if never stopped.

Saved at optimizer-step boundaries: the model's tensors, the optimizer's and scheduler's state, where the run
is (epoch, batches done in it, global step, the best validation so far, the history) and the random
generators of every process (each process writes its own; dropout and stochastic depth draw from them). The
data order needs no state of its own: it is a function of the seed and the epoch (see ``data``). Files are
written beside their final name and renamed, so a run killed while saving leaves the previous state intact;
they hold tensors and plain values only (read back with ``weights_only=True``). A write that fails (a full
disk) leaves no temporary file and raises :class:`~fiftyone_ram.model_folder.WriteError`.
"""

from __future__ import annotations

import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fiftyone_ram.errors import UserError
from fiftyone_ram.model_folder import save_tensors, write_atomically

RESUME_DIR = "resume"
STATE_FILE = "state.pt"
#: The files of ``resume/`` that fine-tuning writes (and the temporary files of their writes): the only ones
#: it ever removes there.
_OWN_FILE = re.compile(r"\.?(state\.pt|rng_rank\d+\.pt)(\.tmp)?")


class ResumeError(UserError, RuntimeError):
    """A resumable state that cannot be read."""


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
    return _read(folder / STATE_FILE), _read(folder / rng_file(rank))


def _read(path: Path) -> dict[str, Any]:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:120]
        raise ResumeError(f"cannot resume from {path}: it is not a state fine-tuning wrote ({reason}); start "
                          f"again with --overwrite") from exc
    if not isinstance(value, dict):
        raise ResumeError(f"cannot resume from {path}: it is not a state fine-tuning wrote; start again with "
                          f"--overwrite")
    return value


def own_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that fine-tuning writes there (states, generators, their temporary files)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _OWN_FILE.fullmatch(p.name))


def remove(folder: Path) -> list[Path]:
    """Remove this package's files from ``folder`` (and the folder, once empty); returns what is kept."""
    for path in own_files(folder):
        path.unlink(missing_ok=True)
    kept = sorted(folder.iterdir()) if folder.is_dir() else []
    if folder.is_dir() and not kept:
        folder.rmdir()
    return kept


def exists(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def _atomic(path: Path, obj: Any) -> None:
    write_atomically(path, lambda tmp: save_tensors(obj, tmp))
