"""Every image mode becomes upstream's RGB input; unreadable inputs fail with a message naming them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fiftyone_ram.images import ImageError, load_image, preprocess


@pytest.fixture(scope="module")
def rgb(parity_dir):
    return Image.open(parity_dir / "chelsea.png").convert("RGB")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "1", "LA"])
def test_modes_convert_as_pil_does(mode, rgb, tmp_path):
    source = rgb.convert(mode) if mode != "I;16" else Image.fromarray(
        (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"image{suffix}"
    source.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == rgb.size
    with Image.open(path) as reference:
        assert np.array_equal(np.asarray(loaded), np.asarray(reference.convert("RGB")))


def test_rgba_drops_alpha_without_compositing(rgb):
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)
    assert np.array_equal(np.asarray(load_image(rgba)), np.asarray(rgb))


def test_exif_orientation_is_ignored_like_upstream_unless_asked(rgb, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    rgb.save(path, exif=exif)
    assert load_image(path).size == rgb.size
    assert load_image(path, exif_transpose=True).size == rgb.size[::-1]


def test_arrays(rgb):
    array = np.asarray(rgb)
    assert np.array_equal(np.asarray(load_image(array)), array)
    assert np.array_equal(np.asarray(load_image(array.astype(np.float32) / 255.0)), array)
    assert load_image(array[:, :, 0]).mode == "RGB"
    with pytest.raises(ImageError, match="must be"):
        load_image(np.zeros((4, 4, 5), np.uint8))


def test_batch_of_mixed_inputs(rgb, parity_dir):
    pixels = preprocess([rgb, str(parity_dir / "chelsea.png"), np.asarray(rgb)], 64)
    assert pixels.shape == (3, 3, 64, 64)
    assert np.array_equal(pixels[0].numpy(), pixels[1].numpy())


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "text"])
def test_unreadable_inputs(case, parity_dir, tmp_path):
    path = tmp_path / "bad.png"
    if case == "empty":
        path.touch()
    elif case == "truncated":
        data = (parity_dir / "chelsea.png").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif case == "text":
        path.write_text("not an image")
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    assert str(path) in str(excinfo.value)
