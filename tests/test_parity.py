"""Exact agreement with what upstream computes, on the tiny upstream-layout checkpoints in ../shared."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

TOL = 1e-4  # ours against upstream's numbers: two implementations of the same float32 formulas


@pytest.fixture(scope="module")
def fixtures(parity_dir):
    return json.loads((parity_dir / "fixtures_tiny.json").read_text())


@pytest.fixture(scope="module")
def images(parity_dir, fixtures):
    return [str(parity_dir / f"{name}.png") for name in fixtures["images"]]


@pytest.fixture(scope="module", params=["ram", "ram_plus", "tag2text"])
def case(request, parity_dir, tiny_tagger):
    """Shared by the tests of this module: read it, never change it."""
    family = request.param
    expected = torch.load(parity_dir / f"{family}_tiny_expected.pt", weights_only=True)
    return family, tiny_tagger(family, precision="fp32"), expected


def _split(joined: str) -> list[str]:
    return [t.strip() for t in joined.split("|")] if joined else []


def test_preprocessing_matches_upstream(case, images):
    _, tagger, expected = case
    pixels = tagger.preprocess(images)
    assert pixels.shape == expected["pixel_values"].shape
    assert torch.equal(pixels, expected["pixel_values"])


def test_image_embeds_and_logits_match(case):
    family, tagger, expected = case
    with torch.inference_mode():
        embeds = tagger.model.image_embeds(expected["pixel_values"])
        logits = tagger.model.logits(embeds)
    if "image_embeds" in expected:
        assert (embeds - expected["image_embeds"]).abs().max().item() < TOL
    assert logits.shape == expected["logits"].shape
    assert (logits - expected["logits"]).abs().max().item() < TOL


def test_thresholds_match(case):
    _, tagger, expected = case
    # read from the same text as upstream's, into float32: no arithmetic, so equal on every CPU
    np.testing.assert_array_equal(tagger.thresholds, expected["class_threshold"].numpy())


def test_predicted_tags_match(case, images, fixtures, assert_same_tags):
    """Upstream's tags, but for tags within the margin of their threshold (by upstream's or our probability)."""
    family, tagger, expected = case
    want = [_split(joined) for joined in fixtures["models"][family]["tags"]]
    got = tagger.predict(images)
    assert_same_tags(got, want, names=tagger.tag_list, thresholds=expected["class_threshold"].numpy(),
                     probabilities=torch.sigmoid(expected["logits"]).numpy())
    assert all(0.0 < p <= 1.0 for row in got for _, p in row)


def test_chinese_names_match(case, images, fixtures):
    family, tagger, _ = case
    if family == "tag2text":
        with pytest.raises(ValueError, match="no Chinese"):
            tagger.predict(images[:1], language="zh")
        return
    got = tagger.predict(images, language="zh")
    assert [[n for n, _ in row] for row in got] == [_split(s) for s in fixtures["models"][family]["tags_chinese"]]


def test_subset_scores_equal_full_vocabulary(case, images, assert_scores_close):
    _, tagger, _ = case
    subset = [tagger.tag_list[i] for i in (3000, 7, 1234, 42)]
    full = tagger.probabilities(images[:2])
    part = tagger.probabilities(images[:2], tags=subset)
    assert_scores_close(part, full[:, tagger.class_indices(subset)])


def test_number_threshold_overrides_per_class(case, images):
    _, tagger, _ = case
    probs = tagger.probabilities(images[:1])[0]
    got = tagger.predict(images[:1], threshold=0.5)[0]
    expected = [tagger.tag_list[i] for i in np.flatnonzero((probs > 0.5) & ~tagger.excluded)]
    assert [n for n, _ in got] == expected


def test_embeddings(case, images, assert_scores_close):
    family, tagger, expected = case
    vectors = tagger.embed(images)
    assert vectors.shape == (5, tagger.embedding_dim)
    if "image_embeds" in expected:
        assert_scores_close(vectors, expected["image_embeds"][:, 0], atol=TOL)


def test_tag2text_captions_match(tiny_tagger, images, fixtures):
    tagger = tiny_tagger("tag2text", precision="fp32")
    want = fixtures["models"]["tag2text"]
    assert tagger.caption_ids(images) == want["caption_ids"]
    assert tagger.caption(images) == want["captions"]
    assert tagger.caption_ids(images, tags=want["given_tags"]) == want["caption_ids_given_tags"]
    assert tagger.caption(images, tags=want["given_tags"]) == want["captions_given_tags"]


@pytest.mark.slow
def test_tag2text_batched_captions_equal_single(tiny_tagger, images):
    """Upstream's batched beam search is wrong above one image (issue #80); ours must not be."""
    tagger = tiny_tagger("tag2text", precision="fp32")
    tagger.batch_size = 5
    batched = tagger.caption_ids(images)
    tagger.batch_size = 1
    assert batched == tagger.caption_ids(images)
