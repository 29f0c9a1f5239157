"""The CLIP teacher of RAM / RAM++ fine-tuning: image features to distil into the mean image token, and
RAM++'s caption embeddings for image-text alignment.

Upstream loads OpenAI's ``clip`` package (ViT-B/16); transformers holds the same model
(``openai/clip-vit-base-patch16``): ``CLIPVisionModelWithProjection.image_embeds`` is ``encode_image`` (the
projected class token, not normalised) and the text side is :class:`~fiftyone_ram.vocabulary.TextEncoder`
(unit vectors, long captions truncated as upstream's ``truncate=True``). The teacher is frozen and only runs
under ``no_grad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from fiftyone_ram.errors import UserError


class TeacherError(UserError, RuntimeError):
    """The CLIP teacher asked for cannot be used."""


class ClipTeacher:
    def __init__(self, vision, text_encoder=None, *, device: torch.device | str = "cpu") -> None:
        self.vision = vision.to(device).eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.device = torch.device(device)

    @property
    def width(self) -> int:
        return int(self.vision.config.projection_dim)

    @torch.no_grad()
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, D) projected CLIP image features of crops normalised with CLIP's statistics."""
        return self.vision(pixel_values=pixel_values.to(self.device, torch.float32)).image_embeds.float()

    def text_embeddings(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, D) unit CLIP text embeddings, captions truncated to CLIP's context."""
        if self.text_encoder is None:
            raise TeacherError("this teacher was loaded without its text model")
        return torch.from_numpy(self.text_encoder.encode(list(captions), truncate=True)).to(self.device)


def load_teacher(source: str | Path, *, with_text: bool, device: torch.device | str = "cpu") -> ClipTeacher:
    """The teacher from a hub name (cached, or downloaded once) or a local folder of a CLIP model; raises
    :class:`TeacherError` with the reason when it cannot be loaded."""
    from transformers import CLIPVisionModelWithProjection

    from fiftyone_ram.vocabulary.text_encoder import TextEncoder, TextEncoderError

    name = str(source)
    try:
        try:
            vision = CLIPVisionModelWithProjection.from_pretrained(name, local_files_only=True)
        except OSError:
            if Path(name).expanduser().exists():
                raise
            vision = CLIPVisionModelWithProjection.from_pretrained(name)
    except Exception as exc:  # noqa: BLE001  a damaged file fails as SafetensorError, UnpicklingError, ...
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise TeacherError(f"the CLIP teacher {name} is not available ({reason})") from exc
    text = None
    if with_text:
        text = TextEncoder(name, device=device)
        try:
            text.model, text.tokenizer  # noqa: B018  load now: reported before training starts, not later
        except TextEncoderError as exc:
            raise TeacherError(str(exc)) from exc
    return ClipTeacher(vision, text, device=device)
