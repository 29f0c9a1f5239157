"""Loading third-party Hugging Face models (Grounding-DINO, CLIP, SigLIP, BLIP) with a message a user can act on.

Offline, transformers fails with a long ``OSError`` about cached paths that does not say which model of the
run was missing; this names it, says where it is looked for and what to do instead. Every layer that loads a
hub model uses it: the data engine's detector and crop encoder, and the comparators of ``evaluation.compare``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fiftyone_ram.errors import UserError


class ModelUnavailableError(UserError, OSError):
    """A hub model is neither a local folder nor in the Hugging Face cache, and cannot be downloaded."""


def load_pretrained(loader: Callable[[str], Any], model: str, what: str, instead: str) -> Any:
    """``loader(model)``; an ``OSError`` (offline, unknown id, missing files) becomes one line naming
    ``what`` (e.g. "Grounding-DINO detector") and ``model``, and the way around it (``instead``)."""
    try:
        return loader(model)
    except OSError as exc:
        if Path(model).expanduser().is_dir():
            raise ModelUnavailableError(f"the {what} folder '{model}' is not a complete model folder "
                                        f"({str(exc).splitlines()[0][:160]})") from exc
        raise ModelUnavailableError(
            f"the {what} '{model}' is not available: it is not in the Hugging Face cache and could not be "
            f"downloaded (offline?). Download it once online, give a local folder, or {instead}") from exc
