"""``fiftyone-ram tag`` prints what ``Tagger.predict`` computes, for files and folders, ``--batch-size`` images per
model call."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner


@pytest.fixture(scope="module")
def image_dir(parity_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for name in ("chelsea", "camera"):
        shutil.copy(parity_dir / f"{name}.png", folder / f"{name}.png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def _run(*args):
    return subprocess.run([sys.executable, "-m", "fiftyone_ram.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_tag_json_equals_predict(upstream_dir, image_dir, tiny_cli_args, tiny_tagger, assert_same_tags):
    """The numbers: the command run by click in this process (the installed command's exit status and output:
    the next test)."""
    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, ["tag", str(image_dir), *tiny_cli_args("ram_plus"), "--tag-list-chinese",
                                       str(upstream_dir / "ram_tag_list_chinese.txt"), "--json", "--lang", "zh"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(image_dir / "camera.png"), str(image_dir / "chelsea.png")]
    tagger = tiny_tagger("ram_plus")
    expected = tagger.predict([r["image"] for r in records], language="zh")
    assert_same_tags([[(t["tag"], t["probability"]) for t in r["tags"]] for r in records], expected,
                     names=tagger.names("zh"), thresholds=tagger.thresholds)  # another batch shape


@pytest.mark.slow
def test_tag2text_prints_caption_and_reports_bad_files(parity_dir, tiny_cli_args, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = _run("tag", parity_dir / "rocket.png", bad, *tiny_cli_args("tag2text"), "--threshold", "0.9")
    assert result.returncode == 1
    assert "caption: w8 w8 w8 w8 w8 w58 w8 w8 w8 w8" in result.stdout
    assert str(bad) in result.stderr and "1 file(s) could not be read" in result.stderr


FIXTURE_ORDER = ("astronaut", "chelsea", "coffee", "rocket", "camera")  # the parity fixtures' image order


def _inputs_with_a_broken_file(parity_dir, tmp_path):
    """The five fixture images with an unreadable file third: it lands in the middle of the first batch of 3."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths = [parity_dir / f"{name}.png" for name in FIXTURE_ORDER]
    return [*paths[:2], broken, *paths[2:]], broken


def _tag_in_process(args):
    """``fiftyone-ram tag`` run by click in this process, with the batch size of each tagging-head call."""
    import torch

    from fiftyone_ram.cli import main
    from fiftyone_ram.models.tagging_head import TaggingHead

    head_batches: list[int] = []

    def record(module, _inputs, output):
        if isinstance(module, TaggingHead):
            head_batches.append(output.shape[0])

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = CliRunner().invoke(main, ["tag", *map(str, args)], catch_exceptions=False)
    finally:
        handle.remove()
    return result, head_batches


def _assert_same_tags(got, want, thresholds):
    """Equal probabilities at 1e-5; a tag whose probability lies within 1e-5 of its threshold may differ."""
    got, want = ({t["tag"]: t["probability"] for t in record["tags"]} for record in (got, want))
    for name in got.keys() ^ want.keys():
        assert abs(got.get(name, want.get(name)) - thresholds[name]) <= 1e-5, name
    for name in got.keys() & want.keys():
        assert got[name] == pytest.approx(want[name], abs=1e-5), name


def test_batch_size_is_the_number_of_images_per_model_call(parity_dir, upstream_dir, tmp_path):
    from fiftyone_ram.tag_files import read_tag_list

    inputs, broken = _inputs_with_a_broken_file(parity_dir, tmp_path)
    common = [*inputs, "--model", "ram", "--config", parity_dir / "fixtures_tiny.json", "--checkpoint",
              parity_dir / "ram_tiny.pth", "--tag-list", upstream_dir / "ram_tag_list.txt", "--thresholds",
              upstream_dir / "ram_tag_list_threshold.txt", "--device", "cpu", "--json"]
    runs = {}
    for batch_size, expected_calls in ((1, [1, 1, 1, 1, 1]), (3, [2, 3])):  # the broken file is in batch one
        result, head_batches = _tag_in_process([*common, "--batch-size", batch_size])
        assert result.exit_code == 1, result.output
        assert head_batches == expected_calls
        errors = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        assert [e["image"] for e in errors] == [str(broken)] and "1 file(s) could not be read" in result.stderr
        runs[batch_size] = [json.loads(line) for line in result.stdout.splitlines()]
    names = read_tag_list(upstream_dir / "ram_tag_list.txt")
    limits = [float(v) for v in (upstream_dir / "ram_tag_list_threshold.txt").read_text().split()]
    thresholds = dict(zip(names, limits))
    for one, three in zip(runs[1], runs[3], strict=True):
        assert one["image"] == three["image"]
        _assert_same_tags(three, one, thresholds)
    assert [r["image"] for r in runs[3]] == [str(p) for p in inputs if p != broken]  # input order


def test_tag2text_batches_keep_input_order_and_captions(parity_dir, upstream_dir, tmp_path):
    fixture = json.loads((parity_dir / "fixtures_tiny.json").read_text())
    assert fixture["images"] == list(FIXTURE_ORDER)
    inputs, broken = _inputs_with_a_broken_file(parity_dir, tmp_path)
    result, _ = _tag_in_process([*inputs, "--model", "tag2text", "--config", parity_dir / "fixtures_tiny.json",
                                 "--checkpoint", parity_dir / "tag2text_tiny.pth", "--tag-list",
                                 upstream_dir / "tag2text_ori_tag_list.txt", "--device", "cpu", "--json",
                                 "--batch-size", "3"])
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in inputs if p != broken]
    assert [r["caption"] for r in records] == fixture["models"]["tag2text"]["captions"]
    assert str(broken) in result.stderr
