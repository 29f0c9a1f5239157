"""The loss functions of upstream's training, as formulas on tensors (``upstream-ram-spec.md`` §1.5).

torch has no asymmetric loss (ASL, Ridnik et al. 2021) and timm's ``AsymmetricLossMultiLabel`` differs in
what it clips and how it reduces, so it is written here; the caption loss is torch's cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Upstream's tagging loss: ASL with these focusing exponents, probability margin and log floor.
TAG_GAMMA_NEG, TAG_GAMMA_POS, CLIP, EPS = 7.0, 0.0, 0.05, 1e-8
#: RAM++'s image-text alignment loss: the same ASL with a softer negative exponent.
ALIGNMENT_GAMMA_NEG = 4.0
#: The text decoder's cross-entropy label smoothing.
LABEL_SMOOTHING = 0.1
IGNORE = -100  # target of positions that give no loss (padding, the prompt)


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, *, gamma_neg: float = TAG_GAMMA_NEG,
                    gamma_pos: float = TAG_GAMMA_POS, clip: float = CLIP, eps: float = EPS) -> torch.Tensor:
    """ASL summed over every (image, class): ``-(y log p + (1-y) log p_m) (1 - p_t)^γ``.

    ``p_m = min(1 - p + clip, 1)`` shifts negatives so that easy ones (p <= clip) give no loss at all; the
    focusing weight is computed without gradient, as upstream's. Works in float32 whatever the autocast dtype.
    """
    logits, targets = logits.float(), targets.to(torch.float32)
    if not clip and gamma_neg == 0 and gamma_pos == 0:
        # Plain BCE (the weak start's warm-up): torch's log-sigmoid form keeps a gradient where the clamped
        # log of upstream's formula has none (a saturated random model would never come back).
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    p = torch.sigmoid(logits)
    p_neg = (1 - p + clip).clamp(max=1) if clip and clip > 0 else 1 - p
    loss = targets * torch.log(p.clamp(min=eps)) + (1 - targets) * torch.log(p_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.no_grad():
            p_t = p * targets + p_neg * (1 - targets)
            gamma = gamma_pos * targets + gamma_neg * (1 - targets)
            weight = torch.pow(1 - p_t, gamma)
        loss = loss * weight
    return -loss.sum()


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = LABEL_SMOOTHING
                 ) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts token t + 1; targets of ``IGNORE`` give nothing; mean over
    the rest."""
    shifted = logits[:, :-1, :].float()
    return F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), targets[:, 1:].reshape(-1),
                           ignore_index=IGNORE, label_smoothing=label_smoothing)


def distillation_loss(image_embedding: torch.Tensor, clip_image_features: torch.Tensor) -> torch.Tensor:
    """L1 (mean) between the projected mean image token and the CLIP teacher's image feature."""
    return F.l1_loss(image_embedding.float(), clip_image_features.float())
