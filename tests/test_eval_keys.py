"""Evaluation keys never overwrite user data: every name a tag evaluation would write is checked against the
dataset first, a run is registered only once it is written, ``delete_evaluation`` deletes what the run wrote
and nothing else, and a key reused for a tag evaluation replaces that run alone (FiftyOne's convention) while
``overwrite=False`` refuses it (Python API, CLI and operator)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import fiftyone as fo

from fiftyone_ram.evaluation import evaluate_tags
from fiftyone_ram.evaluation.keys import EvalKeyError
from fiftyone_ram.errors import UserError

TAGS = ["dog", "cat", "car", "tree"]


@pytest.fixture()
def dataset():
    ds = fo.Dataset()
    samples = []
    for i in range(12):
        truth = [t for j, t in enumerate(TAGS) if (i + j) % 3 == 0]
        predicted = [t for j, t in enumerate(TAGS) if (i + j) % 2 == 0]
        samples.append(fo.Sample(
            filepath=f"/tmp/fiftyone-ram-eval-keys/{i}.jpg",
            gt=fo.Classifications(classifications=[fo.Classification(label=t) for t in truth]),
            gt_det=fo.Detections(detections=[fo.Detection(label=t, bounding_box=[0.1, 0.1, 0.5, 0.5]) for t in truth]),
            ram=fo.Classifications(classifications=[fo.Classification(label=t, confidence=0.5 + 0.04 * k)
                                                    for k, t in enumerate(predicted)]),
            top1=fo.Classification(label=predicted[0] if predicted else "dog", confidence=0.9),
            gt_one=fo.Classification(label=truth[0] if truth else "cat"),
        ))
    ds.add_samples(samples, progress=False)
    yield ds
    ds.delete()


def _snapshot(ds) -> tuple:
    """Everything a refused run must leave as it was: schema, evaluations, every value of every field."""
    schema = sorted(ds.get_field_schema(flat=True))
    docs = list(ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id", 1))
    return schema, ds.list_evaluations(), docs


def _refused(ds, key: str, *names: str, **kwargs) -> str:
    before = _snapshot(ds)
    with pytest.raises(EvalKeyError) as error:
        evaluate_tags(ds, "ram", kwargs.pop("gt", "gt"), eval_key=key, **kwargs)
    message = str(error.value)
    assert isinstance(error.value, UserError) and "\n" not in message
    for name in names:
        assert name in message
    assert _snapshot(ds) == before
    return message


def test_names_that_exist_are_refused_before_anything_is_written(dataset):
    ds = dataset
    # sample fields of the user's named like the run's
    ds.add_sample_field("mine_tp", fo.IntField)
    ds.set_values("mine_tp", list(range(len(ds))))
    _refused(ds, "mine", "mine_tp")
    ds.add_sample_field("other_missed", fo.StringField)  # of another type too: no half-registered run
    ds.set_values("other_missed", ["x"] * len(ds))
    _refused(ds, "other", "other_missed")
    # a label attribute the user declared, and one stored without being declared
    ds.set_values("gt_det.detections.checked", [["yes"] * len(v.detections) for v in ds.values("gt_det")],
                  dynamic=True)
    _refused(ds, "checked", "gt_det.detections.checked", gt="gt_det")
    sample = ds.first()
    sample.ram.classifications[0]["note"] = "the user's"
    sample.save()
    assert ds.get_field("ram.classifications.note") is None  # not in the schema, but in the data
    _refused(ds, "note", "ram.classifications.note")
    # built-in attributes of every label
    for key in ("tags", "label", "confidence", "id", "logits"):
        message = _refused(ds, key, f"ram.classifications.{key}", f"gt.classifications.{key}")
        assert "built-in attribute of every label" in message
    with pytest.raises(EvalKeyError, match=r"top1\.tags, gt_one\.tags"):  # single labels too
        evaluate_tags(ds, "top1", "gt_one", eval_key="tags")
    _refused(ds, "not a key", "invalid evaluation key")


def test_delete_evaluation_deletes_only_what_the_run_wrote(dataset):
    ds = dataset
    schema = set(ds.get_field_schema(flat=True))
    evaluate_tags(ds, "ram", "gt", eval_key="ev")
    assert ds.get_evaluation_info("ev").config.label_paths == ["ram.classifications", "gt.classifications"]
    # the user later adds a field of the same shape, with an attribute named like the key, on another field
    ds.clone_sample_field("ram", "ram_copy")
    ds.set_values("ram_copy.classifications.ev", [["mine"] * len(v.classifications) for v in ds.values("ram")],
                  dynamic=True)
    ds.delete_evaluation("ev")
    copied = {name for name in ds.get_field_schema(flat=True) if name.startswith("ram_copy")}
    assert set(ds.get_field_schema(flat=True)) - copied == schema and "ram_copy.classifications.ev" in copied
    assert ds.values("ram_copy.classifications.ev")[0] == ["mine"] * len(ds.first().ram.classifications)


def test_a_reused_key_replaces_its_own_run_and_nothing_else(dataset):
    ds = dataset
    first = evaluate_tags(ds, "ram", "gt", eval_key="ev")
    message = _refused(ds, "ev", "already holds a tag evaluation of 'ram' against 'gt'", overwrite=False)
    assert "choose another key" in message
    # replaced cleanly, on other fields: the old run's fields go, the new run's come, one run under the key
    second = evaluate_tags(ds, "ram", "gt_det", eval_key="ev")
    assert ds.list_evaluations() == ["ev"]
    assert ds.get_field("gt.classifications.ev") is None and ds.get_field("gt_det.detections.ev") is not None
    assert ds.get_evaluation_info("ev").config.gt_field == "gt_det"
    assert ds.load_evaluation_results("ev", cache=False).summary == pytest.approx(second.summary)
    assert first.summary["tp"] == second.summary["tp"]  # the same tags, boxed or not
    # replacing never reaches names that are not the old run's: the user's attribute written since on a
    # field the old run did not use blocks the new run
    evaluate_tags(ds, "top1", "gt_one", eval_key="ev2")
    ds.set_values("ram.classifications.ev2", [["mine"] * len(v.classifications) for v in ds.values("ram")],
                  dynamic=True)
    _refused(ds, "ev2", "ram.classifications.ev2")
    assert ds.values("ram.classifications.ev2")[0] == ["mine"] * len(ds.first().ram.classifications)
    evaluate_tags(ds, "top1", "gt_one", eval_key="ev2")  # on the run's own fields it is replaced
    assert ds.values("ram.classifications.ev2")[0] == ["mine"] * len(ds.first().ram.classifications)


def test_another_evaluation_key_is_never_replaced(dataset):
    ds = dataset
    ds.evaluate_classifications("top1", gt_field="gt_one", eval_key="simple")
    before = ds.values("simple")
    message = _refused(ds, "simple", "taken by another evaluation", overwrite=True)
    assert "delete_evaluation('simple')" in message
    assert ds.values("simple") == before and ds.get_evaluation_info("simple").config.method == "simple"


def test_a_run_that_fails_while_writing_leaves_no_key_and_no_fields(dataset, monkeypatch):
    from fiftyone_ram.evaluation import run

    ds = dataset
    before = _snapshot(ds)
    original = run._set_label_attribute

    def stop_after_the_first_field(*args, **kwargs):  # the sample fields are written, then the database fails
        original(*args, **kwargs)
        raise RuntimeError("connection lost")

    monkeypatch.setattr(run, "_set_label_attribute", stop_after_the_first_field)
    with pytest.raises(RuntimeError, match="connection lost"):
        evaluate_tags(ds, "ram", "gt", eval_key="ev")
    assert _snapshot(ds) == before

    monkeypatch.setattr(run, "_set_label_attribute", original)
    monkeypatch.setattr(run.TagEvaluation, "save_run_results",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError, match="disk full"):
        evaluate_tags(ds, "ram", "gt", eval_key="ev")
    assert _snapshot(ds) == before  # registered, then failed: unregistered again, fields gone


def test_cli_refuses_in_one_line_and_replaces_its_own_run(dataset):
    from fiftyone_ram.cli import main

    ds = dataset
    base = ["evaluate", "--dataset", ds.name, "--pred", "ram", "--gt", "gt"]
    bad = CliRunner().invoke(main, [*base, "--eval-key", "tags"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    lines = bad.output.strip().splitlines()
    assert len(lines) == 1 and "ram.classifications.tags" in lines[0] and "built-in" in lines[0]
    assert ds.list_evaluations() == []

    ds.add_sample_field("ev_fn", fo.StringField)
    taken = CliRunner().invoke(main, [*base, "--eval-key", "ev"])
    assert taken.exit_code != 0 and len(taken.output.strip().splitlines()) == 1 and "ev_fn" in taken.output
    ds.delete_sample_field("ev_fn")
    assert CliRunner().invoke(main, [*base, "--eval-key", "ev", "--json"]).exit_code == 0
    again = CliRunner().invoke(main, [*base, "--eval-key", "ev", "--json"])
    assert again.exit_code == 0, again.output
    assert ds.list_evaluations() == ["ev"]
    ds.evaluate_classifications("top1", gt_field="gt_one", eval_key="simple")
    other = CliRunner().invoke(main, [*base, "--eval-key", "simple"])
    assert other.exit_code != 0 and "taken by another evaluation" in other.output
    assert ds.get_evaluation_info("simple").config.method == "simple"


def test_operator_form_says_what_is_replaced_and_refuses_another_evaluation(dataset):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    ds = dataset
    evaluate_tags(ds, "ram", "gt", eval_key="ev")
    ds.evaluate_classifications("top1", gt_field="gt_one", eval_key="simple")
    uri = "@fiftyone-ram/ram/evaluate_tags"
    operator = foo.get_operator(uri)

    def form(key):
        ctx = ExecutionContext(request_params={"dataset_name": ds.name, "view": ds.view()._serialize(),
                                               "params": {"eval_key": key}})
        return operator.resolve_input(ctx).type.properties

    # A tag evaluation's key: a warning, and an explicit choice before it is replaced (issue 15).
    assert "exists" in form("ev") and not form("ev")["eval_key"].invalid and form("ev")["existing"].invalid
    assert "exists" not in form("new") and "existing" not in form("new")
    assert form("simple")["eval_key"].invalid and "exists" not in form("simple")
    params = {"pred_field": "ram", "gt_field": "gt", "top_k": [1], "open_panel": False}
    with pytest.raises(Exception, match="'simple' is another evaluation's key"):  # the form's validation
        foo.execute_operator(uri, ctx={"dataset": ds, "params": {**params, "eval_key": "simple"}})
    assert ds.get_evaluation_info("simple").config.method == "simple"
    with pytest.raises(Exception, match="Choose 'Replace it'"):
        foo.execute_operator(uri, ctx={"dataset": ds, "params": {**params, "eval_key": "ev"}})
    done = foo.execute_operator(uri, ctx={"dataset": ds, "params": {**params, "eval_key": "ev",
                                                                   "existing": "replace"}})
    assert done.error is None and done.result["eval_key"] == "ev" and ds.list_evaluations() == ["ev", "simple"]
