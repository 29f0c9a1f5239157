"""Custom vocabularies on the tiny parity checkpoints: subsets, new tags, mixed RAM++ description counts.

The subject is exactness (a subset scores as the full vocabulary, new queries equal their CLIP embeddings, to
1e-5), which holds at fp32: the taggers here are loaded at fp32 explicitly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fiftyone_ram.vocabulary import EmbeddingCache, TextEncoder, build_vocabulary
from fiftyone_ram.vocabulary.embeddings import description_rows, ram_queries

BUILTIN = ["dog", "bird", "cat", "owl"]  # in both tag lists; not in tag-list order on purpose
NEW = ["Zeppelin", "yak-wool hat"]


@pytest.fixture(scope="module")
def pixels(parity_dir):
    from fiftyone_ram.images import preprocess

    return preprocess([parity_dir / "chelsea.png", parity_dir / "camera.png"], 224)


@pytest.fixture(scope="module", params=["ram", "ram_plus", "tag2text"])
def full(request, tiny_tagger, pixels):
    """Shared by the tests of this module: read it, never change it."""
    tagger = tiny_tagger(request.param, precision="fp32")
    return tagger, torch.sigmoid(tagger.logits(pixels)).numpy()


def test_builtin_subset_scores_as_the_full_vocabulary(full, pixels, assert_scores_close):
    tagger, scores = full
    subset = BUILTIN + ["person", "man"]
    # The default encoder is a hub download, refused offline in tests: a subset must not need it.
    sub = tagger.with_vocabulary(build_vocabulary(tagger, tags=subset))
    assert sub.tag_list == subset and sub.model.num_classes == len(subset)
    columns = tagger.class_indices(subset)
    assert_scores_close(torch.sigmoid(sub.logits(pixels)), scores[:, columns])
    np.testing.assert_array_equal(sub.thresholds, tagger.thresholds[columns])
    assert np.array_equal(sub.excluded, tagger.excluded[columns])
    assert tagger.model.num_classes == len(tagger.tag_list)  # the original is untouched


def test_ram_new_tags_are_prompt_ensembles(tiny_tagger, tiny_clip_text_dir, clip_templates, pixels, tmp_path,
                                           assert_scores_close, assert_same_tags):
    base = tiny_tagger("ram", precision="fp32")
    encoder = TextEncoder(tiny_clip_text_dir())
    vocab = build_vocabulary(base, tags=["cat", *NEW, "dog"], text_encoder=encoder, templates=clip_templates,
                             tag_thresholds={"cat": 0.9, "yak-wool hat": 0.3}, cache=EmbeddingCache(tmp_path))
    tagger = base.with_vocabulary(vocab)
    embed = tagger.model.label_embed.detach()
    assert_scores_close(embed[1:3], ram_queries(NEW, encoder, templates=clip_templates, cache=None))
    assert torch.equal(embed[[0, 3]], base.model.label_embed.detach()[base.class_indices(["cat", "dog"])])
    np.testing.assert_allclose(tagger.thresholds, [0.9, 0.5, 0.3, base.thresholds[base.class_indices(["dog"])[0]]])
    assert tagger.names("zh")[1:3] == NEW and tagger.names("zh")[0] == base.names("zh")[781 - 1]

    scores = torch.sigmoid(tagger.logits(pixels)).numpy()
    full = torch.sigmoid(base.logits(pixels, ["cat", "dog"])).numpy()
    assert_scores_close(scores[:, [0, 3]], full)
    predicted = tagger.predict(pixels)
    decided = [[(name, p) for name, p, t in zip(tagger.tag_list, row, tagger.thresholds) if p > t] for row in scores]
    assert_same_tags(predicted, decided, names=tagger.tag_list, thresholds=tagger.thresholds)


def _described(path, counts):
    """Upstream's layout: a list of single-key objects."""
    texts = {name: [f"a photo of a {name}, view {i}." for i in range(k)] for name, k in counts.items()}
    path.write_text(json.dumps([{name: t} for name, t in texts.items()]))
    return texts


def test_ram_plus_mixed_description_counts(tiny_tagger, tiny_clip_text_dir, clip_templates, pixels, tmp_path,
                                           assert_scores_close):
    base = tiny_tagger("ram_plus", precision="fp32")
    texts = _described(tmp_path / "descriptions.json", {"Zeppelin": 2, "Anole": 5, "kiwi": 1})
    encoder = TextEncoder(tiny_clip_text_dir())
    common = dict(descriptions=tmp_path / "descriptions.json", text_encoder=encoder, templates=clip_templates,
                  cache=EmbeddingCache(tmp_path / "cache"))
    vocab = build_vocabulary(base, tags=["cat", "Zeppelin", "Anole", "yak-wool hat", "kiwi"], **common)
    tagger = base.with_vocabulary(vocab)
    # cat: the checkpoint's 3 rows; Zeppelin/Anole/kiwi: their descriptions (kiwi's replace the built-in
    # ones); the hat: the 3 templates. Rows past a tag's count are padding, masked out of the softmax.
    assert tagger.model.descriptions_per_tag == 5
    assert tagger.model.description_mask.sum(dim=1).tolist() == [3, 2, 5, 3, 1]
    rows = tagger.model.label_embed.detach().view(5, 5, -1)
    assert_scores_close(rows[1, :2], description_rows([texts["Zeppelin"]], encoder, cache=None)[0])
    assert torch.count_nonzero(rows[1, 2:]) == 0
    np.testing.assert_allclose(tagger.thresholds, [base.thresholds[780], 0.5, 0.5, 0.5, 0.5])

    scores = torch.sigmoid(tagger.logits(pixels)).numpy()
    assert_scores_close(scores[:, 0], torch.sigmoid(base.logits(pixels, ["cat"]))[:, 0])
    alone = base.with_vocabulary(build_vocabulary(base, tags=["Zeppelin"], **common))  # 2 rows, no padding
    assert alone.model.description_mask is None
    assert_scores_close(scores[:, 1], torch.sigmoid(alone.logits(pixels))[:, 0])
    # A subset of a padded vocabulary keeps the mask of its tags.
    again = tagger.with_vocabulary(build_vocabulary(tagger, tags=["Anole", "cat"]))
    assert_scores_close(torch.sigmoid(again.logits(pixels)), scores[:, [2, 0]])


