"""``fiftyone-ram tag DIR --dataset D`` then ``--resume``, and ``fiftyone-ram models``."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

fo = pytest.importorskip("fiftyone")


def _tag(tiny_cli_args, folder, dataset_name: str, *extra: str):
    from fiftyone_ram.cli import main

    args = ["tag", str(folder), "--dataset", dataset_name, *tiny_cli_args("ram"), "--field", "ram", "--device", "cpu",
            "--num-workers", "0", "--json", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_tag_into_a_dataset_then_resume_only_what_is_missing(tmp_path, copy_pngs, tiny_cli_args):
    folder = tmp_path / "images"
    pngs = copy_pngs(folder)
    (folder / "notes.jpg").write_text("not an image")
    name = f"cli-{tmp_path.name}"

    first = _tag(tiny_cli_args, folder, name)
    assert first.exit_code == 1, first.output  # one file could not be read: reported, not fatal
    summary = json.loads(first.output.strip().splitlines()[-1])
    assert summary["tagged"] == 5 and list(summary["failed"]) == [str(folder / "notes.jpg")]
    dataset = fo.load_dataset(name)
    assert dataset.persistent and len(dataset) == 6
    before = {s.filepath: s.ram.classifications[0].id for s in dataset.exists("ram")}

    shutil.copyfile(pngs[0], folder / "new.png")
    (folder / "notes.jpg").unlink()
    refused = _tag(tiny_cli_args, folder, name)
    assert refused.exit_code != 0 and "--resume" in refused.output

    resumed = _tag(tiny_cli_args, folder, name, "--resume")
    assert resumed.exit_code == 1, resumed.output  # notes.jpg is now missing: still recorded
    summary = json.loads(resumed.output.strip().splitlines()[-1])
    assert summary["tagged"] == 1 and summary["skipped"] == 5
    dataset.reload()
    assert len(dataset) == 7
    assert {s.filepath: s.ram.classifications[0].id for s in dataset.select(list(dataset.exists("ram").values("id")))
            if s.filepath in before} == before
    assert dataset.one(fo.ViewField("filepath") == str(folder / "new.png")).ram is not None
    dataset.delete()


def test_tag_an_existing_dataset_without_inputs(tmp_path, copy_pngs, tiny_cli_args):
    name = f"cli-{tmp_path.name}"
    dataset = fo.Dataset(name)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in copy_pngs(tmp_path / "images")[:2]])
    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, ["tag", "--dataset", name, *tiny_cli_args("ram"), "--field", "tags_ram",
                                       "--sample-tags", "--num-workers", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2 sample(s) tagged into 'tags_ram'" in result.output
    assert all(sample.tags for sample in dataset)
    dataset.delete()


def test_models_list_and_info():
    from fiftyone_ram.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["models", "list"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == [
        "ram_swin_large_14m", "ram_plus_swin_large_14m", "tag2text_swin_14m"]
    info = json.loads(runner.invoke(main, ["models", "info", "ram_plus_swin_large_14m", "--json"]).output)
    assert info["zoo_name"] == "ram-plus-swin-large-14m" and info["size_bytes"] == 3_010_210_801
    assert info["downloaded"] is False and info["embedding_dim"] == 512
    assert runner.invoke(main, ["models", "info", "nope"]).exit_code != 0


def test_models_download_fetches_weights_and_tag_lists(monkeypatch, tmp_path):
    from fiftyone_ram import assets
    from fiftyone_ram.cli import main

    fetched = []
    monkeypatch.setattr(assets, "upstream_file", lambda name: fetched.append(name) or tmp_path / name)
    monkeypatch.setattr(assets, "download_weights", lambda name: fetched.append(name) or tmp_path / f"{name}.pth")
    result = CliRunner().invoke(main, ["models", "download", "tag2text_swin_14m"])
    assert result.exit_code == 0, result.output
    assert fetched == ["tag2text_ori_tag_list.txt", "tag2text_swin_14m"]
    assert str(tmp_path / "tag2text_swin_14m.pth") in result.output

    def offline(name):
        raise assets.AssetError(f"{name} is not available")

    monkeypatch.setattr(assets, "download_weights", offline)
    failed = CliRunner().invoke(main, ["models", "download", "all"])
    assert failed.exit_code == 2 and "is not available" in failed.output  # a user error: one line, status 2
