"""``fiftyone-ram tag`` prints what ``Tagger.predict`` computes, for files and folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from fiftyone_ram import load_tagger


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


def test_tag_json_equals_predict(parity_dir, upstream_dir, image_dir):
    common = ["--config", parity_dir / "fixtures_tiny.json", "--checkpoint", parity_dir / "ram_plus_tiny.pth",
              "--tag-list", upstream_dir / "ram_tag_list.txt", "--thresholds",
              upstream_dir / "ram_tag_list_threshold.txt", "--tag-list-chinese",
              upstream_dir / "ram_tag_list_chinese.txt"]
    result = _run("tag", image_dir, "--model", "ram_plus", *common, "--json", "--lang", "zh")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(image_dir / "camera.png"), str(image_dir / "chelsea.png")]
    tagger = load_tagger(parity_dir / "fixtures_tiny.json", parity_dir / "ram_plus_tiny.pth", family="ram_plus",
                         tag_list=upstream_dir / "ram_tag_list.txt",
                         tag_list_chinese=upstream_dir / "ram_tag_list_chinese.txt",
                         thresholds=upstream_dir / "ram_tag_list_threshold.txt")
    expected = tagger.predict([r["image"] for r in records], language="zh")
    for record, want in zip(records, expected):
        assert [t["tag"] for t in record["tags"]] == [name for name, _ in want]
        assert [t["probability"] for t in record["tags"]] == pytest.approx([p for _, p in want], abs=1e-5)  # batch of 1 vs 2


def test_tag2text_prints_caption_and_reports_bad_files(parity_dir, upstream_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = _run("tag", parity_dir / "rocket.png", bad, "--model", "tag2text", "--config",
                  parity_dir / "fixtures_tiny.json", "--checkpoint", parity_dir / "tag2text_tiny.pth",
                  "--tag-list", upstream_dir / "tag2text_ori_tag_list.txt", "--threshold", "0.9")
    assert result.returncode == 1
    assert "caption: w8 w8 w8 w8 w8 w58 w8 w8 w8 w8" in result.stdout
    assert str(bad) in result.stderr and "1 file(s) could not be read" in result.stderr
