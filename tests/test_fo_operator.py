"""The ``tag_images`` operator through FiftyOne's operator execution API: immediate and delegated, on views."""

from __future__ import annotations

import pytest

fo = pytest.importorskip("fiftyone")
foo = pytest.importorskip("fiftyone.operators")

URI = "@fiftyone-ram/ram/tag_images"


@pytest.fixture()
def params(tiny_model_settings):
    """``params(**extra)``: the operator's parameters for the tiny RAM."""
    settings = tiny_model_settings()

    def make(**extra) -> dict:
        return {"model": "custom", "family": "ram", "checkpoint_path": settings["checkpoint_path"],
                "config": settings["config"], "tag_list": settings["tag_list"], "thresholds": settings["thresholds"],
                "device": "cpu", "label_field": "ram", "batch_size": 2, **extra}

    return make


@pytest.fixture()
def dataset(tmp_path, copy_pngs):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p), keep="yes") for p in copy_pngs(tmp_path / "images")])
    ds.add_sample(fo.Sample(filepath=str(tmp_path / "missing.png"), keep="yes"))
    return ds


def test_the_plugin_registers_without_errors():
    from fiftyone.operators.registry import OperatorRegistry

    registry = OperatorRegistry()
    assert registry.operator_exists(URI)
    assert not [e for e in registry.list_errors() if "fiftyone-ram" in str(e)]


def test_immediate_run_on_a_view_then_refusal_to_overwrite(dataset, params, tiny_tagger, stored_tags, assert_same_tags):
    view = dataset.limit(3)
    result = foo.execute_operator(URI, ctx={"view": view, "params": params()})
    assert result.error is None and not result.delegated
    assert result.result["tagged"] == 3 and result.result["failed_count"] == 0
    assert len(dataset.exists("ram")) == 3  # only the view
    tagger = tiny_tagger("ram")
    assert_same_tags([stored_tags(label) for label in view.values("ram")], tagger.predict(view.values("filepath")),
                     names=tagger.tag_list, thresholds=tagger.thresholds)
    assert dataset.distinct("keep") == ["yes"]

    with pytest.raises(Exception, match="resume or to replace"):
        foo.execute_operator(URI, ctx={"view": dataset.view(), "params": params()})
    assert len(dataset.exists("ram")) == 3


def test_delegated_run_on_a_view_resumes_and_records_errors(dataset, params):
    from fiftyone.operators.delegated import DelegatedOperationService

    foo.execute_operator(URI, ctx={"view": dataset.limit(2), "params": params()})
    view = dataset.skip(1)  # one tagged sample, three untagged, the missing file
    queued = foo.execute_operator(URI, ctx={"view": view, "params": params(existing="resume"),
                                            "request_delegation": True})
    assert queued.delegated
    service = DelegatedOperationService()
    service.execute_queued_operations(operator=URI, dataset_name=dataset.name)
    operation = service.get(queued.result["id"])
    assert operation.run_state == "completed", operation.status
    assert operation.status.progress == 1.0  # reported through ctx.set_progress
    assert operation.result.result["skipped"] == 1 and operation.result.result["tagged"] == 3
    missing = dataset.last()
    assert missing.ram is None and "does not exist" in missing.ram_error
    assert len(dataset.exists("ram")) == 5


def test_the_form_follows_the_choices(dataset):
    from fiftyone.operators.executor import ExecutionContext

    def fields(**params):
        ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "view": dataset.view()._serialize(),
                                               "params": params})
        return foo.get_operator(URI).resolve_input(ctx).type.properties

    released = fields(model="ram_plus_swin_large_14m")
    assert {"view_target", "threshold_mode", "language", "label_field", "sample_tags", "batch_size"} <= set(released)
    assert "family" not in released and "existing" not in released
    assert {"family", "checkpoint_path", "config"} <= set(fields(model="custom"))
    tag2text = fields(model="tag2text_swin_14m", threshold_mode="global")
    assert "caption" in tag2text and "threshold" in tag2text and "language" not in tag2text
    dataset.add_sample_field("ram", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)
    assert fields(model="ram_plus_swin_large_14m")["existing"].invalid
