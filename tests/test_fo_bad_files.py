"""The bad files of conftest's ``bad_files`` are what their names say: what FiftyOne tagging must skip, and
what it must still tag; the DataLoader workers' reader marks the first and reads the second."""

from __future__ import annotations

from PIL import Image


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
    for name, path in bad_files.unreadable.items():
        result = read_input(str(path), transform)
        assert isinstance(result, UnreadableImage), name
        assert str(path) in result.message
    for name, path in bad_files.odd.items():
        result = read_input(str(path), transform)
        assert isinstance(result, torch.Tensor) and result.shape == (3, 224, 224), name
