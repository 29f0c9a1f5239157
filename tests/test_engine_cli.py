"""``fiftyone-ram generate`` and ``fiftyone-ram clean`` (with --apply / --undo) on a FiftyOne dataset, with the
tiny RAM of the parity fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def tiny_ram(tiny_cli_args) -> list[str]:
    return [*tiny_cli_args("ram"), "--device", "cpu"]


@pytest.fixture()
def dataset(tmp_path, cleaning_dataset):
    ds, wrong = cleaning_dataset(tmp_path, name="engine-cli", per_category=4)
    ds.set_values("caption", ["a dog in the snow"] * len(ds))
    yield ds, wrong
    ds.delete()


def _run(*args: str) -> dict:
    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_generate_command(dataset, tmp_path, tiny_ram, parser_tag_file):
    ds, _ = dataset
    summary = _run("generate", ds.name, "--tag-field", "gt", "--caption-field", "caption", "--predict",
                   "--threshold", "0.8", "--parser-tags", str(parser_tag_file(tmp_path)), *tiny_ram)
    ds.reload()
    assert summary["samples"] == len(ds) and summary["added"]["predicted"] > 0
    labels = ds.first()["generated"].classifications
    assert {c.label for c in labels} >= {"dog", "snow"} and all(c.sources for c in labels)
    from fiftyone_ram.cli import main

    again = CliRunner().invoke(main, ["generate", ds.name, "--tag-field", "gt"])
    assert again.exit_code != 0 and "overwrite" in again.output


def test_clean_apply_undo_commands(dataset, tiny_ram):
    ds, wrong = dataset
    summary = _run("clean", ds.name, "--tag-field", "gt", "--regions-field", "objects", *tiny_ram)
    ds.reload()
    flags = {(Path(p).name, c.label): c.flag_reason for p, v in zip(*ds.values(["filepath", "gt_review"]))
             for c in v.classifications if c.has_field("flag_reason") and c.flag_reason}
    assert {key: flags.get(key) for key in wrong} == {("wrong_dog.png", "dog"): "outlier",
                                                      ("wrong_car.png", "car"): "outlier",
                                                      ("unboxed.png", "cat"): "no_region"}
    assert summary["flagged_total"] == len(flags) and summary["categories_done"] == ["cat", "dog", "car"]
    before = ds.count("gt.classifications")
    applied = _run("clean", ds.name, "--tag-field", "gt", "--apply", "--accept", "marked")
    assert applied["removed"] == 0  # nothing was label-tagged "remove"
    applied = _run("clean", ds.name, "--tag-field", "gt", "--apply")
    ds.reload()
    assert applied["removed"] == len(flags) and ds.count("gt.classifications") == before - len(flags)
    _run("clean", ds.name, "--tag-field", "gt", "--undo")
    ds.reload()
    assert ds.count("gt.classifications") == before and ds.get_field("gt_original") is None
