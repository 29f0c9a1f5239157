"""Images in, pixel tensors out, exactly as upstream prepares them.

Upstream converts with ``PIL.Image.convert("RGB")`` (alpha dropped without compositing, palette and CMYK
converted by PIL, 16-bit values clipped by PIL) and ignores EXIF orientation; resizing is PIL's antialiased
bilinear to a square (aspect not kept), then ImageNet mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN
from transformers.utils.constants import IMAGENET_DEFAULT_STD as IMAGENET_STD

from fiftyone_ram.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

ImageInput = Union[str, Path, Image.Image, np.ndarray]


class ImageError(UserError, ValueError):
    """An input that is not a readable image; the message names it."""


def load_image(source: ImageInput, *, exif_transpose: bool = False) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or an (H, W[, C]) array."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            with Image.open(path) as opened:
                opened.load()  # decode now: truncated files fail here, not later in a worker
                image = opened.copy()
        except FileNotFoundError:
            raise ImageError(f"image {path} does not exist") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"cannot read image {path}: {exc}") from exc
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _array_to_pil(source)
    else:
        raise ImageError(f"unsupported image input of type {type(source).__name__}")
    if exif_transpose:
        image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def _array_to_pil(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), not {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            array = np.clip(array * 255.0 if array.max(initial=0) <= 1.0 else array, 0, 255)
        elif array.dtype == np.uint16:
            array = array >> 8  # keep the most significant byte
        array = array.astype(np.uint8)
    return Image.fromarray(array)


# Upstream tags with ImageNet's statistics. From transformers' constants module, not timm's: Ray's decoding
# processes import this module and nothing else of the package, and timm (torchvision, torch._dynamo) would
# cost each of them seconds of start-up; torch is imported where a tensor is made, for the same reason.
_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def to_pixel_values(image: Image.Image, image_size: int) -> torch.Tensor:
    """(3, S, S) float32: bilinear resize, /255, ImageNet normalisation (:func:`to_pixel_array` as a tensor)."""
    import torch

    return torch.from_numpy(to_pixel_array(image, image_size))


def to_pixel_array(image: Image.Image, image_size: int) -> np.ndarray:
    """(3, S, S) float32 array: bilinear resize, /255, ImageNet normalisation.

    The arithmetic is numpy's, not torch's (the same float32 operations, so the same values): decoding runs in a
    prefetch thread beside the model, and torch ops there would start a second pool of intra-op threads."""
    resized = image.resize((image_size, image_size), Image.BILINEAR)
    pixels = np.ascontiguousarray(np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)).astype(np.float32) / 255
    return (pixels - _MEAN) / _STD


def preprocess(images: Sequence[ImageInput], image_size: int) -> torch.Tensor:
    """(B, 3, S, S) pixel values for a batch of inputs of any kind."""
    import torch

    return torch.stack([to_pixel_values(load_image(im), image_size) for im in images])


# What PIL and the decoders raise on damaged data that ``load_image`` does not already wrap; anything else
# is a bug and propagates. MemoryError: a decompressed image too large for this machine.
_DAMAGED = (OSError, ValueError, SyntaxError, MemoryError)


def read_pixel_values(source: ImageInput, image_size: int) -> torch.Tensor:
    """(3, S, S) pixel values of one input; any unreadable input, damaged data included, raises
    :class:`ImageError` naming it, so that batch loops can record it and go on."""
    import torch

    return torch.from_numpy(read_pixel_array(source, image_size))


def read_pixel_array(source: ImageInput, image_size: int) -> np.ndarray:
    """:func:`read_pixel_values` as a numpy array (what decoding processes that never run torch need)."""
    try:
        return to_pixel_array(load_image(source), image_size)
    except ImageError:
        raise
    except _DAMAGED as exc:
        name = str(source) if isinstance(source, (str, Path)) else type(source).__name__
        raise ImageError(f"cannot read image {name}: {exc!r}") from exc
