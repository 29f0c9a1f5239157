"""Model inputs: images decoded in DataLoader workers; an unreadable file becomes a marker, not a crash.

FiftyOne's own ``ImageGetItem`` reads with FiftyOne's image reader and raises on a bad file, and its
``ErrorHandlingCollate`` then fails the *whole batch* (one bad file costs up to ``batch_size`` samples).
Tagging must lose only the bad file and must prepare pixels exactly as ``Tagger.predict`` does, so this
module has its own ``GetItem`` (on FiftyOne's ``GetItem`` base, so field mapping and ``to_torch`` work as
usual) and a collate function that carries the markers past the model to the label writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fiftyone.utils.torch import GetItem

from fiftyone_ram.images import ImageError, ImageInput, load_image, read_pixel_values


@dataclass(frozen=True)
class UnreadableImage:
    """Stands in for an image that could not be read; ``message`` names the file and the reason."""

    source: str
    message: str


class PixelTransform:
    """Any image input to a (3, S, S) tensor, as ``Tagger.preprocess`` does. A class, not a closure, so that
    DataLoader workers started with ``spawn`` can unpickle it."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, source: ImageInput) -> torch.Tensor:
        return read_pixel_values(source, self.image_size)


def read_input(source: ImageInput, transform) -> torch.Tensor | UnreadableImage:
    """Pixels of one image, or the reason it cannot be read."""
    try:
        return transform(source)
    except ImageError as exc:
        name = str(source) if isinstance(source, (str, Path)) else type(source).__name__
        return UnreadableImage(name, str(exc))


class TaggerGetItem(GetItem):
    """Loads a sample's image (``filepath``, or another field via ``field_mapping``) in a worker."""

    def __init__(self, image_size: int, field_mapping: dict[str, str] | None = None) -> None:
        self.transform = PixelTransform(image_size)
        super().__init__(field_mapping=field_mapping)

    @property
    def required_keys(self) -> list[str]:
        return ["filepath"]

    def __call__(self, d: dict) -> torch.Tensor | UnreadableImage:
        path = d["filepath"]
        if path is None:
            return UnreadableImage("None", "the sample has no image path")
        return read_input(path, self.transform)


class RgbGetItem(GetItem):
    """Loads a sample's image as an RGB PIL image in a worker, for models whose own processors resize it (the
    comparators of ``evaluation.compare``); the same reader and the same markers as :class:`TaggerGetItem`."""

    @property
    def required_keys(self) -> list[str]:
        return ["filepath"]

    def __call__(self, d: dict):
        path = d["filepath"]
        if path is None:
            return UnreadableImage("None", "the sample has no image path")
        return read_input(path, load_image)


def collate_list(items: Sequence) -> list:
    """The batch as it came: images of many sizes, and markers of the unreadable ones in their places."""
    return list(items)


@dataclass
class ImageBatch:
    """A collated batch: the readable images stacked, and per item either None or why it was skipped."""

    pixel_values: torch.Tensor | None  # (number of readable items, 3, S, S), None when there are none
    errors: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.errors)

    @property
    def readable(self) -> list[int]:
        return [i for i, error in enumerate(self.errors) if error is None]

    def pin_memory(self) -> ImageBatch:
        """Called by the DataLoader when ``pin_memory=True`` (GPU runs)."""
        pixels = None if self.pixel_values is None else self.pixel_values.pin_memory()
        return ImageBatch(pixels, list(self.errors))


def collate_images(items: Sequence[torch.Tensor | UnreadableImage]) -> ImageBatch:
    """The model's collate function: stack what was read, keep the place and reason of what was not."""
    tensors = [item for item in items if isinstance(item, torch.Tensor)]
    errors = [item.message if isinstance(item, UnreadableImage) else None for item in items]
    return ImageBatch(torch.stack(tensors) if tensors else None, errors)
