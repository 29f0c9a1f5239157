"""A checkpoint's architecture read from its tensor shapes: the released layouts and the tiny fixtures, and a
user's own checkpoint loaded with no config file; offline, one short message for what is missing."""

from __future__ import annotations

import ast
import shutil
from dataclasses import replace

import pytest

from fiftyone_ram.models.architecture import infer_config
from fiftyone_ram.models.config import ConfigError, load_config_file
from fiftyone_ram.models.registry import default_cfgs

RELEASED = {"ram": "ram_swin_large_14m", "ram_plus": "ram_plus_swin_large_14m", "tag2text": "tag2text_swin_14m"}
CLASSES = {"ram": 4585, "ram_plus": 4585, "tag2text": 3429}


def _released_shapes(parity_dir, family: str) -> dict[str, tuple[int, ...]]:
    table = parity_dir.parents[1] / "docs" / "state-dict-keys" / f"{family}_released.tsv"
    rows = (line.rstrip("\n").split("\t") for line in table.read_text().splitlines() if line.strip())
    return {key: ast.literal_eval(shape) for key, shape, _ in rows}


@pytest.mark.parametrize("family", sorted(RELEASED))
def test_the_released_layouts_are_the_registry_architectures(parity_dir, family):
    inferred = infer_config(_released_shapes(parity_dir, family), num_classes=CLASSES[family])
    assert inferred == replace(default_cfgs[RELEASED[family]].architecture, name=None)


@pytest.mark.parametrize("family", sorted(RELEASED))
def test_the_tiny_checkpoints_are_the_fixture_architecture(parity_dir, family):
    from fiftyone_ram.models.checkpoint import read_state_dict

    inferred = infer_config(read_state_dict(parity_dir / f"{family}_tiny.pth"), num_classes=CLASSES[family])
    want = load_config_file(parity_dir / "fixtures_tiny.json", family=family)
    used = ["family", "image_size", "swin", "q2l", "embed_dim"] + {
        "ram": ["bert"], "ram_plus": ["descriptions_per_tag"], "tag2text": ["bert"]}[family]
    assert {k: getattr(inferred, k) for k in used} == {k: getattr(want, k) for k in used}


def test_shapes_that_say_nothing_are_refused(parity_dir):
    shapes = _released_shapes(parity_dir, "ram_plus")
    with pytest.raises(ConfigError, match="number of tags"):
        infer_config(shapes)
    with pytest.raises(ConfigError, match="not a whole number"):
        infer_config(shapes, num_classes=4584)
    with pytest.raises(ConfigError, match="not ram"):
        infer_config(shapes, num_classes=4585, family="ram")
    with pytest.raises(ConfigError, match="which model"):
        infer_config({"visual_encoder.patch_embed.proj.weight": (32, 3, 4, 4)})


@pytest.mark.parametrize("family", ["ram_plus", "tag2text"])
def test_a_checkpoint_without_config_tags_as_with_its_config(family, tiny_tagger, parity_dir, upstream_dir,
                                                             parity_pngs, assert_same_tags, tmp_path):
    from fiftyone_ram import load_tagger

    with_config = tiny_tagger(family)
    files = {"tag_list": upstream_dir / ("tag2text_ori_tag_list.txt" if family == "tag2text" else "ram_tag_list.txt")}
    if family != "tag2text":
        files["thresholds"] = upstream_dir / "ram_tag_list_threshold.txt"
    # the checkpoint alone in a folder (with its tokenizer's vocab.txt, which travels with such checkpoints)
    checkpoint = shutil.copyfile(parity_dir / f"{family}_tiny.pth", tmp_path / "mine.pth")
    shutil.copyfile(parity_dir / "vocab.txt", tmp_path / "vocab.txt")
    without = load_tagger(None, checkpoint, device="cpu", **files)
    assert without.family == family
    assert_same_tags(without.predict(parity_pngs[:2]), with_config.predict(parity_pngs[:2]),
                     names=with_config.tag_list, thresholds=with_config.thresholds)
    if family == "tag2text":
        assert without.config.tokenizer == str(tmp_path / "vocab.txt")
        assert without.caption_ids(parity_pngs[:1]) == with_config.caption_ids(parity_pngs[:1])


def test_offline_one_short_message_names_the_missing_files_and_chinese_is_fetched_only_when_asked(
        parity_dir, upstream_dir, tmp_path, monkeypatch):
    from fiftyone_ram import assets, load_tagger

    monkeypatch.setenv("FIFTYONE_RAM_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(assets, "_download_url", _offline)
    checkpoint = parity_dir / "ram_tiny.pth"
    with pytest.raises(assets.AssetError) as nothing:
        load_tagger(None, checkpoint, device="cpu")
    message = str(nothing.value)
    assert "\n" not in message and "ram_tag_list.txt and ram_tag_list_threshold.txt are missing" in message
    assert str(tmp_path / "empty-cache") in message and "chinese" not in message

    with pytest.raises(assets.AssetError) as one:
        load_tagger(None, checkpoint, device="cpu", tag_list=upstream_dir / "ram_tag_list.txt")
    assert str(one.value).startswith("ram_tag_list_threshold.txt is missing")

    tagger = load_tagger(None, checkpoint, device="cpu", tag_list=upstream_dir / "ram_tag_list.txt",
                         thresholds=upstream_dir / "ram_tag_list_threshold.txt")
    assert tagger.names("en")[0] == "3D CG rendering"  # English needs no Chinese file
    with pytest.raises(assets.AssetError, match=r"^ram_tag_list_chinese.txt is missing"):
        tagger.names("zh")
    target = assets.upstream_target("ram_tag_list_chinese.txt")
    target.parent.mkdir(parents=True)
    shutil.copyfile(upstream_dir / "ram_tag_list_chinese.txt", target)  # where the message says to put it
    assert len(tagger.names("zh")) == len(tagger.names("en"))


def _offline(url, target, sha256):
    raise OSError(f"offline: {url}")
