"""What a fine-tuning run does: upstream's ``finetune.yaml`` recipe by default, every part of it an option.

The defaults are upstream's (``ram/configs/finetune.yaml``, ``finetune.py``, ``ram/data/__init__.py``): AdamW with
weight decay 0.05 on every trainable tensor, lr 5e-6 with a cosine over epochs (5e-6, then 2.5e-6 for the
two epochs), no warm-up, 26 images per step and process, RandomResizedCrop at the model's size with scale
(0.2, 1) plus a horizontal flip and RandAugment(2, 5), a separately augmented 224-px crop for the CLIP
teacher, the CLIP label queries of RAM / RAM++ frozen, ASL γ− 7 / γ+ 0 / clip 0.05 and upstream's loss
weighting. That recipe is for released (pretrained) weights; ``WEAK_START`` is a setting that learns from a
weak start such as a random checkpoint (see docs/training.md).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields, replace
from numbers import Real
from typing import Any

from fiftyone_ram.errors import UserError
from fiftyone_ram.hardware import PRECISION_CHOICES
from fiftyone_ram.hub_models import CLIP
from fiftyone_ram.jobs import setting

#: Parts of the model that can be frozen (``freeze=``).
PARTS = ("backbone", "projection", "tagging_head", "captioning")
SCHEDULES = ("cosine-epoch", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "auto")
NORMALIZATIONS = ("imagenet", "clip")
METRICS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
#: The losses ``loss_weights`` may weigh (``fiftyone_ram.training.objective.FAMILY_LOSSES``).
LOSSES = ("caption", "tag", "distillation", "alignment")
#: The CLIP teacher of upstream's RAM / RAM++ fine-tuning (its ViT-B/16 in transformers' layout).
DEFAULT_TEACHER = CLIP


class SettingsError(UserError, ValueError):
    """A fine-tuning option out of its range."""


@dataclass(frozen=True)
class FinetuneSettings:
    """Options of :func:`fiftyone_ram.training.finetune` (see docs/training.md for each)."""

    epochs: int = setting(2, help="epochs (upstream: 2)")
    batch_size: int = setting(26, help="images per optimizer step and process, before accumulation (upstream: 26)")
    grad_accumulation: int = setting(1, help="micro-batches per optimizer step")
    lr: float = setting(5e-6, help="the learning rate (upstream: 5e-6)")
    min_lr: float = setting(0.0, flag=False, help="the learning rate the schedule ends at")
    head_lr: float | None = setting(None, help="a learning rate of its own for the head (image projection, tagging "
                                                "head, query projection, output layer, label queries)")
    weight_decay: float = setting(0.05, flag=False, help="AdamW's weight decay")
    schedule: str = setting("cosine-epoch", choices=SCHEDULES,
                            help="the learning rate schedule (upstream: cosine-epoch, the lr of epoch e is "
                                 "min + (lr - min) (1 + cos(pi e / epochs)) / 2)")
    warmup_steps: int = setting(0, help="linear warm-up from 0 over this many optimizer steps")
    freeze: tuple[str, ...] = setting((), choices=PARTS, help="leave this part as it is (repeatable)")
    train_label_queries: bool | None = setting(None, flag=False,
                                               help="train the label queries (None: upstream's choice, RAM / RAM++ "
                                                    "frozen, Tag2Text trained)")
    gamma_neg: float = setting(7.0, help="ASL's negative exponent (upstream: 7)")
    gamma_pos: float = setting(0.0, flag=False, help="ASL's positive exponent")
    clip: float = setting(0.05, flag=False, help="ASL's probability margin")
    bce_warmup_steps: int = setting(0, flag=False, help="optimizer steps with plain binary cross-entropy first")
    loss_weights: dict[str, float] = setting(factory=dict, flag=False, help="{loss: weight} of the losses")
    crop_scale: tuple[float, float] = setting((0.2, 1.0), flag=False, help="the random crop's area range")
    flip: bool = setting(True, flag=False, help="random horizontal flips")
    rand_augment: bool = setting(True, flag=False, help="RandAugment(2, 5)")
    normalization: str = setting("imagenet", choices=NORMALIZATIONS, flag=False,
                                 help="upstream trains with CLIP's mean/std but tags with ImageNet's")
    teacher: str | None = setting(DEFAULT_TEACHER, help="the CLIP teacher (hub name or folder) for distillation and "
                                                        "RAM++ alignment")
    teacher_image_size: int = setting(224, flag=False, help="the teacher's image size")
    dropout: bool = setting(True, flag=False, help="dropout and stochastic depth while training, as upstream")
    grad_checkpointing: bool = setting(False, help="recompute activations in the backward pass: less memory")
    train_precision: str = setting("fp32", choices=PRECISIONS,
                                   help="autocast while training: fp32, bf16, or auto (bf16 on GPUs that run it); "
                                        "the weights stay fp32")
    validation_precision: str | None = setting(None, choices=PRECISION_CHOICES,
                                               help="the precision the validation view is tagged at (auto, fp32, "
                                                    "bf16, fp16, int8; default: the tagging default, "
                                                    "$FIFTYONE_RAM_PRECISION else auto): the best epoch and the "
                                                    "tuned thresholds are those of the model as it will tag")
    seed: int = setting(42, help="the seed of the run (data order, augmentations, dropout)")
    num_workers: int = setting(0, help="image decoding processes")
    checkpoint_every: int = setting(500, help="optimizer steps between resumable states (0: at epoch ends only)")
    max_steps: int | None = setting(None, help="stop after this many optimizer steps (a short trial run)")
    early_stop: int | None = setting(None, help="stop after this many epochs without a better validation metric")
    metric: str = setting("mAP", choices=METRICS, flag=False, help="the validation figure that picks the best epoch")
    baseline: bool = setting(True, flag=False, help="also validate before training (logged as epoch -1)")
    tune_thresholds: bool = setting(True, flag=False,
                                    help="tune per-class thresholds on the validation view, saved with the model")
    target_precision: float | None = setting(None, flag=False,
                                             help="threshold tuning: the most recall at this precision (else best F1)")
    log_every: int = setting(10, flag=False, help="optimizer steps between lines of the JSON-lines log")

    def __post_init__(self) -> None:
        """Every value checked here, once, so that a bad one fails in one line before anything is loaded or
        written (not as NaN weights after training, nor as a ValueError from inside torch)."""
        for name in _SEQUENCES:  # JSON (--set) and Python give lists: kept as tuples (hashable, comparable)
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        for name, low in _INTEGERS.items():
            _check_integer(self, name, low)
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for name, (low, high, closed) in _NUMBERS.items():
            _check_number(name, getattr(self, name), low, high, closed)
        if not 0 <= self.seed < 2 ** 63:
            raise SettingsError(f"seed must be an integer from 0 to 2**63 - 1, not {self.seed!r}")
        choices = {"schedule": SCHEDULES, "train_precision": PRECISIONS, "normalization": NORMALIZATIONS,
                   "metric": METRICS, "validation_precision": (None, *PRECISION_CHOICES)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise SettingsError(f"{name} must be one of {shown}, not {getattr(self, name)!r}")
        self._check_parts()
        self._check_crop_scale()
        self._check_loss_weights()
        if self.teacher is not None and not (isinstance(self.teacher, str) and self.teacher.strip()):
            raise SettingsError(f"teacher must be a hub name or a folder (or None), not {self.teacher!r}")

    def _check_parts(self) -> None:
        if not isinstance(self.freeze, tuple) or not all(isinstance(p, str) for p in self.freeze):
            raise SettingsError(f"freeze must be a list of parts ({', '.join(PARTS)}), not {self.freeze!r}")
        unknown = sorted(set(self.freeze) - set(PARTS))
        if unknown:
            raise SettingsError(f"cannot freeze {', '.join(unknown)}: the parts are {', '.join(PARTS)}")
        if self.train_label_queries is not None and not isinstance(self.train_label_queries, bool):
            raise SettingsError(f"train_label_queries must be true, false or None, not {self.train_label_queries!r}")

    def _check_crop_scale(self) -> None:
        scale = self.crop_scale
        if not isinstance(scale, tuple) or len(scale) != 2:
            raise SettingsError(f"crop_scale must be two numbers (low, high) with 0 < low <= high <= 1, not "
                                f"{scale!r}")
        for value in scale:
            _check_number("crop_scale", value, 0.0, 1.0, (False, True))
        if scale[0] > scale[1]:
            raise SettingsError(f"crop_scale must be (low, high) with low <= high, not {scale!r}")

    def _check_loss_weights(self) -> None:
        if not isinstance(self.loss_weights, dict):
            raise SettingsError(f"loss_weights must map loss names ({', '.join(LOSSES)}) to weights, not "
                                f"{self.loss_weights!r}")
        unknown = sorted(set(self.loss_weights) - set(LOSSES))
        if unknown:
            raise SettingsError(f"loss_weights has unknown loss(es) {', '.join(map(repr, unknown))}: the losses "
                                f"are {', '.join(LOSSES)}")
        for name, value in self.loss_weights.items():
            _check_number(f"loss_weights[{name!r}]", value, 0.0, None, (True, False))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["freeze"], out["crop_scale"] = list(self.freeze), list(self.crop_scale)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneSettings:
        _check_names(values)
        return cls(**values)

    def with_changes(self, **changes: Any) -> FinetuneSettings:
        _check_names(changes)
        return replace(self, **changes) if changes else self


#: A setting that learns from a weak start (the tiny random checkpoint, a domain far from the released training
#: data). Upstream's γ− 7 gives easy negatives no gradient and its clamped log none to saturated scores; a
#: random model's scores swing with every Adam step of its backbone, and dropout / stochastic depth make its
#: train-mode outputs noise. So: plain BCE (log-sigmoid: γ 0, no margin), the backbone barely moved (2e-6) and
#: the head at 3e-4 after a 5-step warm-up, no dropout, mild crops, no RandAugment. Measured on the synthetic
#: shapes task in tests/test_training_acceptance.py (docs/training.md).
WEAK_START = {"lr": 2e-6, "head_lr": 3e-4, "warmup_steps": 5, "schedule": "constant", "gamma_neg": 0.0,
              "gamma_pos": 0.0, "clip": 0.0, "dropout": False, "rand_augment": False, "crop_scale": (0.9, 1.0)}


#: Integer settings and their least value (None: any integer; max_steps and early_stop may also be None).
_INTEGERS = {"epochs": 1, "batch_size": 1, "grad_accumulation": 1, "teacher_image_size": 1, "log_every": 1,
             "warmup_steps": 0, "bce_warmup_steps": 0, "num_workers": 0, "checkpoint_every": 0, "max_steps": 1,
             "early_stop": 1, "seed": 0}
_OPTIONAL = ("max_steps", "early_stop", "head_lr", "target_precision")
_FLAGS = ("flip", "rand_augment", "dropout", "grad_checkpointing", "baseline", "tune_thresholds")
#: Real settings: (low, high, (low included, high included)); None: unbounded. All must be finite.
_NUMBERS = {"lr": (0.0, None, (False, False)), "head_lr": (0.0, None, (False, False)),
            "min_lr": (0.0, None, (True, False)), "weight_decay": (0.0, None, (True, False)),
            "gamma_neg": (0.0, None, (True, False)), "gamma_pos": (0.0, None, (True, False)),
            "clip": (0.0, 1.0, (True, False)), "target_precision": (0.0, 1.0, (False, True))}
_SEQUENCES = ("freeze", "crop_scale")


def _check_names(values: dict[str, Any]) -> None:
    """Unknown names are refused (a misspelt setting would otherwise be dropped or fail deep inside)."""
    known = [f.name for f in fields(FinetuneSettings)]
    for name in sorted(set(values) - set(known)):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "the settings are listed in docs/training.md"
        raise SettingsError(f"unknown fine-tuning setting {name!r} ({hint})")


def _check_integer(settings: FinetuneSettings, name: str, low: int) -> None:
    value = getattr(settings, name)
    if value is None and name in _OPTIONAL:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name} must be an integer, not {value!r}")
    if value < low:
        raise SettingsError(f"{name} must be at least {low}, not {value}")


def _check_number(name: str, value: Any, low: float | None, high: float | None,
                  closed: tuple[bool, bool]) -> None:
    """A finite real number in its range: inf and nan are refused (they train a NaN model without a word)."""
    if value is None and name in _OPTIONAL:
        return
    left = "" if low is None else f"{low:g} {'<=' if closed[0] else '<'} "
    right = "" if high is None else f" {'<=' if closed[1] else '<'} {high:g}"
    rule = f"a finite number with {left}{name}{right}"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise SettingsError(f"{name} must be {rule}, not {value!r}")
    below = low is not None and (value < low if closed[0] else value <= low)
    above = high is not None and (value > high if closed[1] else value >= high)
    if below or above:
        raise SettingsError(f"{name} must be {rule}, not {value!r}")
