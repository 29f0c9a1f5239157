"""``fiftyone-ram parse-captions``: one output line per caption, JSON lists with --json, RAM's tags by default,
and the gold captions parsed through the installed command with precision and recall of at least 0.98."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fiftyone_ram.cli import main
from fiftyone_ram.labels.label_system import LabelSystem

GOLD = Path(__file__).parent / "data" / "captions_gold.jsonl"


def test_json_and_plain_output_one_line_per_caption(upstream_dir, tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("A man riding a horse on a beach\n\nA kitchen with no people in it\n", encoding="utf-8")
    tag_list = str(upstream_dir / "ram_tag_list.txt")
    result = CliRunner().invoke(main, ["parse-captions", str(captions), "--tag-list", tag_list, "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == [
        ["man", "riding", "horse", "beach"],
        [],
        ["kitchen"],
    ]
    plain = CliRunner().invoke(
        main, ["parse-captions", "-", "--tag-list", tag_list], input="two dogs playing in the snow\n"
    )
    assert plain.exit_code == 0, plain.output
    assert plain.output == "dog, play, snow\n"


def test_a_saved_label_system_as_tag_list(tmp_path):
    path = LabelSystem(("bicycle", "person"), (("push bike",), ())).save(tmp_path / "mine.json")
    result = CliRunner().invoke(
        main, ["parse-captions", "-", "--tag-list", str(path), "--json"], input="people on a push bike\n"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == ["person", "bicycle"]  # "people" through the curated merges


def test_rams_label_system_by_default(upstream_dir, monkeypatch):
    import fiftyone_ram.assets as assets
    from fiftyone_ram.labels import caption_parser

    requested = []

    def upstream_file(name: str, **_) -> Path:
        requested.append(name)
        return upstream_dir / name

    monkeypatch.setattr(assets, "upstream_file", upstream_file)
    caption_parser._cached_parser.cache_clear()
    try:
        result = CliRunner().invoke(main, ["parse-captions", "-", "--json"], input="a fire hydrant\n")
    finally:
        caption_parser._cached_parser.cache_clear()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == ["hydrant"] and requested == ["ram_tag_list.txt"]


def test_missing_tag_list_is_a_usage_error(tmp_path):
    missing = str(tmp_path / "nope.txt")
    result = CliRunner().invoke(main, ["parse-captions", "-", "--tag-list", missing], input="x\n")
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.slow
def test_gold_captions_through_the_installed_command(upstream_dir, tmp_path):
    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines()]
    captions = tmp_path / "gold.txt"
    captions.write_text("".join(row["caption"] + "\n" for row in rows), encoding="utf-8")
    command = Path(sys.executable).with_name("fiftyone-ram")
    args = [str(command)] if command.exists() else [sys.executable, "-m", "fiftyone_ram.cli"]
    done = subprocess.run(
        [*args, "parse-captions", str(captions), "--json", "--tag-list", str(upstream_dir / "ram_tag_list.txt")],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    outputs = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(outputs) == len(rows)
    tp = fp = fn = 0
    for row, found in zip(rows, outputs):
        found, expected = set(found), set(row["tags"])
        tp, fp, fn = tp + len(found & expected), fp + len(found - expected), fn + len(expected - found)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert precision >= 0.98 and recall >= 0.98, (precision, recall)
