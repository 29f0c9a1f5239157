"""Tagging runs remember their settings (issue 11, cases 4, 6 and 11): ``resume`` continues only the same run (an
interrupted overwrite as an overwrite), anything else is refused naming what differs; fields a run cannot write
are refused before anything is written; a resume with nothing left still adds sample tags."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

fo = pytest.importorskip("fiftyone")


class Interrupt(KeyboardInterrupt):
    """What Ctrl-C raises, from inside apply_model's loop."""


def _stop_after(count: int):
    def callback(fraction, label):  # label: "Tagged n of N"
        if int(label.split()[1].replace(",", "")) >= count:
            raise Interrupt

    return callback


@pytest.fixture(scope="module")
def model(tiny_model_settings):
    """Shared by the tests of this module: read it, never change it."""
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    return forf.load_model(**tiny_model_settings(), device="cpu")


@pytest.fixture()
def dataset(tmp_path, copy_pngs):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p)) for p in copy_pngs(tmp_path / "images")])
    return ds


def _label_ids(dataset) -> dict[str, str]:
    """Each labelled sample's label ids: new ids show that a run rewrote it."""
    ids, labels = dataset.exists("ram").values(["id", "ram.classifications.id"])
    return {i: tuple(label) for i, label in zip(ids, labels, strict=True)}


def _state(dataset) -> str:
    from fiftyone_ram.driver import runs

    dataset.reload()
    return runs.load(dataset, "tag", "ram").status


