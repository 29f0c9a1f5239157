"""Prompt-ensemble and description embeddings equal upstream's formulas; the cache skips the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fiftyone_ram.vocabulary import EmbeddingCache, TextEncoder
from fiftyone_ram.vocabulary.embeddings import description_rows, ram_queries, template_rows
from fiftyone_ram.vocabulary.templates import prompt_texts, templates_from_source
from fiftyone_ram.vocabulary.text_encoder import PromptTooLongError


class CountingEncoder(TextEncoder):
    """A real encoder that counts the texts it encodes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoded = 0

    def encode(self, texts, *, truncate):
        self.encoded += len(texts)
        return super().encode(texts, truncate=truncate)


def test_prompt_texts_follow_upstream_rules(clip_templates):
    assert prompt_texts("Aerial_photography/Drone.", clip_templates) == [
        "This is a photo of a aerial photography or drone.",  # article from the raw name: "A" is not a vowel
        "itap of my aerial photography or drone.",
        "There is the aerial photography or drone in the scene.",
    ]
    assert prompt_texts("owl", ["{article} {}", "the {} toy", "The {}"]) == [
        "This is an owl", "This is the owl toy", "The owl"]  # prefix on lower-case "a..."/"the..." only


def test_templates_are_parsed_not_imported():
    source = ("import clip_that_is_not_installed\nsingle = ['x {}']\n"
              "multiple_templates = [\n 'a {}.',\n 'b {article} {}.',\n]\n")
    assert templates_from_source(source) == ("a {}.", "b {article} {}.")
    with pytest.raises(ValueError, match="exactly one"):
        templates_from_source("multiple_templates = ['no slot']")


def test_ram_query_is_the_prompt_ensemble(tmp_path, tiny_clip_text_dir, clip_templates, clip_reference_embeddings,
                                          assert_scores_close):
    folder = tiny_clip_text_dir()
    names = ["Xylophone", "egg/box"]
    got = ram_queries(names, TextEncoder(folder), templates=clip_templates, cache=EmbeddingCache(tmp_path))
    for name, row in zip(names, got):
        units = clip_reference_embeddings(folder, prompt_texts(name, clip_templates))
        mean = units.mean(dim=0)
        assert_scores_close(row, mean / mean.norm())
    assert got.shape == (2, 512) and got.dtype == np.float32


def test_descriptions_are_unit_rows_truncated_to_the_context(tmp_path, tiny_clip_text_dir, clip_reference_embeddings,
                                                             assert_scores_close):
    folder = tiny_clip_text_dir()
    long = " ".join("abcdefghij" * 10)  # 100 one-token words
    groups = [["a photo of a kiwi.", long], ["green and fuzzy"]]
    rows = description_rows(groups, TextEncoder(folder), cache=EmbeddingCache(tmp_path))
    assert [r.shape for r in rows] == [(2, 512), (1, 512)]
    truncated = " ".join(long.split()[:75])  # start and end tokens take the other two of 77 places
    want = clip_reference_embeddings(folder, ["a photo of a kiwi.", truncated, "green and fuzzy"])
    assert_scores_close(np.concatenate(rows), want)


def test_too_long_template_text_is_an_error(tiny_clip_text_dir, clip_templates):
    with pytest.raises(PromptTooLongError, match="77 tokens"):
        ram_queries(["x " * 80], TextEncoder(tiny_clip_text_dir()), templates=clip_templates, cache=None)


def test_cache_hits_skip_the_encoder(tmp_path, tiny_clip_text_dir, clip_templates):
    folder = tiny_clip_text_dir()
    cache = EmbeddingCache(tmp_path)
    first = CountingEncoder(folder)
    rows = template_rows(["kiwi", "owl"], first, templates=clip_templates, cache=cache)
    assert first.encoded == 6

    again = CountingEncoder(folder)
    same = template_rows(["owl", "kiwi"], again, templates=clip_templates, cache=cache)
    assert again.encoded == 0 and not again.loaded  # not even loaded
    np.testing.assert_array_equal(same[0], rows[1])
    # RAM's ensemble starts from the same unit rows: no encoding either.
    ram_queries(["kiwi"], again, templates=clip_templates, cache=cache)
    assert again.encoded == 0

    template_rows(["kiwi", "yak"], again, templates=clip_templates, cache=cache)
    assert again.encoded == 3  # only the new tag
    template_rows(["kiwi"], again, templates=clip_templates[:2], cache=cache)
    assert again.encoded == 5  # other texts, other entry


def test_cache_key_follows_the_encoder_weights(tmp_path, tiny_clip_text_dir, clip_templates):
    cache = EmbeddingCache(tmp_path)
    a, b = CountingEncoder(tiny_clip_text_dir(0)), CountingEncoder(tiny_clip_text_dir(1))
    assert a.identity != b.identity
    rows_a = template_rows(["kiwi"], a, templates=clip_templates, cache=cache)[0]
    rows_b = template_rows(["kiwi"], b, templates=clip_templates, cache=cache)[0]
    assert b.encoded == 3 and not np.allclose(rows_a, rows_b)


def test_model_object_encoder_matches_folder(tmp_path, tiny_clip_text_dir, assert_scores_close):
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    folder = tiny_clip_text_dir()
    model = CLIPTextModelWithProjection.from_pretrained(str(folder))
    encoder = TextEncoder(model, tokenizer=CLIPTokenizer.from_pretrained(str(folder)))
    got = encoder.encode(["a kiwi"], truncate=False)
    assert_scores_close(got, TextEncoder(folder).encode(["a kiwi"], truncate=False))
    assert encoder.identity.startswith("weights:")
    assert torch.allclose(torch.from_numpy(got).norm(dim=-1), torch.ones(1))
