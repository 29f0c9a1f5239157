"""Tag2Text captions: tag string → tag encoder over image tokens → beam search over the cached text decoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fiftyone_ram.errors import UserError
from fiftyone_ram.hub_models import BERT_TOKENIZER
from fiftyone_ram.models.beam_search import beam_search

if TYPE_CHECKING:  # pragma: no cover
    from fiftyone_ram.models.tag2text import Tag2Text

TAG_TOKENS = 40  # upstream pads or truncates the tag string to exactly 40 tokens
DEFAULT_TOKENIZER = BERT_TOKENIZER
DEC_TOKEN, ENC_TOKEN = "[DEC]", "[ENC]"


class TokenizerError(UserError, RuntimeError):
    """The WordPiece vocabulary for captions is not available."""


def load_tokenizer(source: str | Path | None = None):
    """bert-base-uncased's WordPiece tokenizer plus upstream's two tokens, [DEC] (start of caption) and
    [ENC] (start of tags); ``source`` may be a vocab.txt, a tokenizer folder or a hub name."""
    from transformers import BertTokenizer

    name = str(source) if source else DEFAULT_TOKENIZER
    try:
        if Path(name).is_file():  # a vocab.txt: its folder is a tokenizer folder for every transformers release
            if Path(name).name != "vocab.txt":
                raise TokenizerError(f"a tokenizer file must be named vocab.txt, not {name}")
            tokenizer = BertTokenizer.from_pretrained(str(Path(name).parent), do_lower_case=True)
        else:
            tokenizer = BertTokenizer.from_pretrained(name)
    except OSError as exc:
        raise TokenizerError(
            f"the caption tokenizer {name!r} is not available ({str(exc).splitlines()[0]}); download it once with "
            f"network access or pass a vocab.txt as the config's \"tokenizer\"") from exc
    tokenizer.add_special_tokens({"bos_token": DEC_TOKEN})
    tokenizer.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    return tokenizer


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    ids = tokenizer(prompt).input_ids[:-1]  # drop the trailing [SEP]
    ids[0] = tokenizer.bos_token_id
    return ids


def encode_tag_strings(tokenizer, tag_strings: Sequence[str], device: torch.device | str
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (B, 40) of "a | b" tag strings as upstream feeds its tag encoder: padded or
    truncated to exactly 40 tokens, the first one [ENC]."""
    encoded = tokenizer(list(tag_strings), padding="max_length", truncation=True, max_length=TAG_TOKENS,
                        return_tensors="pt")
    input_ids = encoded.input_ids.to(device)
    input_ids[:, 0] = tokenizer.convert_tokens_to_ids(ENC_TOKEN)
    return input_ids, encoded.attention_mask.to(device)


@torch.inference_mode()
def generate_caption_ids(model: Tag2Text, tokenizer, image_embeds: torch.Tensor, tag_strings: Sequence[str], *,
                         num_beams: int = 3, max_length: int = 30, min_length: int = 10,
                         repetition_penalty: float = 1.0, prompt: str = "a picture of ",
                         use_cache: bool = True) -> list[list[int]]:
    """Token ids of the best caption per image, prompt included (starting with [DEC]).

    ``image_embeds`` are the backbone's tokens (B, N, D) and ``tag_strings`` one "a | b" string per image.
    ``use_cache=False`` re-runs the decoder over the whole prefix at every step (the reference the cached
    path is tested against; same ids).
    """
    vocab = model.text_decoder.cls.predictions.decoder.out_features
    if len(tokenizer) != vocab:
        raise TokenizerError(f"the tokenizer has {len(tokenizer)} tokens but the checkpoint's captioner {vocab}")
    if len(tag_strings) != len(image_embeds):
        raise ValueError(f"{len(tag_strings)} tag strings for {len(image_embeds)} images")
    device = image_embeds.device
    tag_states = model.tag_encoder(*encode_tag_strings(tokenizer, tag_strings, device), image_embeds)
    start = torch.tensor([_prompt_ids(tokenizer, prompt)] * len(tag_strings), device=device)
    rows = torch.arange(len(tag_strings), device=device).repeat_interleave(num_beams)
    decoder = model.text_decoder

    if use_cache:
        cache = decoder.start_cache(tag_states, rows)

        def step(ids: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
            if parents is not None:
                cache.reorder(parents)
            return decoder.step(ids[:, cache.length:], cache)
    else:
        def step(ids: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
            nonlocal rows
            if parents is not None:
                rows = rows[parents]
            return decoder(ids, tag_states[rows])[:, -1, :]

    best = beam_search(step, start, num_beams=num_beams, max_length=max_length, min_length=min_length,
                       eos_id=tokenizer.sep_token_id, repetition_penalty=repetition_penalty)
    return [seq.tolist() for seq in best]
