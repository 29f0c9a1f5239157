"""Training augmentations (torchvision's): upstream's RandomResizedCrop + flip + RandAugment, at the model's
size for the model and at 224 px with CLIP's statistics for the CLIP teacher.

Upstream's RandAugment is its own (2 ops of magnitude 5 out of Identity, AutoContrast, Brightness, Sharpness,
Equalize, ShearX/Y, TranslateX/Y, Rotate); torchvision's ``RandAugment(2, 5)`` draws from a wider set (colour,
contrast, posterize, solarize as well): the same strength, not the same ops.
"""

from __future__ import annotations

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from fiftyone_ram.images import IMAGENET_MEAN, IMAGENET_STD

STATISTICS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)}


def training_transform(size: int, *, scale: tuple[float, float] = (0.2, 1.0), flip: bool = True,
                       rand_augment: bool = True, normalization: str = "imagenet") -> T.Compose:
    """PIL image -> (3, size, size) tensor: a random crop of ``scale`` of the area resized (bicubic) to a
    square, a horizontal flip half of the time, RandAugment(2, 5), normalised with ``normalization``'s mean/std."""
    steps = [T.RandomResizedCrop(size, scale=tuple(scale), interpolation=InterpolationMode.BICUBIC)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    if rand_augment:
        steps.append(T.RandAugment(num_ops=2, magnitude=5))
    mean, std = STATISTICS[normalization]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def teacher_transform(size: int = 224, **options) -> T.Compose:
    """The CLIP teacher's separately augmented crop, always with CLIP's statistics (its own preprocessing)."""
    return training_transform(size, **{**options, "normalization": "clip"})
