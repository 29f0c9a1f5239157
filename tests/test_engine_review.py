"""Review and commit: label tags ``keep`` / ``remove`` on the review field, ``apply_cleaning`` removing the
accepted tags after keeping the original, and ``undo_cleaning`` putting it back."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def cleaned(tmp_path, cleaning_dataset, tiny_clip_vision):
    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.regions import DetectionsRegions

    ds, _ = cleaning_dataset(tmp_path, per_category=4)
    ds.set_values("tags", [[c.label for c in v.classifications] for v in ds.values("gt")])
    for field in ("gt", "tags"):
        clean_tags(ds, field, regions=DetectionsRegions(ds, "objects"), encoder=ClipCrops(tiny_clip_vision, device="cpu"))
    yield ds
    ds.delete()


def _names(ds, field="gt") -> dict[str, list[str]]:
    values = ds.values(field)
    if field != "tags":
        values = [[c.label for c in v.classifications] for v in values]
    return {Path(p).name: names for p, names in zip(ds.values("filepath"), values)}


def _mark(ds, review_field: str, filename: str, tag: str, mark: str) -> None:
    """What a reviewer does in the App: select the label and give it a label tag."""
    sample = ds.match({"filepath": {"$regex": f"/{filename}$"}}).first()
    label = next(c for c in sample[review_field].classifications if c.label == tag)
    ds.select_labels(ids=[label.id]).tag_labels(mark, label_fields=review_field)


def test_apply_removes_the_accepted_tags_and_undo_restores_them(cleaned):
    from fiftyone_ram.engine.review import apply_cleaning, removals, undo_cleaning

    ds = cleaned
    original, original_ids = _names(ds), ds.values("gt.classifications.id")
    assert removals(ds, "gt_review") == {
        ds.match({"filepath": {"$regex": f"/{f}$"}}).first().id: {t}
        for f, t in [("wrong_dog.png", "dog"), ("wrong_car.png", "car"), ("unboxed.png", "cat")]}
    _mark(ds, "gt_review", "wrong_car.png", "car", "keep")  # the reviewer rejects this flag
    _mark(ds, "gt_review", "dog0.png", "dog", "remove")  # and removes an unflagged tag

    result = apply_cleaning(ds, "gt")
    assert result["removed"] == 3 and result["samples"] == 3 and result["backup_field"] == "gt_original"
    after = _names(ds)
    assert "dog" not in after["wrong_dog.png"] and "cat" not in after["unboxed.png"]
    assert "dog" not in after["dog0.png"] and "car" in after["wrong_car.png"]
    assert {f: n for f, n in after.items() if f not in ("wrong_dog.png", "unboxed.png", "dog0.png")} == {
        f: n for f, n in original.items() if f not in ("wrong_dog.png", "unboxed.png", "dog0.png")}
    assert _names(ds, "gt_original") == original  # the original is kept
    assert ds.load_run_results("ram_clean_gt", cache=False).applied["removed"] == 3

    # A second apply (only what is marked "remove") leaves the kept original as it was.
    assert apply_cleaning(ds, "gt", accept="marked")["removed"] == 0
    assert _names(ds, "gt_original") == original

    undone = undo_cleaning(ds, "gt")
    assert _names(ds) == original and ds.values("gt.classifications.id") == original_ids
    assert ds.get_field("gt_original") is None and undone["restored_from"] == "gt_original"
    with pytest.raises(ValueError, match="nothing to undo"):
        undo_cleaning(ds, "gt")


def test_apply_on_sample_tags_and_on_a_view(cleaned):
    from fiftyone_ram.engine.review import apply_cleaning, undo_cleaning

    ds = cleaned
    original = _names(ds, "tags")
    view = ds.match({"filepath": {"$regex": "wrong_"}})
    result = apply_cleaning(view, "tags")
    assert result["removed"] == 2
    after = _names(ds, "tags")
    assert after["wrong_dog.png"] == [] and after["wrong_car.png"] == ["cat"]
    assert after["unboxed.png"] == original["unboxed.png"]  # outside the view: untouched
    undo_cleaning(ds, "tags")
    assert _names(ds, "tags") == original


def test_apply_needs_a_cleaning_first(tmp_path):
    import fiftyone as fo

    from fiftyone_ram.engine.review import apply_cleaning

    ds = fo.Dataset()
    ds.add_sample(fo.Sample(filepath=str(tmp_path / "a.png"), gt=fo.Classifications()))
    with pytest.raises(ValueError, match="run cleaning first"):
        apply_cleaning(ds, "gt")
    with pytest.raises(ValueError, match="accept"):
        from fiftyone_ram.engine.review import removals

        removals(ds, "gt", accept="everything")
    ds.delete()
