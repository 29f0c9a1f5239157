"""Operator ``finetune_model`` through FiftyOne's execution API: registered, delegated only, and a delegated run
that trains the tiny checkpoint, reports progress and writes a model folder that loads."""

from __future__ import annotations

import pytest

fo = pytest.importorskip("fiftyone")
pytestmark = pytest.mark.usefixtures("one_thread")
FINETUNE = "@fiftyone-ram/ram/finetune_model"


@pytest.fixture()
def dataset(tmp_path, shapes_dataset):
    ds, _ = shapes_dataset(tmp_path / "images", train=6, validation=4)
    yield ds
    ds.delete()


def test_registered_and_delegated_only():
    import fiftyone.operators as foo
    from fiftyone.operators.registry import OperatorRegistry

    assert foo.operator_exists(FINETUNE)
    assert not [e for e in OperatorRegistry().list_errors() if "training" in str(e)]
    operator = foo.get_operator(FINETUNE)
    assert operator.config.allow_delegated_execution and not operator.config.allow_immediate_execution


def test_delegated_run_writes_a_model_folder(dataset, tmp_path, tiny_model_settings):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    from fiftyone_ram import load_tagger

    settings = tiny_model_settings("ram")
    out = tmp_path / "model"
    params = {"model": "custom", **settings, "tags": ["circle", "square", "triangle"], "device": "cpu",
              "output_dir": str(out), "tag_field": "gt", "validation_tag": "validation", "epochs": 1,
              "batch_size": 10, "lr": 1e-5, "teacher": str(tmp_path / "no-teacher"),
              "precision": "fp32"}  # the form always sends its precision (once also passed as the tagger's)
    queued = foo.execute_operator(FINETUNE, ctx={"dataset": dataset, "params": params, "request_delegation": True})
    assert queued.delegated
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset.name, limit=1)
    done = service.get(queued.result["id"])
    assert done.run_state == "completed", done.result
    assert done.status.progress == 1.0 and "loss" in done.status.label
    result = done.result.result
    assert result["steps"] == 1 and result["output_dir"] == str(out) and result["best_mAP"] is not None
    assert load_tagger(out, device="cpu").tag_list == ["circle", "square", "triangle"]
