"""The Swin image encoder: timm's SwinTransformer, fed upstream's weights, returning upstream's tokens."""

from __future__ import annotations

import re

import torch
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn
from torch import nn

from fiftyone_ram.models.config import ModelConfig

#: Upstream's stochastic depth for every Swin it builds (rising linearly over the blocks, as timm's); it only
#: acts in train mode, so inference is unchanged by it.
DROP_PATH_RATE = 0.1


def build_swin(config: ModelConfig) -> SwinTransformer:
    """timm's Swin at the config's size, headless (upstream's Swin has no classifier)."""
    s = config.swin
    swin = SwinTransformer(
        img_size=config.image_size,
        patch_size=s.patch_size,
        window_size=s.window_size,
        embed_dim=s.embed_dim,
        depths=s.depths,
        num_heads=s.num_heads,
        num_classes=0,
        drop_path_rate=DROP_PATH_RATE,
    )
    # timm keeps Swin on its explicit-softmax attention unless TIMM_FUSED_ATTN=2; the fused kernel is ~1.4x
    # faster on CPU here and changes outputs only by ~1e-6, well inside the parity tolerance.
    set_fused_attention(swin, True)
    return swin


def swin_tokens(swin: SwinTransformer, pixel_values: torch.Tensor) -> torch.Tensor:
    """``[mean(F); F]`` over the final normalised last-stage tokens F, row-major: (B, 1 + H*W, C)."""
    features = swin.forward_features(pixel_values)  # (B, H, W, C), NHWC in timm >= 0.9
    tokens = features.flatten(1, 2)
    return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)


def convert_swin_state_dict(state_dict: dict[str, torch.Tensor], swin: SwinTransformer) -> dict[str, torch.Tensor]:
    """Upstream (original Microsoft layout) Swin keys to timm's, with timm's own converter.

    It drops the recomputed buffers, moves each downsample from the end of stage i to the start of stage i+1,
    and resizes relative-position tables only when the window differs.
    """
    return checkpoint_filter_fn(state_dict, swin)


def init_swin_buffers(module: nn.Module) -> None:
    """Recompute the non-persistent buffers (relative position index, shift masks) after a meta-device build."""
    for sub in module.modules():
        init = getattr(sub, "init_non_persistent_buffers", None)
        if init is None:
            continue
        for name, buf in list(sub.named_buffers(recurse=False)):
            if buf is not None and buf.is_meta:
                sub.register_buffer(name, torch.empty(buf.shape, dtype=buf.dtype), persistent=False)
        init()


def set_fused_attention(swin: SwinTransformer, enabled: bool) -> None:
    """Choose timm's attention path per model (timm decides it globally at construction time)."""
    for sub in swin.modules():
        if hasattr(sub, "fused_attn") and hasattr(sub, "relative_position_bias_table"):
            sub.fused_attn = enabled


def to_upstream_swin_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's Swin keys back to upstream's (the reverse of :func:`convert_swin_state_dict`): each downsample
    moves from the start of stage i + 1 to the end of stage i. The recomputed buffers are not written (upstream's
    loaders drop and rebuild them)."""
    out = {}
    for key, value in state_dict.items():
        out[re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)] = value
    return out
