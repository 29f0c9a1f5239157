"""The tiny random CLIP text model of the vocabulary tests (conftest's ``tiny_clip_text_dir``) tokenizes
every test text without the unknown token."""

from __future__ import annotations

from transformers import CLIPTokenizer


def test_tiny_tokenizer_covers_printable_ascii(tiny_clip_text_dir):
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_clip_text_dir()))
    ids = tokenizer("There is the Xylophone_case/box, 3D & more!")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[1:-1]  # no unknown characters
