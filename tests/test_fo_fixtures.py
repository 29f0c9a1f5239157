"""Shared set-up of the FiftyOne tests (imported by the other ``test_fo_*`` modules) and checks that the bad
files it writes are what their names say: what FiftyOne tagging must skip, and what it must still tag."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PARITY, UPSTREAM

PNGS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "camera.png")

#: Files that cannot be tagged: each must be skipped and recorded.
UNREADABLE = ("zero_byte.jpg", "truncated.png", "truncated.jpg", "text.jpg", "missing.png")
#: Odd but valid files: each must be tagged like any other.
ODD = ("huge_30mp.jpg", "cmyk.jpg", "rgba.png", "gray16.png", "palette.png", "exif_rotated.jpg")

TINY_CONFIG = PARITY / "fixtures_tiny.json"


def ram_settings(**extra) -> dict:
    """``load_model`` keywords for the tiny RAM fixture."""
    return {"config": str(TINY_CONFIG), "family": "ram", "checkpoint_path": str(PARITY / "ram_tiny.pth"),
            "tag_list": str(UPSTREAM / "ram_tag_list.txt"),
            "thresholds": str(UPSTREAM / "ram_tag_list_threshold.txt"), **extra}


def tag2text_settings(**extra) -> dict:
    return {"config": str(TINY_CONFIG), "family": "tag2text", "checkpoint_path": str(PARITY / "tag2text_tiny.pth"),
            "tag_list": str(UPSTREAM / "tag2text_ori_tag_list.txt"), **extra}


def copy_pngs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(PARITY / name, folder / name)) for name in PNGS]


@functools.lru_cache(maxsize=None)
def write_bad_files(folder: Path) -> dict[str, Path]:
    """The unreadable and odd inputs of the issue, made from the fixture PNGs. ``missing.png`` is not written.
    Written once per folder and run (the 30-megapixel JPEG takes a while)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {name: folder / name for name in UNREADABLE + ODD}
    astronaut = Image.open(PARITY / "astronaut.png").convert("RGB")
    chelsea = Image.open(PARITY / "chelsea.png").convert("RGB")

    out["zero_byte.jpg"].write_bytes(b"")
    png = (PARITY / "astronaut.png").read_bytes()
    out["truncated.png"].write_bytes(png[: len(png) // 2])
    chelsea.save(folder / "full.jpg", quality=90)
    jpeg = (folder / "full.jpg").read_bytes()
    out["truncated.jpg"].write_bytes(jpeg[: len(jpeg) * 3 // 5])
    (folder / "full.jpg").unlink()
    out["text.jpg"].write_text("this is not an image\n")

    Image.open(PARITY / "coffee.png").convert("RGB").resize((6000, 5000)).save(out["huge_30mp.jpg"], quality=70)
    chelsea.convert("CMYK").save(out["cmyk.jpg"], quality=90)
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(out["rgba.png"])
    gray = np.asarray(Image.open(PARITY / "camera.png").convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(out["gray16.png"])  # PIL writes uint16 arrays as 16-bit grayscale PNG
    Image.open(PARITY / "coffee.png").convert("RGB").convert("P", palette=Image.ADAPTIVE).save(out["palette.png"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.open(PARITY / "rocket.png").convert("RGB").save(out["exif_rotated.jpg"], exif=exif, quality=90)
    return out


@pytest.fixture(scope="session")
def bad_files(tmp_home) -> dict[str, Path]:
    """Shared by every test module that imports it; the files must not be changed."""
    return write_bad_files(tmp_home / "bad-files")


def test_bad_files_are_what_their_names_say(bad_files):
    assert bad_files["zero_byte.jpg"].stat().st_size == 0
    assert not bad_files["missing.png"].exists()
    with Image.open(bad_files["huge_30mp.jpg"]) as im:
        assert im.width * im.height >= 30_000_000
    with Image.open(bad_files["cmyk.jpg"]) as im:
        assert im.mode == "CMYK"
    with Image.open(bad_files["rgba.png"]) as im:
        assert im.mode == "RGBA"
    with Image.open(bad_files["gray16.png"]) as im:
        assert im.mode.startswith("I")  # 16-bit
    with Image.open(bad_files["palette.png"]) as im:
        assert im.mode == "P"
    with Image.open(bad_files["exif_rotated.jpg"]) as im:
        assert im.getexif()[0x0112] == 6


def test_worker_loader_marks_unreadable_files_and_reads_odd_ones(bad_files):
    """What runs in the DataLoader workers: a marker for each unreadable file, pixels for the others."""
    import torch

    from fiftyone_ram.fiftyone.inputs import PixelTransform, UnreadableImage, read_input

    transform = PixelTransform(224)
    for name in UNREADABLE:
        result = read_input(str(bad_files[name]), transform)
        assert isinstance(result, UnreadableImage), name
        assert str(bad_files[name]) in result.message
    for name in ODD:
        result = read_input(str(bad_files[name]), transform)
        assert isinstance(result, torch.Tensor) and result.shape == (3, 224, 224), name
