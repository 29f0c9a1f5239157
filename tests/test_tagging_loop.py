"""The one tagging loop (``Tagger.iter_batches``) and the one decision rule, on the tiny parity checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_ram import load_tagger
from fiftyone_ram.decision import decide

ATOL = 1e-5  # float32 scores across batch shapes and kernels


def _tagger(family, parity_dir, upstream_dir):
    lists = ({"tag_list": upstream_dir / "tag2text_ori_tag_list.txt"} if family == "tag2text" else
             {"tag_list": upstream_dir / "ram_tag_list.txt", "thresholds": upstream_dir / "ram_tag_list_threshold.txt"})
    return load_tagger(parity_dir / "fixtures_tiny.json", parity_dir / f"{family}_tiny.pth", family=family,
                       device="cpu", **lists)


@pytest.fixture(scope="module")
def images(parity_dir):
    return sorted(str(p) for p in parity_dir.glob("*.png"))


def test_decision_rule_is_strictly_above_never_excluded_in_tag_list_order():
    probs = np.array([[0.5, 0.9, 0.7, 0.6]], dtype=np.float32)
    limits = np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32)
    indices = np.array([3, 0, 2, 1])  # asked out of tag-list order
    excluded = np.array([False, False, True, False])  # tag-list position 2 is never emitted
    (columns,) = decide(probs, limits, indices=indices, excluded=excluded)
    # column 0 equals its threshold (not above); column 2 is excluded; the rest by tag-list position 0, 1
    assert columns.tolist() == [1, 3]
    assert [c.tolist() for c in decide(probs, 0.65)] == [[1, 2]]


def test_unreadable_images_are_reported_by_position_and_the_rest_scored(parity_dir, upstream_dir, images, tmp_path):
    tagger = _tagger("ram", parity_dir, upstream_dir)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    inputs = [images[0], str(tmp_path / "missing.png"), images[1], str(broken), images[2]]
    subset = tagger.tag_list[:50]
    batches = list(tagger.iter_batches(inputs, tags=subset, batch_size=2))
    assert [b.positions for b in batches] == [[0], [2], [4]]
    errors = {p: m for b in batches for p, m in b.errors.items()}
    assert sorted(errors) == [1, 3] and "does not exist" in errors[1] and str(broken) in errors[3]
    probs = np.concatenate([b.probabilities for b in batches])
    np.testing.assert_allclose(probs, tagger.probabilities(images[:3], tags=subset), rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.concatenate([b.embeddings for b in batches]), tagger.embed(images[:3]),
                               rtol=0, atol=ATOL)
    assert all(b.indices.tolist() == list(range(50)) for b in batches)
    with pytest.raises(ValueError, match="does not exist"):  # the one-call API refuses a bad image
        tagger.predict(inputs)


def test_tag2text_runs_its_backbone_once_for_tags_embedding_and_caption(parity_dir, upstream_dir, images):
    tagger = _tagger("tag2text", parity_dir, upstream_dir)
    calls = []
    stem = tagger.model.visual_encoder.patch_embed  # the first step of every Swin pass
    hook = stem.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    try:
        (batch,) = tagger.iter_batches(images, caption=True, batch_size=len(images))
    finally:
        hook.remove()
    assert sum(calls) == len(images)  # each image through Swin once (in micro-batches)
    tagger.batch_size = len(images)
    assert batch.caption_ids == tagger.caption_ids(images)
    assert batch.captions == tagger.caption(images)
    decided = tagger.decide(batch.probabilities, batch.indices)
    assert [[n for n, _ in row] for row in decided] == [[n for n, _ in row] for row in tagger.predict(images)]
    with pytest.raises(ValueError, match="Tag2Text"):
        next(_tagger("ram", parity_dir, upstream_dir).iter_batches(images, caption=True))
