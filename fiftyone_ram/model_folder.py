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
from collections.abc import Mapping, Sequence
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


class ModelFolderError(UserError, ValueError):
    """A folder that is not a complete model folder."""


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


def write_model_folder(folder: str | Path, state_dict: Mapping[str, Any], config: Mapping[str, Any],
                       tag_list: Sequence[str], thresholds: np.ndarray, *,
                       tag_list_chinese: Sequence[str] | None = None, description_counts: Sequence[int] | None = None,
                       info: Mapping[str, Any] | None = None) -> Path:
    """Write (or replace) the model files of ``folder``; other files in it are left alone.

    ``config``: the architecture as ``ModelConfig.to_dict()`` gives it; a tokenizer given as a file is copied
    in. Each file is written next to its final name and renamed, so a reader never sees half a file.
    """
    import torch

    from fiftyone_ram.tag_files import write_thresholds

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {**config, "name": None}  # not a released variant: nothing is ever downloaded for it
    tokenizer = config.get("tokenizer")
    if tokenizer and Path(tokenizer).is_file():
        _replace(folder / TOKENIZER_FILE, lambda tmp: shutil.copyfile(tokenizer, tmp))
        config["tokenizer"] = TOKENIZER_FILE
    _replace(folder / MODEL_FILE, lambda tmp: torch.save({"model": dict(state_dict)}, tmp))
    _replace(folder / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    _replace(folder / TAG_LIST_FILE, lambda tmp: tmp.write_text("\n".join(tag_list) + "\n", encoding="utf-8"))
    _replace(folder / THRESHOLDS_FILE, lambda tmp: write_thresholds(tmp, np.asarray(thresholds, np.float32)))
    if description_counts is not None:
        counts = json.dumps([int(c) for c in description_counts])
        _replace(folder / DESCRIPTION_COUNTS_FILE, lambda tmp: tmp.write_text(counts + "\n"))
    elif (folder / DESCRIPTION_COUNTS_FILE).exists():
        (folder / DESCRIPTION_COUNTS_FILE).unlink()  # an older model's, in a folder being overwritten
    if tag_list_chinese is not None:
        _replace(folder / TAG_LIST_CHINESE_FILE,
                 lambda tmp: tmp.write_text("\n".join(tag_list_chinese) + "\n", encoding="utf-8"))
    if info is not None:
        _replace(folder / INFO_FILE, lambda tmp: tmp.write_text(json.dumps(info, indent=2, default=str) + "\n"))
    return folder


def _replace(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    os.replace(tmp, target)
