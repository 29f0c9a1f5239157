"""Checkpoints are verified at first use (issue 11, case 9): a zip checkpoint against the CRC-32 of its entries,
a released file against its pinned sha256; the result is remembered so that later loads do not read the file
again, and a changed file is checked again."""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from fiftyone_ram import assets
from fiftyone_ram.models.checkpoint import CheckpointError


def _flip_a_weight_bit(path: Path) -> str:
    """Flip one bit in the middle of the largest tensor's bytes, leaving the zip's structure intact; returns the
    entry's name."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED  # torch stores tensors uncompressed
    with open(path, "r+b") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        where = info.header_offset + 30 + name_length + extra_length + info.file_size // 2
        f.seek(where)
        byte = f.read(1)[0]
        f.seek(where)
        f.write(bytes([byte ^ 0x10]))
    return info.filename


@pytest.fixture()
def flipped(parity_dir, tmp_path) -> tuple[Path, str]:
    path = Path(shutil.copyfile(parity_dir / "ram_tiny.pth", tmp_path / "flipped.pth"))
    return path, _flip_a_weight_bit(path)


def test_a_bit_flipped_checkpoint_is_refused_naming_the_entry(flipped, tiny_tagger):
    path, entry = flipped
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("ram", path)
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and entry in message and "CRC" in message


def test_the_cli_says_so_in_one_line(flipped, parity_dir, tiny_cli_args):
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    path, _ = flipped
    args = tiny_cli_args("ram")
    args[args.index("--checkpoint") + 1] = str(path)
    result = CliRunner().invoke(main, ["tag", str(parity_dir / "rocket.png"), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and str(path) in lines[0]


def test_verification_is_remembered_until_the_file_changes(parity_dir, tmp_path, monkeypatch):
    from fiftyone_ram.models import checkpoint as ckpt

    path = Path(shutil.copyfile(parity_dir / "ram_tiny.pth", tmp_path / "good.pth"))
    checks = []
    real = ckpt.zip_crc_failure
    monkeypatch.setattr(ckpt, "zip_crc_failure", lambda p: checks.append(p) or real(p))

    first = assets.verify_checkpoint(path)
    assert first.verified_by == "crc32" and checks == [path]
    assert assets.verify_checkpoint(path) == first and checks == [path]  # remembered: not read again
    copy = Path(shutil.copyfile(path, tmp_path / "copy.pth"))
    assert assets.verify_checkpoint(copy).fingerprint == first.fingerprint  # same content, same identity

    _flip_a_weight_bit(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # as any write moves it
    with pytest.raises(CheckpointError, match="CRC"):
        assets.verify_checkpoint(path)  # changed since: checked again


def test_a_released_file_is_checked_against_its_sha256(parity_dir, monkeypatch, tmp_path):
    from fiftyone_ram.models.registry import default_cfgs

    monkeypatch.setenv("FIFTYONE_RAM_HOME", str(tmp_path / "home"))
    name = next(n for n, cfg in default_cfgs.items() if cfg.weights.sha256)
    target = assets.weights_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(parity_dir / "ram_tiny.pth", target)  # a valid zip, but not the released bytes
    with pytest.raises(CheckpointError, match="sha256") as excinfo:
        assets.verify_checkpoint(target)
    assert str(target) in str(excinfo.value) and "download it again" in str(excinfo.value)
