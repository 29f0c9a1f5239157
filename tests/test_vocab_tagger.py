"""Custom vocabularies on the tiny parity checkpoints: subsets, new tags, mixed RAM++ description counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fiftyone_ram import load_tagger
from fiftyone_ram.vocabulary import EmbeddingCache, TextEncoder, build_vocabulary
from fiftyone_ram.vocabulary.embeddings import description_rows, ram_queries
from test_vocab_support import TEMPLATES, tiny_clip_dir

BUILTIN = ["dog", "bird", "cat", "owl"]  # in both tag lists; not in tag-list order on purpose
NEW = ["Zeppelin", "yak-wool hat"]


def _load(family, parity_dir, upstream_dir, **vocabulary):
    lists = ({"tag_list": upstream_dir / "tag2text_ori_tag_list.txt"} if family == "tag2text" else
             {"tag_list": upstream_dir / "ram_tag_list.txt", "thresholds": upstream_dir / "ram_tag_list_threshold.txt",
              "tag_list_chinese": upstream_dir / "ram_tag_list_chinese.txt"})
    return load_tagger(parity_dir / "fixtures_tiny.json", parity_dir / f"{family}_tiny.pth", family=family,
                       device="cpu", **lists, **vocabulary)


@pytest.fixture(scope="module")
def pixels(parity_dir):
    from fiftyone_ram.images import preprocess

    return preprocess([parity_dir / "chelsea.png", parity_dir / "camera.png"], 224)


@pytest.fixture(scope="module", params=["ram", "ram_plus", "tag2text"])
def full(request, parity_dir, upstream_dir, pixels):
    tagger = _load(request.param, parity_dir, upstream_dir)
    return tagger, torch.sigmoid(tagger.logits(pixels)).numpy()


def test_builtin_subset_scores_as_the_full_vocabulary(full, pixels):
    tagger, scores = full
    subset = BUILTIN + ["person", "man"]
    # The default encoder is a hub download, refused offline in tests: a subset must not need it.
    sub = tagger.with_vocabulary(build_vocabulary(tagger, tags=subset))
    assert sub.tag_list == subset and sub.model.num_classes == len(subset)
    columns = tagger.class_indices(subset)
    np.testing.assert_allclose(torch.sigmoid(sub.logits(pixels)).numpy(), scores[:, columns], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(sub.thresholds, tagger.thresholds[columns])
    assert np.array_equal(sub.excluded, tagger.excluded[columns])
    assert tagger.model.num_classes == len(tagger.tag_list)  # the original is untouched


def test_ram_new_tags_are_prompt_ensembles(parity_dir, upstream_dir, pixels, tmp_path):
    base = _load("ram", parity_dir, upstream_dir)
    encoder = TextEncoder(tiny_clip_dir())
    vocab = build_vocabulary(base, tags=["cat", *NEW, "dog"], text_encoder=encoder, templates=TEMPLATES,
                             tag_thresholds={"cat": 0.9, "yak-wool hat": 0.3}, cache=EmbeddingCache(tmp_path))
    tagger = base.with_vocabulary(vocab)
    embed = tagger.model.label_embed.detach()
    np.testing.assert_allclose(embed[1:3].numpy(), ram_queries(NEW, encoder, templates=TEMPLATES, cache=None),
                               atol=1e-6)
    assert torch.equal(embed[[0, 3]], base.model.label_embed.detach()[base.class_indices(["cat", "dog"])])
    np.testing.assert_allclose(tagger.thresholds, [0.9, 0.5, 0.3, base.thresholds[base.class_indices(["dog"])[0]]])
    assert tagger.names("zh")[1:3] == NEW and tagger.names("zh")[0] == base.names("zh")[781 - 1]

    scores = torch.sigmoid(tagger.logits(pixels)).numpy()
    full = torch.sigmoid(base.logits(pixels, ["cat", "dog"])).numpy()
    np.testing.assert_allclose(scores[:, [0, 3]], full, rtol=0, atol=1e-6)
    predicted = tagger.predict(pixels)
    assert [[name for name, _ in row] for row in predicted] == [
        [name for name, p, t in zip(tagger.tag_list, row, tagger.thresholds) if p > t] for row in scores]


def _described(path, counts):
    """Upstream's layout: a list of single-key objects."""
    texts = {name: [f"a photo of a {name}, view {i}." for i in range(k)] for name, k in counts.items()}
    path.write_text(json.dumps([{name: t} for name, t in texts.items()]))
    return texts


