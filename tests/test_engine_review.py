"""Review and commit: label tags ``keep`` / ``remove`` on the review field, ``apply_cleaning`` removing the
accepted tags (recording each one), and ``undo_cleaning`` putting back exactly those and nothing else: edits
and samples made after the apply survive it, and what cannot be put back is reported with the reason."""

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


def _labels(ds, field="gt", list_field="classifications") -> dict[str, list[tuple]]:
    """Per file name: (id, label, confidence) of every label, in order (None for an empty field)."""
    out = {}
    for path, value in zip(ds.values("filepath"), ds.values(field)):
        out[Path(path).name] = None if value is None else [(c.id, c.label, c.confidence) for c in value[list_field]]
    return out


def _sample(ds, filename: str):
    return ds.match({"filepath": {"$regex": f"/{filename}$"}}).first()


def _mark(ds, review_field: str, filename: str, tag: str, mark: str) -> None:
    """What a reviewer does in the App: select the label and give it a label tag."""
    label = next(c for c in _sample(ds, filename)[review_field].classifications if c.label == tag)
    ds.select_labels(ids=[label.id]).tag_labels(mark, label_fields=review_field)


def test_apply_removes_the_accepted_tags(cleaned):
    from fiftyone_ram.engine.review import apply_cleaning, removals

    ds = cleaned
    original = _names(ds)
    assert removals(ds, "gt_review") == {
        _sample(ds, f).id: {t} for f, t in [("wrong_dog.png", "dog"), ("wrong_car.png", "car"), ("unboxed.png", "cat")]}
    _mark(ds, "gt_review", "wrong_car.png", "car", "keep")  # the reviewer rejects this flag
    _mark(ds, "gt_review", "dog0.png", "dog", "remove")  # and removes an unflagged tag

    result = apply_cleaning(ds, "gt")
    assert (result["removed"], result["samples"], result["apply"]) == (3, 3, 1)
    after = _names(ds)
    assert "dog" not in after["wrong_dog.png"] and "cat" not in after["unboxed.png"]
    assert "dog" not in after["dog0.png"] and "car" in after["wrong_car.png"]
    assert {f: n for f, n in after.items() if f not in ("wrong_dog.png", "unboxed.png", "dog0.png")} == {
        f: n for f, n in original.items() if f not in ("wrong_dog.png", "unboxed.png", "dog0.png")}
    assert ds.get_field("gt_original") is None  # no copy of the whole field is kept
    from fiftyone_ram.driver import runs

    assert runs.load_state(ds, "clean", "gt")["applied"]["removed"] == 3


