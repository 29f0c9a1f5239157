"""Upstream checkpoint layouts load; bad files fail with one clear line naming the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fiftyone_ram import load_tagger
from fiftyone_ram.models.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def ram_state(parity_dir):
    return torch.load(parity_dir / "ram_tiny.pth", weights_only=True)["model"]


def _probs(tagger, parity_dir):
    return tagger.probabilities([str(parity_dir / "astronaut.png")])


@pytest.fixture(scope="module")
def reference(parity_dir, tiny_tagger):
    return _probs(tiny_tagger("ram"), parity_dir)


def _error_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("layout", ["bare", "vision_multi", "with_optimizer", "state_dict"])
def test_upstream_layouts_give_identical_scores(layout, ram_state, parity_dir, tiny_tagger, reference, tmp_path):
    if layout == "bare":
        obj = dict(ram_state)
    elif layout == "vision_multi":
        obj = {"model": {k.replace("tagging_head", "vision_multi"): v for k, v in ram_state.items()}}
    elif layout == "with_optimizer":
        obj = {"model": ram_state, "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []},
               "epoch": 4, "config": {"lr": 1e-4}}
    else:
        obj = {"state_dict": ram_state}
    path = tmp_path / f"{layout}.pth"
    torch.save(obj, path)
    # the same weights, the same forward pass in one process: bit-identical
    np.testing.assert_array_equal(_probs(tiny_tagger("ram", path), parity_dir), reference)


def test_truncated_file(parity_dir, tiny_tagger, tmp_path):
    data = (parity_dir / "ram_tiny.pth").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("ram", path)
    assert "truncated or corrupt" in _error_line(excinfo) and str(path) in str(excinfo.value)


def test_empty_and_missing_files(tiny_tagger, tmp_path):
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(CheckpointError, match="empty") as excinfo:
        tiny_tagger("ram", empty)
    _error_line(excinfo)
    with pytest.raises(CheckpointError, match="does not exist"):
        tiny_tagger("ram", tmp_path / "nowhere.pth")


def test_wrong_models_file(parity_dir, tiny_tagger):
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("ram", parity_dir / "ram_plus_tiny.pth")
    assert "ram_plus checkpoint, not ram" in _error_line(excinfo)
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("tag2text", parity_dir / "ram_tiny.pth")
    assert "ram checkpoint, not tag2text" in _error_line(excinfo)


def test_missing_key_is_named(ram_state, tiny_tagger, tmp_path):
    state = dict(ram_state)
    del state["tagging_head.encoder.layer.1.output.dense.weight"]
    path = tmp_path / "missing.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("ram", path)
    assert "tagging_head.encoder.layer.1.output.dense.weight" in _error_line(excinfo)


def test_misshaped_key_is_named(ram_state, tiny_tagger, tmp_path):
    state = dict(ram_state)
    state["image_proj.weight"] = torch.zeros(512, 128)
    path = tmp_path / "misshaped.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as excinfo:
        tiny_tagger("ram", path)
    assert "image_proj.weight" in _error_line(excinfo) and "(512, 128)" in str(excinfo.value)


def test_tag_list_of_other_length(parity_dir, upstream_dir, tmp_path):
    short = tmp_path / "tags.txt"
    short.write_text("cat\ndog\n")
    with pytest.raises(CheckpointError, match="label_embed") as excinfo:
        load_tagger(parity_dir / "fixtures_tiny.json", parity_dir / "ram_tiny.pth", family="ram", tag_list=short)
    _error_line(excinfo)


def test_code_in_checkpoint_is_refused(tiny_tagger, tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "hook": shutil.rmtree}, path)
    with pytest.raises(CheckpointError, match="would run code"):
        tiny_tagger("ram", path)


def test_weights_are_memory_mapped_not_copied(parity_dir, tiny_tagger):
    """Only the file's pages back the parameters: nothing the task does not need is read into memory."""
    tagger = tiny_tagger("ram")
    maps = Path("/proc/self/maps").read_text()
    assert str((parity_dir / "ram_tiny.pth").resolve()) in maps
    assert not any(k.startswith(("tag_encoder", "text_decoder")) for k in tagger.model.state_dict())


def test_missing_assets_name_each_file(parity_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("FIFTYONE_RAM_HOME", str(tmp_path / "empty-home"))
    from fiftyone_ram import assets

    monkeypatch.setattr(assets, "_download_url", _offline)
    with pytest.raises(assets.AssetError) as excinfo:
        load_tagger(parity_dir / "fixtures_tiny.json", parity_dir / "ram_tiny.pth", family="ram")
    message = str(excinfo.value)
    for name in ("ram_tag_list.txt", "ram_tag_list_threshold.txt"):
        assert name in message and str(tmp_path / "empty-home") in message
    assert "chinese" not in message  # fetched only when Chinese names are asked for


def _offline(url, target, sha256):
    raise OSError("network unreachable")
