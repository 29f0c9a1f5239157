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


def test_undo_command_reports_what_it_restored_and_what_it_left(dataset, tiny_clip_vision_dir):
    import fiftyone as fo

    from fiftyone_ram.cli import main

    ds, wrong = dataset
    _run("clean", ds.name, "--tag-field", "gt", "--regions-field", "objects", "--embedder", "clip",
         "--clip-model", str(tiny_clip_vision_dir), "--no-check", "--device", "cpu")  # flags exactly the wrong ones
    ds.reload()
    before = {s.filepath: [(c.id, c.label) for c in s.gt.classifications] for s in ds}
    applied = _run("clean", ds.name, "--tag-field", "gt", "--apply")
    assert applied["removed"] == len(wrong)
    by_name = {Path(s.filepath).name: s for s in ds}
    added = fo.Sample(filepath=str(Path(by_name["dog0.png"].filepath).with_name("later.png")),
                      gt=fo.Classifications(classifications=[fo.Classification(label="dog")]))
    ds.add_sample(added)  # a sample added after the apply keeps its field
    unboxed = by_name["unboxed.png"]
    unboxed.gt.classifications.append(fo.Classification(label="cat"))  # the removed tag, added again by hand
    unboxed.save()
    wrong_car = by_name["wrong_car.png"]
    edited = wrong_car.gt.classifications[0]
    edited.confidence = 0.5  # an edit of a kept label
    wrong_car.save()

    undone = CliRunner().invoke(main, ["clean", ds.name, "--tag-field", "gt", "--undo"])
    assert undone.exit_code == 1, undone.output  # not everything is back: not a plain success
    lines = undone.output.strip().splitlines()
    assert lines[0] == "restored 2 tag(s) in 2 sample(s) of 'gt' (1 apply undone)"
    assert lines[1] == "1 tag(s) not restored: 1 because a tag of that name was added again after apply"
    assert "'cat' on" in lines[2] and "unboxed.png" in lines[2]
    ds.reload()
    after = {s.filepath: [(c.id, c.label) for c in s.gt.classifications] for s in ds}
    assert [n for _, n in after[added.filepath]] == ["dog"]
    for path in (by_name["wrong_dog.png"].filepath, by_name["wrong_car.png"].filepath):
        assert after[path] == before[path]  # the removed labels are back, with their ids, in their place
    assert {c.id: c.confidence for c in ds[wrong_car.filepath].gt.classifications}[edited.id] == 0.5
    assert [n for _, n in after[unboxed.filepath]].count("cat") == 1
    again = CliRunner().invoke(main, ["clean", ds.name, "--tag-field", "gt", "--undo", "--json"])
    assert again.exit_code != 0 and "nothing to undo in 'gt': the last apply was already undone" in again.output
    assert "Traceback" not in again.output and len(again.output.strip().splitlines()) == 1
