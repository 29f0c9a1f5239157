"""The data engine's model passes on the Ray engine, on a real local cluster (two CPUs, the tests'
``ray_cluster``): ``generate`` and ``clean --executor ray`` give the same summaries, fields, values, unreadable
images and run records as the local engine (the commands run in this process, so they use that
cluster); the detector and CLIP on Ray equal local; models built in memory refused in one line before
anything is written."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray[data] (pip install '.[ray]')")
fo = pytest.importorskip("fiftyone")

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.ray]
THRESHOLD = 0.8


@pytest.fixture()
def dataset(tmp_path, parity_pngs):
    """Six samples: the five fixture PNGs (tags, a caption) and one unreadable file."""
    for path in parity_pngs:
        shutil.copyfile(path, tmp_path / path.name)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    captions = ["a man riding a horse on the beach", "a dog in the snow", None, "a cat", None, "a dog"]
    paths = [tmp_path / p.name for p in parity_pngs] + [tmp_path / "broken.png"]
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p), caption=c, gt=fo.Classifications(
        classifications=[fo.Classification(label="dog")])) for p, c in zip(paths, captions)])
    yield ds
    ds.delete()


def _stored(dataset, out_field: str) -> list[tuple[list, list, str | None]]:
    """Per sample: its (label, sources, source) in order, its predicted (label, confidence), its caption."""
    rows = []
    for value in dataset.values(out_field):
        labels = value.classifications
        rows.append(([(c.label, c.sources, c.source) for c in labels if "predicted" not in c.sources],
                     [(c.label, c.confidence) for c in labels if "predicted" in c.sources],
                     value["caption"] if value.has_field("caption") else None))
    return rows


def _settings(dataset, out_field: str) -> dict:
    from fiftyone_ram.driver import runs

    settings = runs.load(dataset, "generate", out_field).settings
    return {k: v for k, v in settings.items() if k not in ("out_field", "executor", "workers")}


def _cli(*args: str) -> dict:
    """Run a command here (on the tests' cluster when it asks for Ray); its JSON summary."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_cli_generate_on_ray_equals_local(ray_cluster, dataset, tiny_cli_args, parity_dir, upstream_dir, tmp_path,
                                          parser_tag_file, assert_same_tags, monkeypatch):
    from fiftyone_ram.driver import runs
    from fiftyone_ram.engine import generation

    monkeypatch.setattr(generation, "CHUNK", 4)  # two chunks; Ray's pages of 3 straddle them
    dataset.persistent = True  # the command loads it by name
    common = ["generate", dataset.name, "--tag-field", "gt", "--caption-field", "caption", "--predict",
              "--threshold", str(THRESHOLD), *tiny_cli_args("ram"), "--captioner", "tag2text",
              "--captioner-config", str(parity_dir / "fixtures_tiny.json"),
              "--captioner-checkpoint", str(parity_dir / "tag2text_tiny.pth"),
              "--captioner-tag-list", str(upstream_dir / "tag2text_ori_tag_list.txt"),
              "--parser-tags", str(parser_tag_file(tmp_path)), "--device", "cpu", "--batch-size", "3", "--json"]
    local = _cli(*common, "--out-field", "local")
    on_ray = _cli(*common, "--out-field", "on_ray", "--executor", "ray")  # one worker: cleaning's command runs two

    assert {**on_ray, "out_field": "local"} == local
    assert local["added"]["predicted"] > 0
    assert list(on_ray["unreadable"]) == [dataset.values("filepath")[-1]], on_ray
    assert "cannot read" in str(on_ray["unreadable"])
    dataset.reload()
    want, got = _stored(dataset, "local"), _stored(dataset, "on_ray")
    assert [(w[0], w[2]) for w in want] == [(g[0], g[2]) for g in got]  # other sources and captions: equal
    assert all(w[2] for w in want[:5]) and want[5] == ([("dog", ["original", "parsed"], "original")], [], None)
    assert_same_tags([g[1] for g in got], [w[1] for w in want], thresholds=THRESHOLD)  # within 1e-5
    assert _settings(dataset, "on_ray") == _settings(dataset, "local")
    for field in ("local", "on_ray"):
        state = runs.load_state(dataset, "generate", field)
        assert (runs.load(dataset, "generate", field).status, state["samples_written"]) == ("completed", len(dataset))


