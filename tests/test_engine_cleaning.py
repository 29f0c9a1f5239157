"""Tag cleaning on a real FiftyOne database: regions from an existing ``Detections`` field and from a tiny
random Grounding-DINO, crops embedded by the tiny RAM, known wrong tags, the original field untouched,
the review field, the saved view, the run record and resuming per category."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def _flags(dataset, field="gt_review") -> dict[tuple[str, str], str]:
    out = {}
    for path, value in zip(*dataset.values(["filepath", field])):
        for label in value.classifications if value else ():
            if label.has_field("flag_reason") and label.flag_reason:
                out[(Path(path).name, label.label)] = label.flag_reason
    return out


def _tags(dataset, field="gt") -> list[list[tuple[str, str]]]:
    return [[(c.id, c.label) for c in v.classifications] if v else None for v in dataset.values(field)]


@pytest.fixture()
def dataset(tmp_path, cleaning_dataset):
    ds, wrong = cleaning_dataset(tmp_path)
    yield ds, wrong
    ds.delete()


def _expected(dataset) -> dict[tuple[str, str], str]:
    """With the tagger that never predicts "car": every car tag is not predicted on its crop, the two
    injected wrong tags are outliers and the unboxed cat has no region."""
    expected = {}
    for path, value in zip(*dataset.values(["filepath", "gt"])):
        for label in value.classifications:
            if label.label == "car":
                expected[(Path(path).name, "car")] = "not_predicted"
    expected[("wrong_dog.png", "dog")] = "outlier"
    expected[("wrong_car.png", "car")] = "outlier"
    expected[("unboxed.png", "cat")] = "no_region"
    return expected


def test_cleaning_with_detections_finds_the_wrong_tags_and_keeps_the_original(dataset, ram_never_car):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import TaggerCrops
    from fiftyone_ram.engine.regions import DetectionsRegions

    ds, wrong = dataset
    before = _tags(ds)
    reports = []
    summary = clean_tags(ds, "gt", regions=DetectionsRegions(ds, "objects"), encoder=TaggerCrops(ram_never_car),
                         categories_per_batch=2, progress=lambda f, label: reports.append((f, label)))
    assert _tags(ds) == before  # the tag field is never rewritten by cleaning
    flags = _flags(ds)
    assert flags == _expected(ds)
    assert wrong <= set(flags)
    assert summary.categories_done == ["cat", "dog", "car"]  # most frequent first (ties by name)
    assert summary.flagged == dict(Counter(flags.values())) == {"not_predicted": 8, "outlier": 2, "no_region": 1}
    assert summary.tags_checked == sum(len(v) for v in before) and reports[-1][0] == 1.0

    # Cleaned field: the tags minus the flagged ones, without cleaning attributes.
    for path, tags, cleaned in zip(ds.values("filepath"), before, ds.values("gt_cleaned")):
        kept = [name for _, name in tags if (Path(path).name, name) not in flags]
        assert [c.label for c in cleaned.classifications] == kept
        assert not any(c.has_field("flag_reason") for c in cleaned.classifications)
    review = ds.first()["gt_review"].classifications[0]
    assert review.checked is True and review.regions == 1 and review.crop_probability > 0

    # The saved view shows exactly the flagged labels; the run records the completed categories.
    view = ds.load_saved_view("gt_flagged")
    assert view.count("gt_review.classifications") == len(flags)
    from fiftyone_ram.driver import runs

    assert runs.load_state(ds, "clean", "gt")["categories_done"] == ["cat", "dog", "car"]
    assert runs.load(ds, "clean", "gt").settings["fraction"] == 0.1

    with pytest.raises(ValueError, match="resume"):
        clean_tags(ds, "gt", regions=DetectionsRegions(ds, "objects"), encoder=TaggerCrops(ram_never_car))


def test_resume_continues_with_the_categories_left(dataset, tiny_clip_vision):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.regions import DetectionsRegions

    ds, _ = dataset
    regions, encoder = DetectionsRegions(ds, "objects"), ClipCrops(tiny_clip_vision, device="cpu")
    first = clean_tags(ds, "gt", regions=regions, encoder=encoder, categories=["dog"])
    assert first.categories_done == ["dog"] and set(_flags(ds)) == {("wrong_dog.png", "dog")}
    review_ids = [c.id for v in ds.values("gt_review") for c in v.classifications]
    # An interrupted run leaves its completed categories in the run; resume skips them.
    second = clean_tags(ds, "gt", regions=regions, encoder=encoder, resume=True)
    assert second.categories_done == ["dog", "cat", "car"]
    assert [c.id for v in ds.values("gt_review") for c in v.classifications] == review_ids
    assert _flags(ds) == {key: reason for key, reason in _expected(ds).items() if reason != "not_predicted"}
    again = clean_tags(ds, "gt", regions=regions, encoder=encoder, categories=2, overwrite=True)
    assert again.categories_done == ["cat", "dog"] and ("wrong_car.png", "car") not in _flags(ds)


def test_tiny_grounding_dino_supplies_the_regions(dataset, tiny_grounding_dino, ram_never_car, tiny_clip_vision):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import ClipCrops, TaggerCrops
    from fiftyone_ram.engine.regions import GroundingDinoRegions

    ds, _ = dataset
    view = ds.limit(8)
    folder = str(tiny_grounding_dino)
    strict = GroundingDinoRegions(folder, box_threshold=1.01, device="cpu")
    summary = clean_tags(view, "gt", regions=strict, encoder=TaggerCrops(ram_never_car), categories=["dog"])
    assert summary.flagged == {"no_region": 4} and summary.regions == 0  # nothing above an impossible threshold

    loose = GroundingDinoRegions(folder, box_threshold=0.0, text_threshold=0.0, max_regions=2, device="cpu")
    summary = clean_tags(view, "gt", regions=loose, encoder=ClipCrops(tiny_clip_vision, device="cpu"), overwrite=True)
    assert summary.regions == 2 * summary.tags_checked and "no_region" not in summary.flagged
    for value in view.values("gt_review"):
        for label in value.classifications:
            assert label.regions == 2 and 0.0 <= label.region_score <= 1.0 and label.outlier_score >= 0


def test_detector_regions_are_relative_and_best_first(tiny_grounding_dino):
    from PIL import Image

    from fiftyone_ram.engine.regions import GroundingDinoRegions

    detector = GroundingDinoRegions(str(tiny_grounding_dino), box_threshold=0.0, text_threshold=0.0,
                                    max_regions=3, device="cpu")
    images = [Image.new("RGB", (120, 80), "red"), Image.new("RGB", (64, 96), "blue")]
    found = detector.regions(images, ["a", "b"], ["dog", "cat"])
    assert len(found) == 2
    for regions in found:
        assert 1 <= len(regions) <= 3
        assert [r.score for r in regions] == sorted((r.score for r in regions), reverse=True)
        for r in regions:
            x, y, w, h = r.box
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 1 + 1e-5 and y + h <= 1 + 1e-5  # float32 sums


def test_detections_tag_field_and_clip_embeddings(dataset, tiny_clip_vision, cleaning_categories):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.regions import DetectionsRegions

    ds, _ = dataset
    summary = clean_tags(ds, "objects", regions=DetectionsRegions(ds, "objects"),
                         encoder=ClipCrops(tiny_clip_vision, device="cpu"), categories=list(cleaning_categories))
    assert summary.review_field == "objects_review" and summary.tags_checked == ds.count("objects.detections")
    # The tags are the objects' labels, each boxed by its own object: only the two painted wrong are outliers.
    assert _flags(ds, "objects_review") == {("wrong_dog.png", "dog"): "outlier", ("wrong_car.png", "car"): "outlier"}


def test_fields_are_checked_before_anything_is_written(dataset, ram_never_car):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import TaggerCrops
    from fiftyone_ram.engine.regions import DetectionsRegions

    ds, _ = dataset
    with pytest.raises(ValueError, match="never rewritten"):
        clean_tags(ds, "gt", regions=DetectionsRegions(ds, "objects"), encoder=TaggerCrops(ram_never_car),
                   cleaned_field="gt")
    with pytest.raises(ValueError, match="Detections"):
        DetectionsRegions(ds, "gt")
    assert ds.get_field("gt_review") is None and not ds.list_runs()