def test_undo_puts_back_what_apply_removed_and_keeps_every_later_edit(cleaned):
    import fiftyone as fo

    from fiftyone_ram.engine.review import CleaningError, apply_cleaning, undo_cleaning
    from fiftyone_ram.errors import UserError

    ds = cleaned
    sample = _sample(ds, "wrong_dog.png")  # the tag to be removed carries attributes of its own
    sample.gt.classifications[0].confidence = 0.33
    sample.gt.classifications[0]["note"] = "checked by hand"
    sample.save()
    before = _labels(ds)
    assert apply_cleaning(ds, "gt")["removed"] == 3

    # Work done after the apply, all of which undo must keep.
    ds.add_sample(fo.Sample(filepath=str(Path(sample.filepath).with_name("added_later.png")),
                            gt=fo.Classifications(classifications=[fo.Classification(label="dog")])))
    wrong_dog = _sample(ds, "wrong_dog.png")
    wrong_dog.gt.classifications.append(fo.Classification(label="bird"))  # a label added
    wrong_dog.save()
    wrong_car = _sample(ds, "wrong_car.png")
    wrong_car.gt.classifications[0].confidence = 0.42  # a kept label changed
    wrong_car.save()
    dog0 = _sample(ds, "dog0.png")
    dog0.gt.classifications = [c for c in dog0.gt.classifications if c.label != "cat"]  # a label removed
    dog0.save()
    unboxed = _sample(ds, "unboxed.png")
    unboxed.gt.classifications.append(fo.Classification(label="cat"))  # the removed tag, added again by hand
    unboxed.save()
    ds.set_values("reviewed", [True] * len(ds))  # another attribute of every sample
    edited = _labels(ds)

    undone = undo_cleaning(ds, "gt")
    assert (undone["restored"], undone["samples"], undone["applies_undone"]) == (2, 2, 1)
    assert undone["not_restored"] == 1 and undone["not_restored_by_reason"] == {"re_added": 1}
    assert undone["not_restored_examples"][0]["tag"] == "cat"
    assert "1 tag(s) not restored" in undone["message"] and "added again after apply" in undone["message"]
    assert "unboxed.png" in undone["message"]

    after = _labels(ds)
    assert after["added_later.png"] == edited["added_later.png"]  # a later sample keeps its field
    assert after["wrong_dog.png"] == before["wrong_dog.png"] + edited["wrong_dog.png"]  # dog back, first
    restored = _sample(ds, "wrong_dog.png").gt.classifications[0]
    assert (restored.confidence, restored["note"]) == (0.33, "checked by hand")  # as it was, attributes and id
    assert [(i, n) for i, n, _ in after["wrong_car.png"]] == [(i, n) for i, n, _ in before["wrong_car.png"]]
    assert after["wrong_car.png"][1][2] == 0.42  # the edit made after the apply stays
    assert after["unboxed.png"] == edited["unboxed.png"]  # no second "cat"
    for name in set(after) - {"wrong_dog.png", "wrong_car.png"}:
        assert after[name] == edited[name], name
    assert ds.values("reviewed") == [True] * len(ds)

    with pytest.raises(CleaningError, match="nothing to undo in 'gt': the last apply was already undone") as error:
        undo_cleaning(ds, "gt")
    assert isinstance(error.value, UserError) and "\n" not in str(error.value)
    assert _labels(ds) == after


def test_apply_twice_and_apply_after_undo(cleaned):
    from fiftyone_ram.engine.review import apply_cleaning, undo_cleaning

    ds = cleaned
    before = _labels(ds)
    _mark(ds, "gt_review", "dog0.png", "dog", "remove")
    assert apply_cleaning(ds, "gt", accept="marked")["removed"] == 1
    assert apply_cleaning(ds, "gt")["removed"] == 3  # the flagged ones on top
    nothing = apply_cleaning(ds, "gt")
    assert (nothing["removed"], nothing["apply"]) == (0, None)  # nothing left: nothing recorded
    undone = undo_cleaning(ds, "gt")
    assert (undone["restored"], undone["applies_undone"], undone["not_restored"]) == (4, 2, 0)
    assert _labels(ds) == before

    again = apply_cleaning(ds, "gt")  # after an undo, apply works again and is numbered on
    assert (again["removed"], again["apply"]) == (4, 3)
    assert undo_cleaning(ds, "gt")["restored"] == 4
    assert _labels(ds) == before


def test_undo_says_what_it_cannot_put_back(cleaned):
    from fiftyone_ram.engine.review import apply_cleaning, undo_cleaning

    ds = cleaned
    before = _labels(ds)
    apply_cleaning(ds, "gt")
    ds.delete_samples(_sample(ds, "wrong_dog.png"))
    unboxed = _sample(ds, "unboxed.png")
    unboxed.gt = None  # the user cleared the field of this sample
    unboxed.save()
    undone = undo_cleaning(ds, "gt")
    assert undone["restored"] == 1 and undone["not_restored_by_reason"] == {"deleted": 1, "cleared": 1}
    assert "the sample was deleted" in undone["message"] and "cleared" in undone["message"]
    after = _labels(ds)
    assert after["wrong_car.png"] == before["wrong_car.png"] and after["unboxed.png"] is None