def test_an_interrupted_overwrite_is_continued_as_an_overwrite(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    frd.tag_samples(dataset, model, "ram", batch_size=2, num_workers=0)
    old = _label_ids(dataset)
    assert len(old) == len(dataset) and _state(dataset) == "completed"

    with pytest.raises(Interrupt):
        frd.tag_samples(dataset, model, "ram", overwrite=True, threshold=0.9, batch_size=2, num_workers=0,
                         progress=_stop_after(2))
    rewritten = {i for i, label in _label_ids(dataset).items() if label != old[i]}
    assert 0 < len(rewritten) < len(dataset) and _state(dataset) == "interrupted"

    # The issue: this said "0 tagged, N already tagged" and left the others with the old labels.
    summary = frd.tag_samples(dataset, model, "ram", resume=True, threshold=0.9, batch_size=2,
                               num_workers=0)
    assert summary.tagged == len(dataset) - len(rewritten) and summary.skipped == len(rewritten)
    now = _label_ids(dataset)
    assert all(now[i] != old[i] for i in old)  # every sample carries labels of the 0.9 run
    assert _state(dataset) == "completed"
    again = frd.tag_samples(dataset, model, "ram", resume=True, threshold=0.9)
    assert again.tagged == 0 and again.skipped == len(dataset) and _label_ids(dataset) == now


def test_resume_with_other_settings_is_refused_naming_what_differs(model, dataset, tiny_model_settings, tmp_path):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    with pytest.raises(Interrupt):
        frd.tag_samples(dataset, model, "ram", threshold=0.9, batch_size=2, num_workers=0,
                         progress=_stop_after(2))
    labelled = _label_ids(dataset)
    assert 0 < len(labelled) < len(dataset)

    def refused(other_model, match: str, **options):
        with pytest.raises(frd.RunMismatchError, match=match) as excinfo:
            frd.tag_samples(dataset, other_model, "ram", resume=True, batch_size=2, num_workers=0, **options)
        message = str(excinfo.value)
        assert "\n" not in message and "--overwrite" in message
        assert _label_ids(dataset) == labelled  # nothing was written
        return message

    assert "0.9 then, per-class now" in refused(model, "thresholds")
    refused(model, "thresholds", threshold=0.5)
    vocabulary = forf.load_model(**tiny_model_settings(), device="cpu", tags=["dog", "cat"])
    refused(vocabulary, "vocabulary", threshold=0.9)
    plus = forf.load_model(**tiny_model_settings("ram_plus"), device="cpu")
    refused(plus, "model", threshold=0.9)
    import torch  # other weights of the same architecture: another checkpoint

    state = torch.load(tiny_model_settings()["checkpoint_path"], weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 1
    torch.save(state, tmp_path / "other.pth")
    other = forf.load_model(**tiny_model_settings(checkpoint_path=str(tmp_path / "other.pth")), device="cpu")
    refused(other, "checkpoint", threshold=0.9)

    # The same checkpoint copied elsewhere is the same run: resumed.
    shutil.copyfile(tiny_model_settings()["checkpoint_path"], tmp_path / "copy.pth")
    copy = forf.load_model(**tiny_model_settings(checkpoint_path=str(tmp_path / "copy.pth")), device="cpu")
    summary = frd.tag_samples(dataset, copy, "ram", resume=True, threshold=0.9, batch_size=2,
                               num_workers=0)
    assert summary.tagged == len(dataset) - len(labelled) and summary.skipped == len(labelled)
    assert _state(dataset) == "completed"


def test_labels_without_a_record_are_not_resumed(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    frd.tag_samples(dataset, model, "ram", batch_size=4, num_workers=0)
    dataset.delete_run("ram_tag_ram")  # labels written by another tool or an older version
    with pytest.raises(frd.RunMismatchError, match="no record"):
        frd.tag_samples(dataset, model, "ram", resume=True)
    assert frd.tag_samples(dataset, model, "ram", overwrite=True, batch_size=4, num_workers=0).tagged == len(dataset)


def test_resume_and_overwrite_together_are_refused(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd
    from fiftyone_ram.errors import UserError

    with pytest.raises(UserError, match="not both"):
        frd.tag_samples(dataset, model, "ram", resume=True, overwrite=True)
    assert "ram" not in dataset.get_field_schema()


def test_a_resume_with_nothing_left_still_adds_sample_tags(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    frd.tag_samples(dataset, model, "ram", batch_size=4, num_workers=0)
    assert not any(dataset.values("tags"))
    summary = frd.tag_samples(dataset, model, "ram", resume=True, sample_tags=True)
    assert summary.tagged == 0
    for sample in dataset:
        assert set(sample.tags) == {c.label for c in sample.ram.classifications} != set()


@pytest.mark.parametrize("name", ["filepath", "tags", "id", "metadata", "_id", "ram.logits"])
def test_protected_field_names_are_refused_before_anything_is_written(model, dataset, name):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd
    from fiftyone_ram.errors import UserError

    before = list(dataset.get_field_schema())
    paths = dataset.values("filepath")
    with pytest.raises(UserError) as excinfo:
        frd.tag_samples(dataset, model, name, overwrite=True)
    assert "\n" not in str(excinfo.value) and repr(name).strip("'") in str(excinfo.value)
    dataset.reload()
    assert list(dataset.get_field_schema()) == before and dataset.values("filepath") == paths
    assert not dataset.has_runs


def test_a_field_of_another_type_is_refused_and_kept(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd
    from fiftyone_ram.fields import FieldNameError

    first = dataset.first()
    first["boxes"] = fo.Detections(detections=[fo.Detection(label="cat", bounding_box=[0.1, 0.1, 0.5, 0.5])])
    first.save()
    with pytest.raises(FieldNameError, match="Detections"):
        frd.tag_samples(dataset, model, "boxes", overwrite=True)
    assert dataset.first().boxes.detections[0].label == "cat" and dataset.count("boxes") == 1
    dataset.add_sample_field("auto_error", fo.IntField)  # where the run would record unreadable files
    with pytest.raises(FieldNameError, match="auto_error"):
        frd.tag_samples(dataset, model, "auto")
    assert "auto" not in dataset.get_field_schema()


# -- the same through the command line ----------------------------------------------------------------------

def _tag(tiny_cli_args, folder, dataset_name: str, *extra: str):
    from fiftyone_ram.cli import main

    args = ["tag", str(folder), "--dataset", dataset_name, *tiny_cli_args("ram"), "--field", "ram", "--device", "cpu",
            "--num-workers", "0", "--batch-size", "2", "--json", *extra]
    return CliRunner().invoke(main, args)


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_cli_resume_refuses_other_settings_and_continues_the_same(tmp_path, copy_pngs, tiny_cli_args):
    folder = tmp_path / "images"
    copy_pngs(folder)
    name = f"runs-{tmp_path.name}"
    assert _tag(tiny_cli_args, folder, name, "--threshold", "0.9").exit_code == 0
    dataset = fo.load_dataset(name)
    labels = _label_ids(dataset)
    assert len(labels) == len(dataset) and all(labels.values())

    line = _one_line_error(_tag(tiny_cli_args, folder, name, "--resume", "--threshold", "0.5"))
    assert "thresholds: 0.9 then, 0.5 now" in line and "--overwrite" in line
    line = _one_line_error(_tag(tiny_cli_args, folder, name, "--resume"))
    assert "per-class now" in line
    line = _one_line_error(_tag(tiny_cli_args, folder, name, "--resume", "--overwrite"))
    assert "--resume" in line and "--overwrite" in line
    dataset.reload()
    assert _label_ids(dataset) == labels  # nothing was rewritten

    resumed = _tag(tiny_cli_args, folder, name, "--resume", "--threshold", "0.9", "--sample-tags")
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["tagged"] == 0 and summary["skipped"] == len(labels)
    dataset.reload()
    assert all(set(s.tags) == {c.label for c in s.ram.classifications} for s in dataset)
    dataset.delete()


@pytest.mark.parametrize("name", ["filepath", "tags", "id", "metadata", "boxes"])
def test_cli_refuses_a_field_it_cannot_write_before_adding_files(tmp_path, copy_pngs, tiny_cli_args, name):
    from fiftyone_ram.cli import main

    folder = tmp_path / "images"
    pngs = copy_pngs(folder)
    dataset = fo.Dataset(f"fields-{tmp_path.name}", persistent=True)
    dataset.add_sample(fo.Sample(filepath=str(pngs[0]), boxes=fo.Detections(detections=[fo.Detection(label="cat")])))
    args = ["tag", str(folder), "--dataset", dataset.name, *tiny_cli_args("ram"), "--field", name, "--overwrite",
            "--num-workers", "0"]
    line = _one_line_error(CliRunner().invoke(main, args))
    assert f"'{name}'" in line
    dataset.reload()
    assert len(dataset) == 1 and dataset.first().boxes.detections[0].label == "cat"  # no file was added
    dataset.delete()
