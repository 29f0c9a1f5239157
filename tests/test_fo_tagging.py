"""The dataset tagging driver: no overwriting unasked, resume after an interruption, errors, sample tags."""

from __future__ import annotations

import shutil

import pytest

fo = pytest.importorskip("fiftyone")


@pytest.fixture(scope="module")
def model(tiny_model_settings):
    """Shared by the tests of this module: read it, never change it."""
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    return forf.load_model(**tiny_model_settings(), device="cpu")


@pytest.fixture()
def dataset(tmp_path, copy_pngs):
    paths = copy_pngs(tmp_path / "images")
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p)) for p in paths])
    return ds


class Interrupt(KeyboardInterrupt):
    """What Ctrl-C raises, from inside apply_model's loop."""


def test_an_interrupted_run_resumes_where_it_stopped(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    def stop_after_first_batch(fraction, label):
        if fraction >= 2 / len(dataset):
            raise Interrupt

    with pytest.raises(Interrupt):
        frd.tag_samples(dataset, model, "ram", batch_size=2, num_workers=0, progress=stop_after_first_batch)
    done = dataset.exists("ram")
    assert 0 < len(done) < len(dataset)  # the first batch was saved before the interruption
    before = {s.id: [c.id for c in s.ram.classifications] for s in done}

    with pytest.raises(frd.FieldExistsError, match="already holds labels"):
        frd.tag_samples(dataset, model, "ram", batch_size=2, num_workers=0)

    summary = frd.tag_samples(dataset, model, "ram", resume=True, batch_size=2, num_workers=0)
    assert summary.skipped == len(before)
    assert summary.tagged == len(dataset) - len(before)
    assert len(dataset.exists("ram")) == len(dataset)
    after = {s.id: [c.id for c in s.ram.classifications] for s in dataset.select(list(before))}
    assert after == before  # resumed samples were not re-tagged


def test_overwrite_retags_and_an_unreadable_sample_keeps_its_labels(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    frd.tag_samples(dataset, model, "ram", batch_size=4, num_workers=0)
    old = {s.filepath: s.ram.classifications[0].id for s in dataset}
    gone = dataset.first().filepath
    shutil.move(gone, gone + ".moved")
    try:
        summary = frd.tag_samples(dataset, model, "ram", overwrite=True, batch_size=4, num_workers=0)
    finally:
        shutil.move(gone + ".moved", gone)
    assert list(summary.failed) == [gone] and summary.tagged == len(dataset) - 1
    for sample in dataset:
        assert sample.ram is not None
        if sample.filepath == gone:
            assert sample.ram.classifications[0].id == old[gone] and "does not exist" in sample.ram_error
        else:
            assert sample.ram.classifications[0].id != old[sample.filepath] and sample.ram_error is None

    # The file is back: resuming finishes the overwrite for it (its last attempt failed) and clears the error.
    resumed = frd.tag_samples(dataset, model, "ram", resume=True)
    assert resumed.tagged == 1 and resumed.skipped == len(dataset) - 1
    assert dataset.one(fo.ViewField("filepath") == gone).ram.classifications[0].id != old[gone]
    assert dataset.count("ram_error") == 0
    assert frd.tag_samples(dataset, model, "ram", resume=True).tagged == 0  # now nothing is left


def test_a_fixed_file_is_tagged_on_resume_and_its_error_cleared(model, dataset, tmp_path):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    late = tmp_path / "late.png"
    dataset.add_sample(fo.Sample(filepath=str(late)))
    first = frd.tag_samples(dataset, model, "ram", batch_size=4, num_workers=0)
    assert list(first.failed) == [str(late)]
    shutil.copyfile(dataset.first().filepath, late)
    second = frd.tag_samples(dataset, model, "ram", resume=True, batch_size=4, num_workers=0)
    assert second.tagged == 1 and not second.failed and second.skipped == len(dataset) - 1
    assert dataset.count("ram_error") == 0


def test_sample_tags_are_added_and_existing_ones_kept(model, dataset):
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd

    dataset.set_values("tags", [["reviewed"]] * len(dataset))
    frd.tag_samples(dataset.limit(3), model, "ram", sample_tags=True, batch_size=3, num_workers=0)
    for sample in dataset.limit(3):
        names = [c.label for c in sample.ram.classifications]
        assert sample.tags == ["reviewed", *names]
    assert dataset.skip(3).distinct("tags") == ["reviewed"]  # outside the view: untouched