def test_ram_plus_mixed_description_counts(parity_dir, upstream_dir, pixels, tmp_path):
    base = _load("ram_plus", parity_dir, upstream_dir)
    texts = _described(tmp_path / "descriptions.json", {"Zeppelin": 2, "Anole": 5, "kiwi": 1})
    encoder = TextEncoder(tiny_clip_dir())
    common = dict(descriptions=tmp_path / "descriptions.json", text_encoder=encoder, templates=TEMPLATES,
                  cache=EmbeddingCache(tmp_path / "cache"))
    vocab = build_vocabulary(base, tags=["cat", "Zeppelin", "Anole", "yak-wool hat", "kiwi"], **common)
    tagger = base.with_vocabulary(vocab)
    # cat: the checkpoint's 3 rows; Zeppelin/Anole/kiwi: their descriptions (kiwi's replace the built-in
    # ones); the hat: the 3 templates. Rows past a tag's count are padding, masked out of the softmax.
    assert tagger.model.descriptions_per_tag == 5
    assert tagger.model.description_mask.sum(dim=1).tolist() == [3, 2, 5, 3, 1]
    rows = tagger.model.label_embed.detach().view(5, 5, -1)
    np.testing.assert_allclose(rows[1, :2].numpy(), description_rows([texts["Zeppelin"]], encoder, cache=None)[0],
                               atol=1e-6)
    assert torch.count_nonzero(rows[1, 2:]) == 0
    np.testing.assert_allclose(tagger.thresholds, [base.thresholds[780], 0.5, 0.5, 0.5, 0.5])

    scores = torch.sigmoid(tagger.logits(pixels)).numpy()
    np.testing.assert_allclose(scores[:, 0], torch.sigmoid(base.logits(pixels, ["cat"]))[:, 0].numpy(), atol=1e-6)
    alone = base.with_vocabulary(build_vocabulary(base, tags=["Zeppelin"], **common))  # 2 rows, no padding
    assert alone.model.description_mask is None
    np.testing.assert_allclose(scores[:, 1], torch.sigmoid(alone.logits(pixels))[:, 0].numpy(), atol=1e-6)
    # A subset of a padded vocabulary keeps the mask of its tags.
    again = tagger.with_vocabulary(build_vocabulary(tagger, tags=["Anole", "cat"]))
    np.testing.assert_allclose(torch.sigmoid(again.logits(pixels)).numpy(), scores[:, [2, 0]], atol=1e-6)


def test_ram_plus_reads_upstream_description_file(parity_dir, upstream_dir, tmp_path):
    base = _load("ram_plus", parity_dir, upstream_dir)
    names = ["Aerial photography", "Zeppelin"]
    vocab = build_vocabulary(base, tags=names, new_tag_threshold=0.4,
                             descriptions=upstream_dir / "openimages_rare_200_llm_tag_descriptions.json",
                             text_encoder=TextEncoder(tiny_clip_dir()), cache=EmbeddingCache(tmp_path))
    tagger = base.with_vocabulary(vocab)
    assert tagger.tag_list == names and tagger.model.descriptions_per_tag == 51
    assert tagger.model.description_mask is None and list(tagger.thresholds) == pytest.approx([0.4, 0.4])


def test_tag2text_answers_subsets_only(parity_dir, upstream_dir):
    base = _load("tag2text", parity_dir, upstream_dir)
    with pytest.raises(ValueError, match="Tag2Text's label queries are learned"):
        build_vocabulary(base, tags=["cat", "Zeppelin"])
    with pytest.raises(ValueError, match="descriptions are RAM\\+\\+'s"):
        build_vocabulary(base, descriptions={"cat": ["a cat"]})
    # Overriding one threshold keeps every tag by position, repeated names (homographs) included.
    vocab = build_vocabulary(base, tag_thresholds={"cat": 0.99})
    np.testing.assert_array_equal(vocab.builtin_index, np.arange(len(base.tag_list)))
    changed = np.flatnonzero(vocab.thresholds != base.thresholds)
    assert [base.tag_list[i] for i in changed] == ["cat"]


def test_builtin_plus_new_and_threshold_errors(parity_dir, upstream_dir, tmp_path):
    base = _load("ram", parity_dir, upstream_dir)
    vocab = build_vocabulary(base, tags=["cat", *NEW], keep_builtin=True, text_encoder=TextEncoder(tiny_clip_dir()),
                             templates=TEMPLATES, cache=EmbeddingCache(tmp_path))
    assert list(vocab.names) == base.tag_list + NEW and vocab.embedded_names == NEW
    with pytest.raises(ValueError, match="not in the vocabulary"):
        build_vocabulary(base, tags=["cat"], tag_thresholds={"dog": 0.5})


def test_cached_vocabulary_tags_without_the_text_encoder(parity_dir, upstream_dir, pixels, monkeypatch):
    options = dict(tags=["cat", *NEW], text_encoder=tiny_clip_dir(), templates=TEMPLATES)
    first = torch.sigmoid(_load("ram", parity_dir, upstream_dir, **options).logits(pixels))

    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder was loaded for a cached vocabulary")

    monkeypatch.setattr(TextEncoder, "_load", refuse)
    again = torch.sigmoid(_load("ram", parity_dir, upstream_dir, **options).logits(pixels))
    assert torch.equal(first, again)


def test_cli_tags_and_descriptions(parity_dir, upstream_dir, tmp_path):
    from fiftyone_ram.cli import main

    (tmp_path / "tags.txt").write_text("cat\nZeppelin\n\ndog\n")
    _described(tmp_path / "descriptions.json", {"Zeppelin": 2})
    common = ["--model", "ram_plus", "--config", parity_dir / "fixtures_tiny.json", "--checkpoint",
              parity_dir / "ram_plus_tiny.pth", "--tag-list", upstream_dir / "ram_tag_list.txt", "--thresholds",
              upstream_dir / "ram_tag_list_threshold.txt"]
    args = ["tag", parity_dir / "chelsea.png", *common, "--json", "--tags", tmp_path / "tags.txt", "--descriptions",
            tmp_path / "descriptions.json", "--text-encoder", tiny_clip_dir(), "--new-tag-threshold", "0"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    tagger = _load("ram_plus", parity_dir, upstream_dir, tags=["cat", "Zeppelin", "dog"],
                   descriptions=tmp_path / "descriptions.json", text_encoder=tiny_clip_dir(), new_tag_threshold=0.0)
    want = tagger.predict([parity_dir / "chelsea.png"])[0]
    assert "Zeppelin" in [name for name, _ in want]  # threshold 0: a new tag is always reported
    assert [(t["tag"], t["probability"]) for t in record["tags"]] == [(n, pytest.approx(p, abs=1e-6)) for n, p in want]
