"""The data-engine operators and the review panel's actions as the App uses them, through FiftyOne's execution
API on a real database: field dropdowns of the right type, the Tag2Text family for your own captioner, a
message naming the missing detector offline, output rows only for what a run returned, one-click marks."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
GENERATE, CLEAN = "@fiftyone-ram/ram/generate_tags", "@fiftyone-ram/ram/clean_tags"


@pytest.fixture()
def dataset(captioned_cleaning_dataset):
    return captioned_cleaning_dataset


def _context(dataset, params, results=None):
    from fiftyone.operators.executor import ExecutionContext

    request = {"dataset_name": dataset.name, "params": params}
    if results is not None:
        request["results"] = results
    return ExecutionContext(request_params=request)


def _form(uri, dataset, params):
    import fiftyone.operators as foo

    return foo.get_operator(uri).resolve_input(_context(dataset, params)).type.properties


def test_generate_form_offers_dropdowns_of_fields_of_the_right_type(dataset):
    form = _form(GENERATE, dataset, {"predict": False})
    tag_fields, captions = form["tag_fields"].view, form["caption_fields"].view
    shown = tag_fields.to_json()
    assert shown["multiple"] and not shown["allow_user_input"]
    assert sorted(c.value for c in tag_fields.choices) == ["gt", "objects", "tags"]
    assert [c.value for c in captions.choices] == ["caption"]
    bad = _form(GENERATE, dataset, {"predict": False, "tag_fields": ["gt", "caption"]})["tag_fields"]
    assert bad.invalid and "caption" in bad.error_message
    # The output field is not offered as an input of itself.
    assert "gt" not in [c.value for c in _form(GENERATE, dataset, {"out_field": "gt", "predict": False})[
        "tag_fields"].view.choices]


def test_your_own_captioner_is_a_tag2text(dataset, tmp_path, tiny_model_settings, parser_tag_file):
    import fiftyone.operators as foo

    form = _form(GENERATE, dataset, {"predict": False, "captioner_model": "custom"})
    assert "captioner_family" not in form and "captioner_family_note" in form
    tiny = tiny_model_settings("tag2text")
    params = {"out_field": "generated", "predict": False, "captioner_model": "custom",
              "captioner_checkpoint_path": tiny["checkpoint_path"], "captioner_config": tiny["config"],
              "captioner_tag_list": tiny["tag_list"], "parser_tags": str(parser_tag_file(tmp_path)),
              "device": "cpu", "batch_size": 4}
    if "thresholds" in tiny:
        params["captioner_thresholds"] = tiny["thresholds"]
    result = foo.execute_operator(GENERATE, ctx={"view": dataset.limit(2), "params": params}).result
    assert result["produced"]["captioned"] > 0 and result["added_captioned"] == result["added"]["captioned"]


def test_clean_defaults_to_the_boxes_in_the_dataset_and_names_the_missing_detector(dataset, tiny_clip_vision_dir):
    import fiftyone.operators as foo

    form = _form(CLEAN, dataset, {})
    assert form["regions"].default == "field" and form["regions_field"].default == "objects"
    assert "detector" not in form
    params = {"tag_field": "gt", "regions": "detector", "detector": "IDEA-Research/grounding-dino-tiny",
              "embedder": "clip", "clip_model": str(tiny_clip_vision_dir), "region_check": False, "device": "cpu"}
    with pytest.raises(Exception) as raised:  # HF_HUB_OFFLINE=1 (conftest): the hub cannot be reached
        foo.execute_operator(CLEAN, ctx={"dataset": dataset, "params": params})
    message = str(raised.value).strip().splitlines()[-1]
    assert "Grounding-DINO detector 'IDEA-Research/grounding-dino-tiny' is not available" in message
    assert "Detections field" in message


def test_outputs_show_only_what_the_run_returned(dataset, tmp_path, parser_tag_file):
    import fiftyone.operators as foo

    params = {"out_field": "generated", "tag_fields": ["gt"], "caption_fields": ["caption"], "predict": False,
              "parser_tags": str(parser_tag_file(tmp_path))}
    result = foo.execute_operator(GENERATE, ctx={"dataset": dataset, "params": params}).result
    shown = foo.get_operator(GENERATE).resolve_output(_context(dataset, params, result)).type.properties
    assert set(shown) == {"out_field", "samples", "total", "added_original", "added_parsed", "added_predicted",
                          "added_captioned"}
    assert all(result[key] is not None for key in shown) and "added" not in shown
    applied = {"tag_field": "gt", "accept": "flagged", "removed": 2, "samples": 2}
    shown = foo.get_operator(CLEAN).resolve_output(_context(dataset, {"action": "apply"}, applied)).type.properties
    assert set(shown) == {"tag_field", "removed", "samples"}


def test_review_marks_apply_and_undo(dataset, tiny_clip_vision_dir):
    import fiftyone.operators as foo

    from fiftyone_ram.engine.review_marks import flagged_rows, mark, review_counts, review_fields

    params = {"tag_field": "gt", "regions": "field", "regions_field": "objects", "embedder": "clip",
              "clip_model": str(tiny_clip_vision_dir), "region_check": False, "device": "cpu"}
    summary = foo.execute_operator(CLEAN, ctx={"dataset": dataset, "params": params}).result
    assert review_fields(dataset) == {"gt": "gt_review"}
    rows = flagged_rows(dataset, "gt_review")
    assert len(rows) == summary["flagged_total"] >= 1 and all(r["mark"] == "" for r in rows)
    keep = rows[0]
    assert mark(dataset, "gt_review", [keep["label_id"]], "keep") == 1
    assert mark(dataset, "gt_review", [keep["label_id"]], "remove") == 1  # one mark at a time
    assert mark(dataset, "gt_review", [keep["label_id"]], "keep") == 1
    assert flagged_rows(dataset, "gt_review")[0]["mark"] == "keep"
    assert review_counts(dataset, "gt_review") == {"flagged": len(rows), "keep": 1, "remove": 0}

    before = dataset.count("gt.classifications")
    applied = foo.execute_operator(CLEAN, ctx={"dataset": dataset, "params": {**params, "action": "apply"}}).result
    assert applied["removed"] == len(rows) - 1 and dataset.count("gt.classifications") == before - len(rows) + 1
    labels = {(s, c.label) for s, row in zip(*dataset.values(["id", "gt.classifications"])) for c in row or []}
    assert (keep["sample_id"], keep["tag"]) in labels  # the one marked keep stayed
    foo.execute_operator(CLEAN, ctx={"dataset": dataset, "params": {**params, "action": "undo"}})
    assert dataset.count("gt.classifications") == before
