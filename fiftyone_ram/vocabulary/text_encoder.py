"""CLIP's text tower (transformers), the one upstream embeds tags with: ViT-B/16 unless told otherwise.

Only building a vocabulary needs it, and only for texts that are not cached yet; so it is loaded lazily,
and its cache identity is known without loading it (a hub name, or a hash of a local folder's files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fiftyone_ram.errors import UserError
from fiftyone_ram.hub_models import CLIP

if TYPE_CHECKING:  # pragma: no cover
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

#: The text tower of OpenAI's CLIP ViT-B/16 on the Hugging Face hub: upstream's ``clip.load("ViT-B/16")``.
DEFAULT_TEXT_ENCODER = CLIP
_FOLDER_FILES = ("*.json", "*.txt", "*.safetensors", "*.bin", "*.model")


class TextEncoderError(UserError, RuntimeError):
    """The text encoder cannot be loaded (e.g. offline and not downloaded yet); the message says what to do."""


class PromptTooLongError(ValueError):
    """A prompt-template text is longer than CLIP's context; upstream fails on these too (no truncation)."""


class TextEncoder:
    """L2-normalised CLIP text embeddings of texts.

    ``source``: a hub name, a local folder holding both the model and the tokenizer, or a
    ``CLIPTextModelWithProjection`` object (its tokenizer: ``tokenizer``, else loaded from the model's
    ``name_or_path``). ``batch_size`` texts are
    encoded per forward pass; all are padded to the full context as upstream's ``clip.tokenize`` does.
    """

    def __init__(self, source: str | Path | CLIPTextModelWithProjection = DEFAULT_TEXT_ENCODER, *,
                 tokenizer: CLIPTokenizer | str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 256) -> None:
        self.source = source
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._tokenizer_source = tokenizer
        self._model = None if isinstance(source, (str, Path)) else source
        self._tokenizer = tokenizer if not isinstance(tokenizer, (str, Path, type(None))) else None
        self._identity: str | None = None

    # -- identity (cache key) -----------------------------------------------------------------------
    @property
    def identity(self) -> str:
        """What the embeddings depend on, without loading the model: hub name, folder content, or weights."""
        if self._identity is None:
            self._identity = self._compute_identity()
        return self._identity

    def _compute_identity(self) -> str:
        if self._model is not None:
            digest = hashlib.sha256()
            for name, tensor in self._model.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            digest.update(_tokenizer_fingerprint(self.tokenizer).encode())
            return f"weights:{digest.hexdigest()}"
        parts = [self._folder_or_name(self.source)]
        tokenizer = self._tokenizer_source
        if isinstance(tokenizer, (str, Path)):
            parts.append(self._folder_or_name(tokenizer))
        elif tokenizer is not None:
            parts.append(_tokenizer_fingerprint(tokenizer))
        return "|".join(parts)

    @staticmethod
    def _folder_or_name(source: str | Path) -> str:
        return source_identity(source)

    # -- loading --------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None and self._tokenizer is not None

    @property
    def model(self) -> CLIPTextModelWithProjection:
        if self._model is None:
            from transformers import CLIPTextModelWithProjection

            self._model = self._load(CLIPTextModelWithProjection, self.source)
        return self._model

    @property
    def tokenizer(self) -> CLIPTokenizer:
        if self._tokenizer is None:
            from transformers import CLIPTokenizer

            source = self._tokenizer_source if self._tokenizer_source is not None else self.source
            if not isinstance(source, (str, Path)):
                source = source.config._name_or_path or DEFAULT_TEXT_ENCODER
            self._tokenizer = self._load(CLIPTokenizer, source)
        return self._tokenizer

    def _load(self, cls, source: str | Path):
        try:
            return cls.from_pretrained(str(source))
        except (OSError, ValueError) as exc:
            raise TextEncoderError(
                f"cannot load the CLIP text encoder {source!s} ({type(exc).__name__}: {exc}). Building embeddings "
                f"for new tags needs it once (it is downloaded from the Hugging Face hub on first use); offline, "
                f"pass a local folder holding a CLIPTextModelWithProjection and its tokenizer as text_encoder="
            ) from exc

    @property
    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    # -- encoding -------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], *, truncate: bool) -> np.ndarray:
        """(N, D) float32 unit vectors. ``truncate``: cut long texts to the context (upstream does this for
        LLM descriptions); otherwise a text longer than the context raises :class:`PromptTooLongError`
        (upstream's ``clip.tokenize`` fails on these as well)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.projection_dim), np.float32)
        model = self.model.to(self.device, torch.float32).eval()
        length = self.context_length
        if not truncate:
            self._check_lengths(texts, length)
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start:start + self.batch_size], padding="max_length", max_length=length,
                                   truncation=True, return_tensors="pt")
            with torch.inference_mode():
                embeds = model(input_ids=batch["input_ids"].to(self.device),
                               attention_mask=batch["attention_mask"].to(self.device)).text_embeds.float()
            out.append((embeds / embeds.norm(dim=-1, keepdim=True)).cpu().numpy())
        return np.concatenate(out)

    def _check_lengths(self, texts: list[str], length: int) -> None:
        ids = self.tokenizer(texts, truncation=False)["input_ids"]
        too_long = [(text, len(row)) for text, row in zip(texts, ids) if len(row) > length]
        if too_long:
            text, count = too_long[0]
            raise PromptTooLongError(
                f"{len(too_long)} prompt text(s) exceed CLIP's {length} tokens, e.g. {text!r} ({count} tokens): "
                f"shorten the tag name, or (RAM++) give descriptions for it, which are truncated as upstream does")


def source_identity(source: str | Path) -> str:
    """A text tower's cache identity without loading it: its hub name, or a hash of a local folder's files."""
    path = Path(source).expanduser()
    if path.is_dir():
        digest = hashlib.sha256()
        files = sorted({f for pattern in _FOLDER_FILES for f in path.glob(pattern) if f.is_file()})
        for file in files:
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
        return f"folder:{digest.hexdigest()}"
    return f"hub:{source}"


def _tokenizer_fingerprint(tokenizer) -> str:
    state = tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else \
        json.dumps(sorted(tokenizer.get_vocab().items()))
    return "tokenizer:" + hashlib.sha256(state.encode()).hexdigest()


def resolve_text_encoder(text_encoder: TextEncoder | str | Path | CLIPTextModelWithProjection | None, *,
                         device: str | torch.device = "cpu") -> TextEncoder:
    """A :class:`TextEncoder` from what users pass: None (ViT-B/16), a name, a folder, a model or an encoder."""
    if isinstance(text_encoder, TextEncoder):
        return text_encoder
    return TextEncoder(DEFAULT_TEXT_ENCODER if text_encoder is None else text_encoder, device=device)
