"""A tiny random CLIP text model and tokenizer for the vocabulary tests (written to disk, never downloaded).

Its projection is 512 wide like ViT-B/16's, so its embeddings fit the tiny parity checkpoints' label queries.
The byte-level BPE vocabulary holds every printable ASCII character (alone and word-final), so no test text
falls back to the unknown token (which CLIP's tokenizer maps to end-of-text, where the pooling reads).
"""

from __future__ import annotations

import json
import string
from functools import lru_cache
import tempfile
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

CONTEXT = 77
#: Three of upstream's template shapes, written here so that no test needs the upstream download.
TEMPLATES = ("a photo of {article} {}.", "itap of my {}.", "There is the {} in the scene.")


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    chars = [c for c in string.printable if not c.isspace()]
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    merges = ["t h", "th e</w>", "o f</w>"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=CONTEXT, projection_dim=512,
                            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                            pad_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(seed)
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    return folder


@lru_cache(maxsize=None)
def tiny_clip_dir(seed: int = 0) -> Path:
    """One folder per seed and test process."""
    return write_tiny_clip(Path(tempfile.mkdtemp(prefix="tiny-clip-")), seed)


def reference_embeddings(folder: Path, texts: list[str]) -> torch.Tensor:
    """transformers' CLIP straight on the texts (none longer than the context), L2-normalised: what the
    formulas start from."""
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    model = CLIPTextModelWithProjection.from_pretrained(str(folder)).eval()
    batch = tokenizer(texts, padding="max_length", max_length=CONTEXT, return_tensors="pt")
    with torch.no_grad():
        embeds = model(**batch).text_embeds
    return embeds / embeds.norm(dim=-1, keepdim=True)


def test_tiny_tokenizer_covers_printable_ascii():
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_clip_dir()))
    ids = tokenizer("There is the Xylophone_case/box, 3D & more!")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[1:-1]  # no unknown characters
