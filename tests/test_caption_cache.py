"""Tag2Text captions with the decoder's key/value cache give exactly the ids of the uncached decoder, which
re-runs the whole prefix at every step, and of upstream (the parity fixtures; transformers 4.40's search)."""

from __future__ import annotations

import json

import pytest
import torch

from fiftyone_ram import load_tagger
from fiftyone_ram.models.captioner import generate_caption_ids

SEP_BOOST = 2.0

# Upstream's captions for the fixture images with [SEP]'s output bias raised by SEP_BOOST, so that captions end
# before max_length (the fixture never does) and the finishing rules decide the output. Made with upstream's
# decoder (`ram.models.bert.BertLMHeadModel`, med_config at the fixture's sizes) given these weights and this
# checkout's tag-encoder states, through transformers 4.40.2 `generate(max_length=30, min_length=10,
# num_beams=..., repetition_penalty=..., eos_token_id=[SEP], pad_token_id=[PAD])`, one image at a time.
# Keyed by (tags, num_beams, repetition_penalty); one list per image.
UPSTREAM_EARLY_END = {
    ("predicted", 1, 1.0): [
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 2, 2, 2, 13, 2, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 2, 2, 2, 13, 2, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 13, 13, 2, 13, 13, 2, 2,
         13, 13, 2, 13, 2, 13, 13, 13, 13, 13, 2, 13, 13, 2],
        [93, 64, 90, 91, 2, 2, 2, 2, 13, 2, 2, 2, 13, 2, 2, 2, 13, 2, 2, 2, 2, 13, 2, 13, 2, 13, 2, 2, 13, 2],
        [93, 64, 90, 91, 63, 2, 63, 2, 69, 63, 3],
    ],
    ("predicted", 1, 1.3): [
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 13, 3],
        [93, 64, 90, 91, 2, 13, 2, 2, 1, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 38, 28, 1, 3],
    ],
    ("predicted", 3, 1.0): [
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 13, 2, 2, 13, 2, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 13, 13, 2, 13, 2, 2, 2, 13, 2, 2, 63, 2, 13, 13, 13, 2, 13, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 13, 13, 2, 13, 13, 13, 2,
         13, 13, 2, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 2],
        [93, 64, 90, 91, 2, 13, 2, 2, 13, 2, 2, 2, 13, 2, 13, 2, 13, 2, 2, 63, 2, 2, 13, 2, 13, 3],
        [93, 64, 90, 91, 63, 1, 63, 2, 69, 63, 3],
    ],
    ("predicted", 3, 1.3): [
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 19, 86, 3],
        [93, 64, 90, 91, 63, 2, 13, 13, 13, 13, 13, 3],
        [93, 64, 90, 91, 1, 2, 63, 2, 13, 2, 3],
        [93, 64, 90, 91, 63, 1, 2, 13, 48, 86, 3],
    ],
    ("given", 1, 1.0): [
        [93, 64, 90, 91, 2, 2, 13, 2, 13, 2, 2, 2, 2, 2, 2, 2, 13, 2, 2, 2, 2, 13, 13, 2, 2, 13, 2, 2, 13, 2],
        [93, 64, 90, 91, 63, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 13, 2, 2, 2, 2, 2, 13, 2, 2, 2, 2, 2, 2, 2],
        [93, 64, 90, 91, 63, 2, 2, 2, 13, 2, 2, 2, 13, 2, 2, 2, 13, 2, 2, 2, 2, 13, 13, 2, 2, 2, 2, 2, 13, 2],
        [93, 64, 90, 91, 2, 13, 2, 13, 2, 2, 2, 2, 13, 2, 2, 2, 13, 2, 2, 1, 2, 1, 2, 13, 2, 13, 2, 2, 13, 2],
        [93, 64, 90, 91, 1, 2, 63, 2, 1, 2, 2, 2, 2, 2, 2, 63, 3],
    ],
    ("given", 1, 1.3): [
        [93, 64, 90, 91, 2, 13, 38, 2, 63, 1, 2, 2, 2, 69, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 2, 2, 2, 2, 2, 2, 2, 2, 3],
        [93, 64, 90, 91, 63, 2, 13, 2, 13, 2, 2, 2, 2, 2, 2, 3],
        [93, 64, 90, 91, 2, 13, 2, 1, 63, 68, 2, 6, 86, 69, 2, 2, 3],
        [93, 64, 90, 91, 1, 2, 63, 48, 69, 1, 3],
    ],
    ("given", 3, 1.0): [
        [93, 64, 90, 91, 63, 2, 2, 13, 13, 2, 2, 2, 13, 2, 2, 2, 13, 2, 2, 63, 2, 2, 13, 2, 2, 13, 2, 2, 13, 2],
        [93, 64, 90, 91, 63, 2, 2, 2, 13, 2, 2, 2, 2, 2, 2, 2, 13, 2, 2, 63, 2, 2, 13, 2, 2, 2, 2, 2, 2, 2],
        [93, 64, 90, 91, 63, 2, 2, 13, 13, 2, 2, 2, 13, 2, 2, 2, 13, 2, 2, 63, 2, 13, 13, 2, 2, 2, 2, 2, 13, 2],
        [93, 64, 90, 91, 2, 13, 2, 13, 13, 2, 63, 2, 63, 1, 2, 2, 13, 2, 2, 63, 2, 1, 2, 13, 2, 13, 2, 2, 13, 2],
        [93, 64, 90, 91, 1, 1, 1, 1, 1, 1, 1, 2, 63, 1, 2, 63, 2, 63, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ],
    ("given", 3, 1.3): [
        [93, 64, 90, 91, 1, 2, 63, 2, 13, 2, 3],
        [93, 64, 90, 91, 63, 2, 2, 2, 13, 2, 2, 2, 3],
        [93, 64, 90, 91, 63, 2, 2, 13, 13, 2, 2, 2, 13, 2, 2, 3],
        [93, 64, 90, 91, 1, 2, 63, 2, 68, 23, 3],
        [93, 64, 90, 91, 1, 48, 63, 2, 69, 49, 3],
    ],
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny decoder's matrices are too small to share among threads; on a busy machine the threads'
    hand-offs cost most of the time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fixtures(parity_dir):
    return json.loads((parity_dir / "fixtures_tiny.json").read_text())


def _tagger(parity_dir, upstream_dir):
    return load_tagger(parity_dir / "fixtures_tiny.json", parity_dir / "tag2text_tiny.pth", family="tag2text",
                       tag_list=upstream_dir / "tag2text_ori_tag_list.txt", device="cpu",
                       precision="fp32")  # the subject: the cached path equals upstream's at fp32


@pytest.fixture(scope="module")
def tagger(parity_dir, upstream_dir):
    return _tagger(parity_dir, upstream_dir)


@pytest.fixture(scope="module")
def early_tagger(parity_dir, upstream_dir):
    """The fixture checkpoint with [SEP] made likelier: captions of several lengths below max_length."""
    tagger = _tagger(parity_dir, upstream_dir)
    with torch.no_grad():
        tagger.model.text_decoder.cls.predictions.decoder.bias[tagger.tokenizer.sep_token_id] += SEP_BOOST
    return tagger


@pytest.fixture(scope="module")
def inputs(tagger, parity_dir, fixtures):
    """Image tokens of the five fixture images and their two tag strings (predicted, given)."""
    pixels = tagger.preprocess([str(parity_dir / f"{name}.png") for name in fixtures["images"]])
    with torch.inference_mode():
        embeds = tagger.model.image_embeds(pixels)
        probs = torch.sigmoid(tagger.model.logits(embeds)).numpy()
    predicted = [" | ".join(name for name, _ in row) for row in tagger.decide(probs, tagger.class_indices(None))]
    given = [fixtures["models"]["tag2text"]["given_tags"]] * len(predicted)
    return embeds, {"predicted": predicted, "given": given}


def _ids(tagger, embeds, tags, **options):
    return generate_caption_ids(tagger.model, tagger.tokenizer, embeds, tags, max_length=30, min_length=10,
                                **options)


@pytest.mark.parametrize("use_cache", [True, False])
def test_captions_equal_parity_fixtures(tagger, inputs, fixtures, use_cache):
    embeds, tags = inputs
    want = fixtures["models"]["tag2text"]
    assert _ids(tagger, embeds, tags["predicted"], num_beams=3, use_cache=use_cache) == want["caption_ids"]
    assert _ids(tagger, embeds, tags["given"], num_beams=3, use_cache=use_cache) == want["caption_ids_given_tags"]


@pytest.mark.parametrize("early", [False, True], ids=["fixture", "early-end"])
@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("penalty", [1.0, 1.3])
@pytest.mark.parametrize("kind", ["predicted", "given"])
def test_cached_equals_uncached(tagger, early_tagger, inputs, early, num_beams, penalty, kind):
    model = early_tagger if early else tagger
    embeds, tags = inputs
    options = dict(num_beams=num_beams, repetition_penalty=penalty)
    cached = _ids(model, embeds, tags[kind], **options)
    assert cached == _ids(model, embeds, tags[kind], use_cache=False, **options)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("penalty", [1.0, 1.3])
@pytest.mark.parametrize("kind", ["predicted", "given"])
def test_early_ending_captions_follow_upstream(early_tagger, inputs, num_beams, penalty, kind):
    embeds, tags = inputs
    want = UPSTREAM_EARLY_END[(kind, num_beams, penalty)]
    assert _ids(early_tagger, embeds, tags[kind], num_beams=num_beams, repetition_penalty=penalty) == want


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize(("kind", "penalty"), [("predicted", 1.0), ("given", 1.3)])
def test_batched_equals_one_at_a_time(early_tagger, inputs, num_beams, kind, penalty):
    """Inputs of one batch finish at different steps; their rows must not disturb the others' caches."""
    embeds, tags = inputs
    options = dict(num_beams=num_beams, repetition_penalty=penalty)
    batched = _ids(early_tagger, embeds, tags[kind], **options)
    single = [_ids(early_tagger, embeds[i:i + 1], tags[kind][i:i + 1], **options)[0] for i in range(len(embeds))]
    assert batched == single
    assert len({len(seq) for seq in batched}) > 1


def test_cached_steps_match_full_forward(tagger, inputs):
    """Logits of every cached step, with rows re-ordered across inputs between steps, equal the last position
    of the full decoder run on the re-ordered sequences."""
    embeds, tags = inputs
    decoder = tagger.model.text_decoder
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        ids = torch.randint(4, 93, (6, 12), generator=generator)
        memory = torch.randn(3, 40, 64, generator=generator)
        rows = torch.tensor([0, 0, 1, 1, 2, 2])
        cache = decoder.start_cache(memory, rows)
        got = decoder.step(ids[:, :4], cache)
        for length in range(4, 12):
            torch.testing.assert_close(got, decoder(ids[:, :length], memory[rows])[:, -1], atol=1e-5, rtol=0)
            parents = torch.randint(0, 6, (6,), generator=generator)
            cache.reorder(parents)
            ids, rows = ids[parents], rows[parents]
            got = decoder.step(ids[:, length:length + 1], cache)
        torch.testing.assert_close(got, decoder(ids, memory[rows])[:, -1], atol=1e-5, rtol=0)
