"""Reading upstream checkpoints: every layout upstream has written, memory-mapped, checked key by key.

A checkpoint is data, never code (``weights_only=True``). The file is memory-mapped and the model's tensors
are assigned from it without copies, so only the pages of the tensors the model uses are ever read: tagging
with RAM's 5.6 GB file (captioning branch and optimizer state included) costs the tagging weights' memory.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from fiftyone_ram.errors import UserError
from fiftyone_ram.models.backbone import convert_swin_state_dict, init_swin_buffers

_LEGACY_RENAMES = (("vision_multi", "tagging_head"),)
_SWIN_PREFIX = "visual_encoder."


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file and tensor."""


#: How every pickle file starts (protocol 2 and later): torch's legacy, non-zip format is a pickle stream.
_PICKLE_START = b"\x80"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model tensors of an upstream file: ``{"model": sd, ...}``, ``{"state_dict": sd}`` or a bare sd."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the download was probably interrupted")
    mmap = zipfile.is_zipfile(path)  # torch can only memory-map its zip format
    if not mmap:
        with open(path, "rb") as f:
            start = f.read(4)
        if start == b"PK\x03\x04":  # a zip archive whose directory (at its end) is missing
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt: it starts as torch's zip format but "
                                  f"its end is missing (copy or download it again)")
        if start[:1] != _PICKLE_START:
            raise CheckpointError(f"checkpoint {path} is not a PyTorch file (neither torch's zip format nor its "
                                  f"legacy pickle format)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many kinds (UnpicklingError, KeyError, RuntimeError...) on bad bytes
        raise CheckpointError(_load_failure(path, exc)) from exc
    state = obj
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "module"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {path} contains no tensors")
    return _rename_legacy(tensors)


def _load_failure(path: Path, exc: Exception) -> str:
    """One line for what ``torch.load(weights_only=True)`` refused. Only a file that names a Python object
    outside torch's allowed set would run code; anything else is damaged or not a checkpoint."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if isinstance(exc, pickle.UnpicklingError) and found:
        return (f"checkpoint {path} holds a Python object ({found.group(1)}) besides tensors and plain containers; "
                f"it is refused because loading it would run code")
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if "Weights only load failed" in first:  # torch's advice to unpickle anyway does not apply to damaged bytes
        first = type(exc).__name__
    return f"checkpoint {path} is not a readable PyTorch file (truncated or corrupt?): {first[:200]}"


def zip_crc_failure(path: str | Path) -> str | None:
    """The first entry of a zip checkpoint whose bytes fail their CRC-32 (zipfile's own check), or None.

    Torch's zip format stores every tensor's bytes as one entry with its CRC, so a flipped bit anywhere in the
    weights is found; reading the whole file costs about as long as copying it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"(the archive itself: {exc})"


def zip_fingerprint(path: str | Path) -> str:
    """A content identity of a zip checkpoint read from its directory alone: sha256 over every entry's name,
    size and CRC-32. Two copies of one file agree; it costs a few kilobytes of reading."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            digest.update(f"{info.filename}\0{info.file_size}\0{info.CRC:08x}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _rename_legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        for old, new in _LEGACY_RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def detect_family(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which upstream model wrote these keys (for error messages about the wrong file)."""
    if "reweight_scale" in state:
        return "ram_plus"
    if "fc.W" in state or "label_embed.weight" in state:
        return "tag2text"
    if "label_embed" in state and "image_proj.weight" in state:
        return "ram"
    return None


def _to_model_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    swin = {k[len(_SWIN_PREFIX):]: v for k, v in state.items() if k.startswith(_SWIN_PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(_SWIN_PREFIX)}
    if swin:
        rest.update({_SWIN_PREFIX + k: v for k, v in convert_swin_state_dict(swin, model.visual_encoder).items()})
    return rest


def check_family(state: Mapping[str, torch.Tensor], path: str | Path, expected: str) -> None:
    found = detect_family(state)
    if found and found != expected:
        raise CheckpointError(f"checkpoint {path} is a {found} checkpoint, not {expected}: pass the matching "
                              f"model name or config family")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> list[str]:
    """Assign the checkpoint's tensors to ``model`` (built on the meta device); returns the unused keys.

    Every tensor the model needs must be present with its exact shape; the error names the first offenders.
    """
    state = _to_model_keys(state, model)
    needed = model.state_dict(keep_vars=True)
    missing = [k for k in needed if k not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"checkpoint {path} lacks {len(missing)} tensor(s) the model needs: {shown}")
    for key, param in needed.items():
        if tuple(state[key].shape) != tuple(param.shape):
            hint = _shape_hint(key, tuple(state[key].shape), tuple(param.shape))
            raise CheckpointError(f"checkpoint {path}: tensor {key} has shape {tuple(state[key].shape)}, the model "
                                  f"expects {tuple(param.shape)}{hint}")
    selected = {k: state[k].to(needed[k].dtype) for k in needed}
    model.load_state_dict(selected, strict=True, assign=True)
    init_swin_buffers(model)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_meta:
            raise CheckpointError(f"checkpoint {path} does not provide {name}")
    return sorted(k for k in state if k not in needed)


def _shape_hint(key: str, found: tuple[int, ...], expected: tuple[int, ...]) -> str:
    if key == "label_embed" and found[0] != expected[0]:
        return (" (the number of label queries differs: a RAM++ file in RAM or the reverse, or a tag list of "
                "another length)")
    if re.match(r"visual_encoder\.|image_proj", key):
        return " (a checkpoint of another Swin size: check the model name or config)"
    return ""
