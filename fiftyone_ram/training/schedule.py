"""Learning-rate schedules as multipliers of each parameter group's base lr, per optimizer step.

``cosine-epoch`` is upstream's ``cosine_lr_schedule``: constant within an epoch, ``min + (base - min) *
(1 + cos(pi * epoch / epochs)) / 2`` (so 5e-6 then 2.5e-6 over two epochs); ``cosine`` the same curve per
step; ``constant`` the base lr. A linear warm-up over the first steps multiplies any of them.
"""

from __future__ import annotations

import math

import torch


def lr_at(step: int, base: float, *, schedule: str, min_lr: float, steps_per_epoch: int, total_steps: int,
          epochs: int, warmup_steps: int = 0) -> float:
    if schedule == "constant":
        lr = base
    else:
        progress = (step // steps_per_epoch) / epochs if schedule == "cosine-epoch" else step / max(total_steps, 1)
        lr = min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if warmup_steps and step < warmup_steps:
        lr *= (step + 1) / warmup_steps
    return lr


def build_scheduler(optimizer: torch.optim.Optimizer, **schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over the groups' initial lrs (its state is the step count, saved with a resumable run)."""
    bases = [group["lr"] for group in optimizer.param_groups]
    lambdas = [(lambda step, b=b: lr_at(step, b, **schedule) / b) for b in bases]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
