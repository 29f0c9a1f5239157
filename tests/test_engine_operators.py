"""Operators ``generate_tags`` and ``clean_tags`` through FiftyOne's execution API, immediately and
delegated, on a real database; the forms they show; apply and undo from the operator."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
GENERATE, CLEAN = "@fiftyone-ram/ram/generate_tags", "@fiftyone-ram/ram/clean_tags"


@pytest.fixture()
def dataset(captioned_cleaning_dataset):
    return captioned_cleaning_dataset


def test_operators_are_registered_without_errors():
    import fiftyone.operators as foo
    from fiftyone.operators.registry import OperatorRegistry

    assert foo.operator_exists(GENERATE) and foo.operator_exists(CLEAN)
    assert not [e for e in OperatorRegistry().list_errors() if "engine" in str(e)]


def test_forms_offer_the_dataset_fields(dataset):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    def properties(uri, params):
        ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": params})
        return foo.get_operator(uri).resolve_input(ctx).type.properties

    clean = properties(CLEAN, {"regions": "field"})
    assert sorted(clean["tag_field"].type.values) == ["gt", "objects", "tags"]
    assert clean["regions_field"].type.values == ["objects"] and "detector" not in clean
    assert {"fraction", "rule", "embedder", "model"} <= set(clean)
    assert "existing" not in clean  # offered once the field was cleaned
    assert set(properties(CLEAN, {"action": "apply"})) >= {"tag_field", "accept"}
    generate = properties(GENERATE, {"predict": False, "captioner_model": "custom"})
    assert {"out_field", "tag_fields", "caption_fields", "captioner_checkpoint_path"} <= set(generate)
    assert "threshold" not in generate


def test_generate_immediately(dataset, tmp_path, parser_tag_file):
    import fiftyone.operators as foo

    result = foo.execute_operator(GENERATE, ctx={"dataset": dataset, "params": {
        "out_field": "generated", "tag_fields": ["gt", "objects"], "caption_fields": ["caption"], "predict": False,
        "parser_tags": str(parser_tag_file(tmp_path))}})
    assert result.error is None
    dataset.reload()
    first = {c.label: c.sources for c in dataset.first()["generated"].classifications}
    assert first == {"dog": ["original", "parsed"], "cat": ["original"], "beach": ["parsed"]}
    # "a dog on the beach" adds beach everywhere, and dog where neither gt nor objects had it.
    originals = [{c.label for c in g.classifications} | {d.label for d in o.detections}
                 for g, o in zip(dataset.values("gt"), dataset.values("objects"))]
    assert result.result["added"] == {"original": sum(map(len, originals)),
                                      "parsed": sum(len({"dog", "beach"} - names) for names in originals),
                                      "predicted": 0, "captioned": 0}


def test_clean_delegated_then_apply_and_undo(dataset, tiny_clip_vision_dir):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    params = {"tag_field": "gt", "regions": "field", "regions_field": "objects", "embedder": "clip",
              "clip_model": str(tiny_clip_vision_dir), "region_check": False, "device": "cpu"}
    queued = foo.execute_operator(CLEAN, ctx={"dataset": dataset, "params": params, "request_delegation": True})
    assert queued.delegated
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset.name, limit=1)
    done = service.get(queued.result["id"])
    assert done.run_state == "completed", done.result
    assert done.status.progress == 1.0 and "categories" in done.status.label
    summary = done.result.result
    assert summary["flagged"] == {"outlier": 2, "no_region": 1} and summary["view_name"] == "gt_flagged"
    dataset.reload()
    assert dataset.load_saved_view("gt_flagged").count("gt_review.classifications") == 3

    before = dataset.count("gt.classifications")
    applied = foo.execute_operator(CLEAN, ctx={"dataset": dataset, "params": {"action": "apply", "tag_field": "gt"}})
    assert applied.result["removed"] == 3 and dataset.count("gt.classifications") == before - 3
    foo.execute_operator(CLEAN, ctx={"dataset": dataset, "params": {"action": "undo", "tag_field": "gt"}})
    assert dataset.count("gt.classifications") == before and dataset.get_field("gt_original") is None


def test_generate_and_clean_offer_ray_and_run_it_only_delegated(dataset):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    params = {"out_field": "generated", "tag_fields": ["gt"], "predict": False, "executor": "ray"}
    for uri in (GENERATE, CLEAN):
        ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": params})
        form = foo.get_operator(uri).resolve_input(ctx).type.properties
        assert {"executor", "ray_address", "workers", "gpus_per_worker", "ray_delegated"} <= set(form), uri
    with pytest.raises(Exception, match="the Ray executor runs only as a scheduled operation"):
        foo.execute_operator(GENERATE, ctx={"dataset": dataset, "params": params})
    assert dataset.get_field("generated") is None
