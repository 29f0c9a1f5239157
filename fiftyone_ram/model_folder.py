"""A model folder: a checkpoint with everything needed to use it, as fine-tuning writes it.

One folder holds the weights in upstream's layout (``model.pth``: ``{"model": state_dict}``, which upstream's
own loaders read too), the architecture (``config.json``, naming the family), the tag list and per-class
thresholds it answers (``tag_list.txt``, ``thresholds.txt``), and optionally the Chinese names, the caption
tokenizer's vocabulary and how the run went (``finetune.json``). ``load_tagger(folder)``, the zoo's
``recognize-anything-custom`` (``checkpoint_path=folder``) and ``--checkpoint FOLDER`` of the CLI read it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fiftyone_ram.errors import UserError

MODEL_FILE = "model.pth"
CONFIG_FILE = "config.json"
TAG_LIST_FILE = "tag_list.txt"
TAG_LIST_CHINESE_FILE = "tag_list_chinese.txt"
THRESHOLDS_FILE = "thresholds.txt"
TOKENIZER_FILE = "vocab.txt"
INFO_FILE = "finetune.json"
#: RAM++ classes with fewer description rows than the widest (zero rows padded out): the real rows per class,
#: beside the architecture (config.json holds only what ``config_from_dict`` accepts).
DESCRIPTION_COUNTS_FILE = "description_counts.json"


#: Every file a model folder may hold, as ``write_model_folder`` names them (what ``--overwrite`` replaces).
MODEL_FOLDER_FILES = (MODEL_FILE, CONFIG_FILE, TAG_LIST_FILE, TAG_LIST_CHINESE_FILE, THRESHOLDS_FILE,
                      TOKENIZER_FILE, INFO_FILE, DESCRIPTION_COUNTS_FILE)


class ModelFolderError(UserError, ValueError):
    """A folder that is not a complete model folder."""


class WriteError(UserError, OSError):
    """A file that could not be written (a full disk, a file size limit, no permission); its temporary file is
    gone and the file it was to replace is as it was."""


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    config: Path
    checkpoint: Path
    tag_list: Path
    thresholds: Path | None
    tag_list_chinese: Path | None
    description_counts: list[int] | None

    def description_mask(self, rows_per_class: int):
        """(C, K) bool of real description rows (RAM++), or None when every class has all K."""
        if self.description_counts is None:
            return None
        import torch

        counts = torch.as_tensor(self.description_counts)
        return torch.arange(rows_per_class)[None, :] < counts[:, None]


def is_model_folder(path: Any) -> bool:
    return isinstance(path, (str, Path)) and Path(path).expanduser().is_dir()


def find_model_folder(name_or_config: Any, checkpoint: Any) -> ModelFolder | None:
    """The folder given as the model or as the checkpoint, if either is one."""
    for candidate in (checkpoint, name_or_config):
        if is_model_folder(candidate):
            return read_model_folder(candidate)
    return None


def read_model_folder(path: str | Path) -> ModelFolder:
    folder = Path(path).expanduser()
    missing = [name for name in (MODEL_FILE, CONFIG_FILE, TAG_LIST_FILE) if not (folder / name).is_file()]
    if missing:
        raise ModelFolderError(f"{folder} is not a model folder: it lacks {', '.join(missing)} (a fine-tuning "
                               f"output folder holds {MODEL_FILE}, {CONFIG_FILE}, {TAG_LIST_FILE} and "
                               f"{THRESHOLDS_FILE})")
    _check_named_files(folder)
    counts = None
    if (folder / DESCRIPTION_COUNTS_FILE).is_file():
        try:
            counts = json.loads((folder / DESCRIPTION_COUNTS_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFolderError(f"cannot read {folder / DESCRIPTION_COUNTS_FILE}: {exc}") from exc
    optional = {name: folder / name if (folder / name).is_file() else None
                for name in (THRESHOLDS_FILE, TAG_LIST_CHINESE_FILE)}
    return ModelFolder(folder, folder / CONFIG_FILE, folder / MODEL_FILE, folder / TAG_LIST_FILE,
                       optional[THRESHOLDS_FILE], optional[TAG_LIST_CHINESE_FILE], counts)


def _check_named_files(folder: Path) -> None:
    """The files ``config.json`` names (the caption tokenizer) must be inside the folder: a folder that names
    ``../secret.txt`` would otherwise have that file read, and copied into every model fine-tuned from it."""
    path = folder / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"cannot read {path}: {exc}") from exc
    tokenizer = data.get("tokenizer") if isinstance(data, dict) else None
    if isinstance(tokenizer, dict):
        tokenizer = tokenizer.get("vocab")
    if not isinstance(tokenizer, str) or not tokenizer:
        return  # none, or a wrong type that the config check reports
    inside = folder.resolve()
    named = (folder / tokenizer).resolve()  # an absolute name replaces the folder; links are followed
    if not named.is_relative_to(inside):
        raise ModelFolderError(f"{path} names the tokenizer {tokenizer!r}, which is outside the model folder: a "
                               f"model folder's files must be inside it (copy the vocab.txt into {folder} and "
                               f"name it \"{TOKENIZER_FILE}\")")


def write_model_folder(folder: str | Path, state_dict: Mapping[str, Any], config: Mapping[str, Any],
                       tag_list: Sequence[str], thresholds: np.ndarray, *,
                       tag_list_chinese: Sequence[str] | None = None, description_counts: Sequence[int] | None = None,
                       info: Mapping[str, Any] | None = None) -> Path:
    """Write (or replace) the model files of ``folder``; other files in it are left alone.

    ``config``: the architecture as ``ModelConfig.to_dict()`` gives it; a tokenizer given as a file is copied
    in. Each file is written next to its final name and renamed, so a reader never sees half a file; a write
    that fails raises :class:`WriteError` and leaves no temporary file.
    """
    from fiftyone_ram.tag_files import write_thresholds

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {**config, "name": None}  # not a released variant: nothing is ever downloaded for it
    tokenizer = config.get("tokenizer")
    if tokenizer and Path(tokenizer).is_file():
        write_atomically(folder / TOKENIZER_FILE, lambda tmp: shutil.copyfile(tokenizer, tmp))
        config["tokenizer"] = TOKENIZER_FILE
    write_atomically(folder / MODEL_FILE, lambda tmp: save_tensors({"model": dict(state_dict)}, tmp))
    write_atomically(folder / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    write_atomically(folder / TAG_LIST_FILE,
                     lambda tmp: tmp.write_text("\n".join(tag_list) + "\n", encoding="utf-8"))
    write_atomically(folder / THRESHOLDS_FILE,
                     lambda tmp: write_thresholds(tmp, np.asarray(thresholds, np.float32)))
    if description_counts is not None:
        counts = json.dumps([int(c) for c in description_counts])
        write_atomically(folder / DESCRIPTION_COUNTS_FILE, lambda tmp: tmp.write_text(counts + "\n"))
    elif (folder / DESCRIPTION_COUNTS_FILE).exists():
        (folder / DESCRIPTION_COUNTS_FILE).unlink()  # an older model's, in a folder being overwritten
    if tag_list_chinese is not None:
        write_atomically(folder / TAG_LIST_CHINESE_FILE,
                         lambda tmp: tmp.write_text("\n".join(tag_list_chinese) + "\n", encoding="utf-8"))
    if info is not None:
        write_atomically(folder / INFO_FILE,
                         lambda tmp: tmp.write_text(json.dumps(info, indent=2, default=str) + "\n"))
    return folder


def write_atomically(target: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a temporary file beside ``target``, flushed to disk and renamed over it, so that a
    reader never sees half a file. When writing fails (a full disk), the temporary file is removed and a
    :class:`WriteError` says which file and why; ``target`` is left as it was."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # a full disk may only show when the data reaches it
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write {target}: {write_failure(exc)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_failure(exc: OSError) -> str:
    """The reason of a failed write in a few words ("no space left on device")."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return reason[0].lower() + reason[1:]


def save_tensors(obj: Any, path: Path) -> None:
    """``torch.save`` that fails with the ``OSError`` of the write that failed: torch reports a full disk as
    ``RuntimeError: [enforce fail at inline_container.cc]``, which says neither which file nor why."""
    import torch

    with open(path, "wb") as raw:
        sink = _Recording(raw)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is not None:
                raise sink.error from None
            raise


class _Recording:
    """A file whose first failed write is kept (torch turns it into a RuntimeError)."""

    def __init__(self, file) -> None:
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.file.flush()