def test_sample_tags_on_a_view(cleaned):
    from fiftyone_ram.engine.review import apply_cleaning, undo_cleaning

    ds = cleaned
    original = _names(ds, "tags")
    view = ds.match({"filepath": {"$regex": "wrong_"}})
    assert apply_cleaning(view, "tags")["removed"] == 2
    after = _names(ds, "tags")
    assert after["wrong_dog.png"] == [] and after["wrong_car.png"] == ["cat"]
    assert after["unboxed.png"] == original["unboxed.png"]  # outside the view: untouched
    wrong_dog = _sample(ds, "wrong_dog.png")
    wrong_dog.tags.append("bird")
    wrong_dog.save()
    assert undo_cleaning(ds, "tags")["restored"] == 2
    restored = _names(ds, "tags")
    assert restored["wrong_dog.png"] == ["dog", "bird"] and restored["wrong_car.png"] == original["wrong_car.png"]


def test_detections_and_single_label_fields(cleaned, tiny_clip_vision):
    import fiftyone as fo

    from fiftyone_ram.engine.cleaning import clean_tags
    from fiftyone_ram.engine.crops import ClipCrops
    from fiftyone_ram.engine.regions import DetectionsRegions
    from fiftyone_ram.engine.review import apply_cleaning, undo_cleaning

    ds = cleaned
    ds.set_values("first", [fo.Classification(label=v.classifications[0].label) for v in ds.values("gt")])
    encoder = ClipCrops(tiny_clip_vision, device="cpu")
    for field in ("objects", "first"):
        clean_tags(ds, field, regions=DetectionsRegions(ds, "objects"), encoder=encoder)

    boxes = _labels(ds, "objects", "detections")
    box_of = {d.id: d.bounding_box for v in ds.values("objects") for d in v.detections}
    assert apply_cleaning(ds, "objects")["removed"] == 2  # the two boxes painted wrong
    wrong_dog = _sample(ds, "wrong_dog.png")
    wrong_dog.objects.detections.append(fo.Detection(label="bird", bounding_box=[0.6, 0.1, 0.2, 0.2]))
    wrong_dog.save()
    assert undo_cleaning(ds, "objects")["restored"] == 2
    after = _labels(ds, "objects", "detections")
    assert after["wrong_dog.png"][:-1] == boxes["wrong_dog.png"] and after["wrong_dog.png"][-1][1] == "bird"
    assert after["wrong_car.png"] == boxes["wrong_car.png"]
    assert {d.id: d.bounding_box for v in ds.values("objects") for d in v.detections if d.label != "bird"} == box_of

    firsts = dict(zip(ds.values("filepath"), ds.values("first.id")))
    for filename, tag in (("wrong_dog.png", "dog"), ("wrong_car.png", "car")):
        _mark(ds, "first_review", filename, tag, "remove")
    removed = apply_cleaning(ds, "first", accept="marked")
    assert removed["removed"] == 2 and _sample(ds, "wrong_dog.png").first is None
    wrong_car = _sample(ds, "wrong_car.png")
    wrong_car.first = fo.Classification(label="truck")  # the user chose another label since
    wrong_car.save()
    undone = undo_cleaning(ds, "first")
    assert undone["restored"] == 1 and undone["not_restored_by_reason"] == {"replaced": 1}
    assert _sample(ds, "wrong_dog.png").first.id == firsts[_sample(ds, "wrong_dog.png").filepath]
    assert _sample(ds, "wrong_car.png").first.label == "truck"


def test_apply_and_undo_need_what_they_work_on(tmp_path):
    import fiftyone as fo

    from fiftyone_ram.engine.review import CleaningError, apply_cleaning, removals, undo_cleaning

    ds = fo.Dataset()
    ds.add_sample(fo.Sample(filepath=str(tmp_path / "a.png"), gt=fo.Classifications()))
    with pytest.raises(CleaningError, match="run cleaning first"):
        apply_cleaning(ds, "gt")
    with pytest.raises(CleaningError, match="accept"):
        removals(ds, "gt", accept="everything")
    with pytest.raises(CleaningError, match="nothing to undo in 'gt': apply was not run"):
        undo_cleaning(ds, "gt")
    ds.delete()