def test_ram_plus_reads_upstream_description_file(tiny_tagger, tiny_clip_text_dir, upstream_dir, tmp_path):
    base = tiny_tagger("ram_plus", precision="fp32")
    names = ["Aerial photography", "Zeppelin"]
    vocab = build_vocabulary(base, tags=names, new_tag_threshold=0.4,
                             descriptions=upstream_dir / "openimages_rare_200_llm_tag_descriptions.json",
                             text_encoder=TextEncoder(tiny_clip_text_dir()), cache=EmbeddingCache(tmp_path))
    tagger = base.with_vocabulary(vocab)
    assert tagger.tag_list == names and tagger.model.descriptions_per_tag == 51
    assert tagger.model.description_mask is None and list(tagger.thresholds) == pytest.approx([0.4, 0.4])


def test_tag2text_answers_subsets_only(tiny_tagger):
    base = tiny_tagger("tag2text")
    with pytest.raises(ValueError, match="Tag2Text's label queries are learned"):
        build_vocabulary(base, tags=["cat", "Zeppelin"])
    with pytest.raises(ValueError, match="descriptions are RAM\\+\\+'s"):
        build_vocabulary(base, descriptions={"cat": ["a cat"]})
    # Overriding one threshold keeps every tag by position, repeated names (homographs) included.
    vocab = build_vocabulary(base, tag_thresholds={"cat": 0.99})
    np.testing.assert_array_equal(vocab.builtin_index, np.arange(len(base.tag_list)))
    changed = np.flatnonzero(vocab.thresholds != base.thresholds)
    assert [base.tag_list[i] for i in changed] == ["cat"]


def test_builtin_plus_new_and_threshold_errors(tiny_tagger, tiny_clip_text_dir, clip_templates, tmp_path):
    base = tiny_tagger("ram", precision="fp32")
    vocab = build_vocabulary(base, tags=["cat", *NEW], keep_builtin=True,
                             text_encoder=TextEncoder(tiny_clip_text_dir()), templates=clip_templates,
                             cache=EmbeddingCache(tmp_path))
    assert list(vocab.names) == base.tag_list + NEW and vocab.embedded_names == NEW
    with pytest.raises(ValueError, match="not in the vocabulary"):
        build_vocabulary(base, tags=["cat"], tag_thresholds={"dog": 0.5})


def test_cached_vocabulary_tags_without_the_text_encoder(tiny_tagger, tiny_clip_text_dir, clip_templates, pixels,
                                                         monkeypatch):
    options = dict(tags=["cat", *NEW], text_encoder=tiny_clip_text_dir(), templates=clip_templates)
    first = torch.sigmoid(tiny_tagger("ram", precision="fp32", **options).logits(pixels))

    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder was loaded for a cached vocabulary")

    monkeypatch.setattr(TextEncoder, "_load", refuse)
    again = torch.sigmoid(tiny_tagger("ram", precision="fp32", **options).logits(pixels))
    assert torch.equal(first, again)  # the cached embeddings are the computed ones, bit for bit: same forward pass


def test_cli_tags_and_descriptions(parity_dir, tmp_path, tiny_cli_args, tiny_tagger, tiny_clip_text_dir,
                                   assert_same_tags, path_tolerance):
    """The command line reaches the same vocabulary, at the default precision (what users run)."""
    from fiftyone_ram.cli import main

    (tmp_path / "tags.txt").write_text("cat\nZeppelin\n\ndog\n")
    _described(tmp_path / "descriptions.json", {"Zeppelin": 2})
    args = ["tag", parity_dir / "chelsea.png", *tiny_cli_args("ram_plus"), "--json", "--tags", tmp_path / "tags.txt",
            "--descriptions", tmp_path / "descriptions.json", "--text-encoder", tiny_clip_text_dir(),
            "--new-tag-threshold", "0"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    tagger = tiny_tagger("ram_plus", tags=["cat", "Zeppelin", "dog"], descriptions=tmp_path / "descriptions.json",
                         text_encoder=tiny_clip_text_dir(), new_tag_threshold=0.0)
    want = tagger.predict([parity_dir / "chelsea.png"])[0]
    assert "Zeppelin" in [name for name, _ in want]  # threshold 0: a new tag is always reported
    assert_same_tags([[(t["tag"], t["probability"]) for t in record["tags"]]], [want], names=tagger.tag_list,
                     thresholds=tagger.thresholds, **path_tolerance(tagger.precision))
