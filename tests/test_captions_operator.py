"""Operator ``parse_caption_tags`` on a real FiftyOne database: string and list-of-strings caption fields to a
``Classifications`` field, immediately and delegated."""

from __future__ import annotations

import pytest

URI = "@fiftyone-ram/ram/parse_caption_tags"


@pytest.fixture()
def dataset(tmp_path):
    import fiftyone as fo

    ds = fo.Dataset()
    ds.add_samples(
        [
            fo.Sample(filepath=str(tmp_path / "a.jpg"), caption="A man riding a horse on a beach",
                      captions=["two dogs playing in the snow", "no people, only dogs"]),
            fo.Sample(filepath=str(tmp_path / "b.jpg"), caption="a kitchen with no people in it",
                      captions=["a cat on a sofa"]),
            fo.Sample(filepath=str(tmp_path / "c.jpg"), caption=None, captions=[]),
        ]
    )
    yield ds
    ds.delete()


def _labels(ds, field):
    return [None if c is None else [x.label for x in c.classifications] for c in ds.values(field)]


@pytest.fixture()
def ram_tag_list(upstream_dir):
    return str(upstream_dir / "ram_tag_list.txt")


def test_operator_is_registered_without_errors():
    import fiftyone.operators as foo
    from fiftyone.operators.registry import OperatorRegistry

    assert foo.operator_exists(URI)
    assert not [e for e in OperatorRegistry().list_errors() if "captions" in str(e)]


def test_string_and_list_fields_round_trip(dataset, ram_tag_list):
    import fiftyone as fo
    import fiftyone.operators as foo

    result = foo.execute_operator(
        URI, ctx={"dataset": dataset, "params": {"caption_field": "caption", "tag_list": ram_tag_list}}
    )
    assert result.error is None and result.result == {"count": 3}
    dataset.reload()
    assert _labels(dataset, "caption_tags") == [["man", "riding", "horse", "beach"], ["kitchen"], None]
    assert isinstance(dataset.first()["caption_tags"], fo.Classifications)

    result = foo.execute_operator(
        URI,
        ctx={
            "dataset": dataset,
            "params": {"caption_field": "captions", "label_field": "gt_tags", "tag_list": ram_tag_list},
        },
    )
    assert result.result == {"count": 3}
    dataset.reload()
    assert _labels(dataset, "gt_tags") == [["dog", "play", "snow"], ["cat", "couch"], None]
    assert dataset.count_values("gt_tags.classifications.label") == {"dog": 1, "play": 1, "snow": 1, "cat": 1,
                                                                     "couch": 1}


def test_inputs_offer_caption_fields(dataset):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    operator = foo.get_operator(URI)
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {}})
    properties = operator.resolve_input(ctx).type.properties
    assert {"caption_field", "label_field", "tag_list"} <= set(properties)
    assert [c.value for c in properties["caption_field"].view.choices] == ["caption", "captions"]


def test_delegated_run_reports_progress_and_writes_labels(dataset, ram_tag_list):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    queued = foo.execute_operator(
        URI,
        ctx={"dataset": dataset, "params": {"caption_field": "caption", "tag_list": ram_tag_list},
             "request_delegation": True},
    )
    assert queued.delegated and queued.result["run_state"] == "queued"
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset.name, limit=1)
    done = service.get(queued.result["id"])
    assert done.run_state == "completed", done.result
    assert done.status.progress == 1.0 and "3 of 3 samples" in done.status.label
    assert done.result.result == {"count": 3}
    dataset.reload()
    assert _labels(dataset, "caption_tags") == [["man", "riding", "horse", "beach"], ["kitchen"], None]