def test_a_tagger_built_in_memory_is_refused_before_anything_is_written(dataset, ram_never_car):
    from fiftyone_ram.engine.generation import generate_tags
    from fiftyone_ram.errors import UserError

    in_memory = copy.copy(ram_never_car)
    in_memory.checkpoint = None
    with pytest.raises(UserError, match="built in memory.*local executor"):
        generate_tags(dataset, "generated", tagger=in_memory, executor="ray")
    assert dataset.get_field("generated") is None and not dataset.has_run("ram_generate_generated")


# -- cleaning ------------------------------------------------------------------------------------------------


@pytest.fixture()
def cleaning(tmp_path, cleaning_dataset):
    """Nine patterned images with known wrong tags, and one unreadable file tagged and boxed "dog"."""
    ds, _ = cleaning_dataset(tmp_path, per_category=2)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    ds.add_sample(fo.Sample(filepath=str(tmp_path / "broken.png"),
                            gt=fo.Classifications(classifications=[fo.Classification(label="dog")]),
                            objects=fo.Detections(detections=[fo.Detection(label="dog", bounding_box=[0, 0, .5, .5])])))
    yield ds
    ds.delete()


def _review(dataset) -> list[tuple[str, dict]]:
    """Per reviewed tag: its file and label, and its review attributes."""
    keys = ("checked", "regions", "region_score", "outlier_score", "crop_probability", "flag_reason",
            "flag_reasons", "flag_score")
    return [((Path(path).name, c.label), {k: c[k] for k in keys if c.has_field(k)})
            for path, value in zip(*dataset.values(["filepath", "gt_review"])) for c in value.classifications]


def _assert_same_review(got, want) -> None:
    assert [key for key, _ in got] == [key for key, _ in want]
    for (key, a), (_, b) in zip(got, want):
        assert set(a) == set(b), key
        for name in a:
            if isinstance(a[name], float):
                assert a[name] == pytest.approx(b[name], abs=1e-5), (key, name)
            else:
                assert a[name] == b[name], (key, name)


def _clean_both(dataset, regions, encoder, **options):
    from fiftyone_ram.engine.cleaning import clean_tags

    local = clean_tags(dataset, "gt", regions=regions, encoder=encoder, **options)
    want = _review(dataset)
    on_ray = clean_tags(dataset, "gt", regions=regions, encoder=encoder, overwrite=True, executor="ray", **options)
    assert on_ray.to_dict() == local.to_dict()
    _assert_same_review(_review(dataset), want)
    from fiftyone_ram.driver import runs

    assert runs.load(dataset, "clean", "gt").status == "completed"
    return on_ray


@pytest.mark.slow
def test_cli_clean_on_ray_equals_local(ray_cluster, cleaning, tiny_cli_args):
    from fiftyone_ram.driver import runs

    cleaning.persistent = True  # the command loads it by name
    common = ["clean", cleaning.name, "--tag-field", "gt", "--regions-field", "objects", *tiny_cli_args("ram"),
              "--device", "cpu", "--categories-per-batch", "2", "--batch-size", "3", "--json"]  # two category batches
    local = _cli(*common)
    want = _review(cleaning)
    # two workers: results of the two category batches come back interleaved, in any order
    on_ray = _cli(*common, "--overwrite", "--executor", "ray", "--workers", "2")
    assert on_ray == local
    assert list(local["unreadable"]) == [cleaning.values("filepath")[-1]], local
    assert local["flagged"].get("outlier", 0) >= 1 and local["flagged"]["no_region"] == 1, local
    cleaning.reload()
    _assert_same_review(_review(cleaning), want)
    assert runs.load(cleaning, "clean", "gt").status == "completed"


@pytest.mark.slow
def test_detector_and_clip_on_ray_equal_local(ray_cluster, cleaning, tiny_grounding_dino, tiny_clip_vision_dir):
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.regions import GroundingDinoRegions

    detector = GroundingDinoRegions(str(tiny_grounding_dino), box_threshold=0.0, text_threshold=0.0, max_regions=2,
                                    device="cpu")
    summary = _clean_both(cleaning, detector, ClipCrops(str(tiny_clip_vision_dir), device="cpu"),
                          categories=["dog"], batch_size=3, workers=1)
    assert summary.regions == 2 * summary.tags_checked > 0


def test_cleaning_models_built_in_memory_are_refused(cleaning, tiny_clip_vision):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.regions import DetectionsRegions
    from fiftyone_ram.errors import UserError

    with pytest.raises(UserError, match="crop encoder was built in memory"):
        clean_tags(cleaning, "gt", regions=DetectionsRegions(cleaning, "objects"),
                   encoder=ClipCrops(tiny_clip_vision, device="cpu"), executor="ray")
    assert cleaning.get_field("gt_review") is None and not cleaning.has_run("ram_clean_gt")
