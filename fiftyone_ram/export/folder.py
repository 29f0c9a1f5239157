"""An export folder: the network file(s) and what a runtime needs beside them to tag as the package does.

Everything but the network is plain text or JSON, so that a runtime in any language (X-AnyLabeling, Rust's
``usls``, a server) can use it: ``export.json`` (the family, the preprocessing, the input and output names,
the decision rule, the measured agreement), ``tag_list.txt`` (one tag per line, in the model's column order),
``thresholds.txt`` (one per tag), and ``tag_list_chinese.txt`` when the tagger has Chinese names. Reading a
folder (:func:`read_export`) needs neither torch nor the checkpoint, nor does checking where one may be written
(:func:`check_output`: the command line refuses a bad output at once, before torch is imported).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiftyone_ram.errors import UserError

MANIFEST = "export.json"
FORMAT = "fiftyone-ram-export"
FORMAT_VERSION = 1
TAG_LIST = "tag_list.txt"
TAG_LIST_CHINESE = "tag_list_chinese.txt"
THRESHOLDS = "thresholds.txt"
#: The network files by variant: the fp32 graph and its int8 quantisation.
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


class ExportError(UserError, ValueError):
    """An export that cannot be written or read; the message names the folder or file."""


@dataclass
class ExportFolder:
    """What :func:`read_export` finds in a folder (and what ``export_onnx`` writes)."""

    path: Path
    family: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tag_list: list[str]
    thresholds: np.ndarray
    excluded: list[int] = field(default_factory=list)
    tag_list_chinese: list[str] | None = None
    models: dict[str, str] = field(default_factory=dict)  # variant -> file name in the folder
    manifest: dict[str, Any] = field(default_factory=dict)

    def model_path(self, variant: str = "fp32") -> Path:
        if variant not in self.models:
            raise ExportError(f"{self.path} has no {variant} model (it has: {', '.join(self.models) or 'none'})")
        return self.path / self.models[variant]

    def excluded_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.tag_list), dtype=bool)
        mask[self.excluded] = True
        return mask


def check_output(folder: Path, overwrite: bool) -> None:
    """Refuse an output that cannot take an export: a file in the way, a folder holding anything (an earlier
    export is replaced only with ``overwrite``; other files never), a place that cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} is a file, not a folder: give a folder to export into")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise ExportError(f"{folder} exists and is not empty: pass overwrite=True (CLI: --overwrite) to replace "
                              "the export in it")
        others = sorted(p.name for p in folder.iterdir() if p.name not in OUR_FILES)
        if others:
            raise ExportError(f"{folder} holds files that are not an export ({', '.join(others[:3])}): "
                              "export into an empty or new folder")
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write into {folder}: {existing} is not a writable folder")


#: What an export folder holds (``overwrite`` removes these and nothing else).
OUR_FILES = frozenset({MANIFEST, TAG_LIST, TAG_LIST_CHINESE, THRESHOLDS, *MODEL_FILES.values(),
                       *(f"{name}.data" for name in MODEL_FILES.values())})


def write_sidecar(folder: Path, manifest: dict[str, Any], tag_list: list[str], thresholds: np.ndarray,
                  tag_list_chinese: list[str] | None) -> None:
    """The text files and ``export.json`` (``manifest`` gets the format fields and the file names)."""
    _write_lines(folder / TAG_LIST, tag_list)
    _write_lines(folder / THRESHOLDS, [repr(float(t)) for t in np.asarray(thresholds, np.float32)])
    files = {"tag_list": TAG_LIST, "thresholds": THRESHOLDS}
    if tag_list_chinese is not None:
        _write_lines(folder / TAG_LIST_CHINESE, tag_list_chinese)
        files["tag_list_chinese"] = TAG_LIST_CHINESE
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                "files": {**files, **manifest.get("files", {})}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_export(path: str | Path) -> ExportFolder:
    """An export folder (or its ``export.json`` / a model file in it), checked for its files."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ExportError(f"{folder} is not a fiftyone-ram export: no {MANIFEST} in it")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {manifest_path}: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ExportError(f"{manifest_path} is not a {FORMAT} manifest of version <= {FORMAT_VERSION}")
    files = manifest["files"]
    tag_list = _read_lines(folder / files["tag_list"])
    thresholds = np.asarray([float(x) for x in _read_lines(folder / files["thresholds"])], np.float32)
    chinese = _read_lines(folder / files["tag_list_chinese"]) if "tag_list_chinese" in files else None
    if len(thresholds) != len(tag_list) or (chinese is not None and len(chinese) != len(tag_list)):
        raise ExportError(f"{folder}: the tag list has {len(tag_list)} lines, the thresholds {len(thresholds)}")
    models = {variant: name for variant, name in files.get("models", {}).items() if (folder / name).is_file()}
    if not models:
        raise ExportError(f"{folder} holds no model file ({', '.join(files.get('models', {}).values())})")
    pre = manifest["preprocessing"]
    return ExportFolder(folder, manifest["family"], int(pre["image_size"]), tuple(pre["mean"]), tuple(pre["std"]),
                        tag_list, thresholds, list(manifest.get("excluded", [])), chinese, models, manifest)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
