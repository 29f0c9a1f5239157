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

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from fiftyone_ram.errors import UserError
from fiftyone_ram.hub_models import CLIP

#: Parts of the model that can be frozen (``freeze=``).
PARTS = ("backbone", "projection", "tagging_head", "captioning")
SCHEDULES = ("cosine-epoch", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "auto")
NORMALIZATIONS = ("imagenet", "clip")
#: The CLIP teacher of upstream's RAM / RAM++ fine-tuning (its ViT-B/16 in transformers' layout).
DEFAULT_TEACHER = CLIP


class SettingsError(UserError, ValueError):
    """A fine-tuning option out of its range."""


@dataclass(frozen=True)
class FinetuneSettings:
    """Options of :func:`fiftyone_ram.training.finetune` (see docs/training.md for each)."""

    epochs: int = 2
    batch_size: int = 26  # images per optimizer step and process (before accumulation)
    grad_accumulation: int = 1  # micro-batches per optimizer step
    lr: float = 5e-6
    min_lr: float = 0.0
    head_lr: float | None = None  # lr of the head: image projection, tagging head, wordvec_proj, fc, label queries
    weight_decay: float = 0.05
    schedule: str = "cosine-epoch"  # upstream: the lr of epoch e is min + (lr - min) (1 + cos(pi e / epochs)) / 2
    warmup_steps: int = 0  # linear warm-up from 0 over this many optimizer steps
    freeze: tuple[str, ...] = ()  # parts of PARTS left as they are
    train_label_queries: bool | None = None  # None: upstream's choice (RAM / RAM++ frozen, Tag2Text trained)
    gamma_neg: float = 7.0  # ASL exponents and margin of the tagging loss
    gamma_pos: float = 0.0
    clip: float = 0.05
    bce_warmup_steps: int = 0  # optimizer steps with plain binary cross-entropy (γ 0, no margin) first
    loss_weights: dict[str, float] = field(default_factory=dict)  # {"caption": 1, "tag": 1, ...}
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True
    rand_augment: bool = True
    normalization: str = "imagenet"  # upstream trains with CLIP's mean/std but tags with ImageNet's
    teacher: str | None = DEFAULT_TEACHER  # hub name or folder of a CLIP model; None: no distillation / alignment
    teacher_image_size: int = 224
    dropout: bool = True  # dropout and stochastic depth while training, as upstream (False: deterministic)
    grad_checkpointing: bool = False
    precision: str = "fp32"
    seed: int = 42
    num_workers: int = 0  # image decoding processes
    checkpoint_every: int = 500  # optimizer steps between resumable checkpoints (0: only at epoch ends)
    max_steps: int | None = None  # stop after this many optimizer steps (a short trial run)
    early_stop: int | None = None  # stop after this many epochs without a better validation metric
    metric: str = "mAP"  # the validation summary value that picks the best epoch
    baseline: bool = True  # also validate before training (logged as epoch -1, never kept as the best)
    tune_thresholds: bool = True  # per-class thresholds tuned on the validation view, saved with the model
    target_precision: float | None = None  # threshold tuning: the most recall at this precision (else best F1)
    log_every: int = 10  # optimizer steps between lines of the JSON-lines log

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "grad_accumulation", "teacher_image_size", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("warmup_steps", "bce_warmup_steps", "num_workers", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative, not {getattr(self, name)}")
        if not self.lr > 0 or self.min_lr < 0 or (self.head_lr is not None and not self.head_lr > 0):
            raise SettingsError("learning rates must be positive (min_lr may be 0)")
        choices = {"schedule": SCHEDULES, "precision": PRECISIONS, "normalization": NORMALIZATIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        unknown = sorted(set(self.freeze) - set(PARTS))
        if unknown:
            raise SettingsError(f"cannot freeze {', '.join(unknown)}: the parts are {', '.join(PARTS)}")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise SettingsError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, not {self.crop_scale}")
        if self.max_steps is not None and self.max_steps < 1:
            raise SettingsError("max_steps must be at least 1")
        if self.metric not in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"):
            raise SettingsError(f"metric must be one of mAP, CP, CR, CF1, OP, OR, OF1, not {self.metric!r}")
        if self.early_stop is not None and self.early_stop < 1:
            raise SettingsError("early_stop must be at least 1 epoch")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["freeze"], out["crop_scale"] = list(self.freeze), list(self.crop_scale)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"unknown fine-tuning option(s): {', '.join(unknown)}")
        values = dict(values)
        for name in ("freeze", "crop_scale"):
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    def with_changes(self, **changes: Any) -> FinetuneSettings:
        return replace(self, **changes) if changes else self


#: A setting that learns from a weak start (the tiny random checkpoint, a domain far from the released training
#: data). Upstream's γ− 7 gives easy negatives no gradient and its clamped log none to saturated scores; a
#: random model's scores swing with every Adam step of its backbone, and dropout / stochastic depth make its
#: train-mode outputs noise. So: plain BCE (log-sigmoid: γ 0, no margin), the backbone barely moved (2e-6) and
#: the head at 3e-4 after a 5-step warm-up, no dropout, mild crops, no RandAugment. Measured on the synthetic
#: shapes task in tests/test_training_acceptance.py (docs/training.md).
WEAK_START = {"lr": 2e-6, "head_lr": 3e-4, "warmup_steps": 5, "schedule": "constant", "gamma_neg": 0.0,
              "gamma_pos": 0.0, "clip": 0.0, "dropout": False, "rand_augment": False, "crop_scale": (0.9, 1.0)}
