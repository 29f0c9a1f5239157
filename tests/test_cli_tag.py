"""``fiftyone-ram tag`` prints what ``Tagger.predict`` computes, for files and folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest


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


def test_tag_json_equals_predict(upstream_dir, image_dir, tiny_cli_args, tiny_tagger, assert_same_tags):
    result = _run("tag", image_dir, *tiny_cli_args("ram_plus"), "--tag-list-chinese",
                  upstream_dir / "ram_tag_list_chinese.txt", "--json", "--lang", "zh")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(image_dir / "camera.png"), str(image_dir / "chelsea.png")]
    tagger = tiny_tagger("ram_plus")
    expected = tagger.predict([r["image"] for r in records], language="zh")
    assert_same_tags([[(t["tag"], t["probability"]) for t in r["tags"]] for r in records], expected,
                     names=tagger.names("zh"), thresholds=tagger.thresholds)  # another process and batch shape


def test_tag2text_prints_caption_and_reports_bad_files(parity_dir, tiny_cli_args, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = _run("tag", parity_dir / "rocket.png", bad, *tiny_cli_args("tag2text"), "--threshold", "0.9")
    assert result.returncode == 1
    assert "caption: w8 w8 w8 w8 w8 w58 w8 w8 w8 w8" in result.stdout
    assert str(bad) in result.stderr and "1 file(s) could not be read" in result.stderr
