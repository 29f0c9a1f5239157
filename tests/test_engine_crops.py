"""Crops of images and the crop encoders of tag cleaning: the tiny RAM and a tiny random CLIP."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")


def test_crop_is_in_memory_clamped_and_never_empty():
    from fiftyone_ram.engine.crops import MIN_CROP_PIXELS, crop

    image = Image.new("RGB", (100, 50))
    assert crop(image, (0.1, 0.2, 0.5, 0.4)).size == (50, 20)
    assert crop(image, (0.9, 0.9, 0.5, 0.5)).size == (10, 5 if 5 >= MIN_CROP_PIXELS else MIN_CROP_PIXELS)
    assert crop(image, (0.5, 0.5, 0.0, 0.0)).size == (MIN_CROP_PIXELS, MIN_CROP_PIXELS)
    assert crop(image, (0.2, 0.2, 0.2, 0.2), margin=0.5).size == (40, 20)


def test_tagger_encoder_embeds_and_scores_each_crops_own_category(ram_never_car, parity_pngs, assert_scores_close):
    from fiftyone_ram.engine.crops import TaggerCrops

    tagger = ram_never_car
    crops = [Image.open(p).convert("RGB").crop((0, 0, 120, 90)) for p in parity_pngs[:3]]
    encoder = TaggerCrops(tagger)
    embeddings, probs = encoder.encode(crops, ["dog", "cat", "not a ram tag"])
    assert embeddings.shape == (3, 512)
    assert_scores_close(embeddings, tagger.embed(crops))
    expected = tagger.probabilities(crops, ["dog", "cat"])
    assert_scores_close(probs[:2], [expected[0, 0], expected[1, 1]])
    assert np.isnan(probs[2]) and encoder.threshold("not a ram tag") is None
    assert encoder.threshold("dog") == 0.0 and encoder.threshold("car") == 1.0


def test_clip_encoder_gives_projected_embeddings(tiny_clip_vision, ram_never_car, parity_pngs, assert_scores_close):
    from fiftyone_ram.engine.crops import ClipCrops, EncoderWithTagger

    crops = [Image.open(p).convert("RGB") for p in parity_pngs[:2]]
    embeddings, probs = ClipCrops(tiny_clip_vision, device="cpu").encode(crops, ["dog", "cat"])
    assert embeddings.shape == (2, 24) and probs is None
    both = EncoderWithTagger(ClipCrops(tiny_clip_vision, device="cpu"), ram_never_car)
    embeddings2, probs2 = both.encode(crops, ["dog", "cat"])
    assert probs2.shape == (2,)
    assert_scores_close(embeddings2, embeddings)
