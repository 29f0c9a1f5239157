"""``evaluate_tags`` on a real FiftyOne dataset: the run's life cycle, its numbers, the App's view of it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

import fiftyone as fo

from fiftyone_ram.evaluation import evaluate_tags
from fiftyone_ram.evaluation.run import TagEvaluationResults

MODEL_TAGS = ["car", "dog", "cat", "tree", "person", "sky", "boat", "bird", "road", "house"]
# ground-truth names as a dataset might spell them -> the model tag they must map to (None: absent)
GT_NAMES = {"Cars": "car", "dogs": "dog", "cat": "cat", "tree": "tree", "person": "person", "sky": "sky",
            "boat": "boat", "zebra": None}
EVALUATED = [t for t in MODEL_TAGS if t in GT_NAMES.values()]  # model order
N = 80


@pytest.fixture(scope="module")
def predictions():
    """Predictions and ground truth, built once; tests get a clone each (:func:`dataset`) to run on."""
    rng = np.random.default_rng(7)
    ds = fo.Dataset()
    samples = []
    for i in range(N):
        names = [n for n in GT_NAMES if rng.random() < 0.3]
        mapped = {GT_NAMES[n] for n in names}
        logits = rng.normal(-1.0, 1.2, len(MODEL_TAGS)) + np.array([2.5 if t in mapped else 0 for t in MODEL_TAGS])
        probs = 1 / (1 + np.exp(-logits))
        preds = [fo.Classification(label=t, confidence=float(p)) for t, p in zip(MODEL_TAGS, probs) if p > 0.6]
        dets = [fo.Detection(label=n, bounding_box=[0.1, 0.1, 0.2, 0.2]) for n in names for _ in range(1 + i % 2)]
        samples.append(fo.Sample(
            filepath=f"/tmp/fiftyone-ram-eval/{i}.jpg",
            tags=list(names),
            gt=fo.Classifications(classifications=[fo.Classification(label=n) for n in names]),
            gt_det=fo.Detections(detections=dets),
            ram=fo.Classifications(classifications=preds, logits=logits),
            ram_conf=fo.Classifications(classifications=[p.copy() for p in preds]),
            top1=fo.Classification(label=MODEL_TAGS[int(np.argmax(probs))], confidence=float(probs.max())),
            gt_one=fo.Classification(label=names[0]) if names else None,
            count=i,
        ))
    ds.add_samples(samples, progress=False)
    del samples  # in-memory samples would be reloaded after every bulk write
    yield ds
    ds.delete()


@pytest.fixture()
def dataset(predictions):
    """A test's own copy: runs, renames and deletions in one test never reach another."""
    ds = predictions.clone()
    yield ds
    ds.delete()


def _expected_arrays(ds):
    """Targets and scores computed here, independently of the package."""
    index = {t: j for j, t in enumerate(EVALUATED)}
    targets = np.zeros((N, len(EVALUATED)), dtype=bool)
    for i, names in enumerate(ds.values("gt.classifications.label")):
        for n in names or []:
            if GT_NAMES[n] is not None:
                targets[i, index[GT_NAMES[n]]] = True
    cols = [MODEL_TAGS.index(t) for t in EVALUATED]
    scores = np.array([1 / (1 + np.exp(-np.asarray(lg)[cols])) for lg in ds.values("ram.logits")])
    predicted = np.zeros_like(targets)
    for i, labels in enumerate(ds.values("ram.classifications.label")):
        for t in labels or []:
            if t in index:
                predicted[i, index[t]] = True
    return targets, scores, predicted


def test_round_trip_numbers_fields_rename_delete(dataset):
    schema_before = set(dataset.get_field_schema(flat=True))
    results = evaluate_tags(dataset, "ram", "gt", eval_key="tags_eval", model_tags=MODEL_TAGS)
    targets, scores, predicted = _expected_arrays(dataset)

    # mAP on tie-free logits equals scikit-learn's macro AP; P/R/F1 from the stored tags
    assert results.summary["mAP"] == pytest.approx(average_precision_score(targets, scores, average="macro"), abs=1e-9)
    tp, fp, fn = (predicted & targets).sum(0), (predicted & ~targets).sum(0), (~predicted & targets).sum(0)
    assert results.per_class["tp"] == tp.tolist() and results.per_class["fp"] == fp.tolist()
    assert results.summary["CP"] == pytest.approx(np.mean(tp / np.maximum(tp + fp, 1)))
    assert results.summary["OR"] == pytest.approx(tp.sum() / (tp + fn).sum())
    assert results.classes.tolist() == EVALUATED
    assert results.mapping.unmapped() == ["zebra"]

    # a native FiftyOne evaluation: listed, typed for the Model Evaluation panel, reloaded from the database
    assert "tags_eval" in dataset.list_evaluations()
    info = dataset.get_evaluation_info("tags_eval")
    assert (info.config.type, info.config.method) == ("classification", "ram-tags")
    reloaded = dataset.load_evaluation_results("tags_eval", cache=False)
    assert isinstance(reloaded, TagEvaluationResults) and reloaded is not results
    assert reloaded.summary == pytest.approx(results.summary)
    assert reloaded.mAP() == pytest.approx(results.mAP())
    np.testing.assert_allclose(list(reloaded.average_precision(ties="optimistic").values()),
                               average_precision_score(targets, scores, average=None), atol=1e-9)

    # per-sample counts, missed tags and per-tag verdicts
    tp_s, fp_s, fn_s, missed = dataset.values(["tags_eval_tp", "tags_eval_fp", "tags_eval_fn", "tags_eval_missed"])
    assert tp_s == (predicted & targets).sum(1).tolist() and fp_s == (predicted & ~targets).sum(1).tolist()
    assert fn_s == (~predicted & targets).sum(1).tolist()
    assert missed == [[EVALUATED[j] for j in np.flatnonzero(~predicted[i] & targets[i])] for i in range(N)]
    verdicts = dataset.values("ram.classifications.tags_eval")
    labels = dataset.values("ram.classifications.label")
    for i, (row, names) in enumerate(zip(verdicts, labels)):
        for v, t in zip(row or [], names or []):
            expected = None if t not in EVALUATED else ("tp" if targets[i, EVALUATED.index(t)] else "fp")
            assert v == expected
    assert dataset.filter_labels("ram", fo.ViewField("tags_eval") == "fp").count("ram.classifications") == fp.sum()
    assert dataset.filter_labels("gt", fo.ViewField("tags_eval") == "fn").count("gt.classifications") == fn.sum()

    dataset.rename_evaluation("tags_eval", "renamed")
    assert dataset.list_evaluations() == ["renamed"]
    assert dataset.values("renamed_tp") == tp_s and dataset.get_field("tags_eval_tp") is None
    assert dataset.values("ram.classifications.renamed") == verdicts

    dataset.delete_evaluation("renamed")
    assert dataset.list_evaluations() == []
    assert set(dataset.get_field_schema(flat=True)) == schema_before
    assert dataset.values("ram.classifications.label") == labels  # predictions untouched


def test_detections_and_sample_tags_give_the_same_numbers_as_classifications(dataset):
    by_cls = evaluate_tags(dataset, "ram", "gt", model_tags=MODEL_TAGS)
    by_det = evaluate_tags(dataset, "ram", "gt_det", eval_key="by_det", model_tags=MODEL_TAGS)
    by_tags = evaluate_tags(dataset, "ram", "tags", eval_key="by_tags", model_tags=MODEL_TAGS)
    for other in (by_det, by_tags):
        assert other.summary == pytest.approx(by_cls.summary)
    # every object of a detected class gets the class's verdict
    dets = dataset.values("gt_det.detections.by_det")
    assert {v for row in dets for v in (row or [])} <= {"tp", "fn", None}
    assert dataset.count("gt_det.detections") > dataset.count("gt.classifications")
    for key in ("by_det", "by_tags"):
        dataset.delete_evaluation(key)


def test_single_label_fields(dataset):
    results = evaluate_tags(dataset, "top1", "gt_one", eval_key="single", model_tags=MODEL_TAGS)
    top1, truth = dataset.values(["top1.label", "gt_one.label"])
    truth = [GT_NAMES.get(t) if t else None for t in truth]
    evaluated = {t for t in truth if t}
    tp = sum(p == t for p, t in zip(top1, truth) if t)
    fp = sum(p in evaluated and p != t for p, t in zip(top1, truth))
    assert (results.summary["tp"], results.summary["fp"]) == (tp, fp)
    verdicts = dataset.values("top1.single")
    assert verdicts == [None if p not in evaluated else ("tp" if p == t else "fp") for p, t in zip(top1, truth)]
    assert dataset.values("gt_one.single") == [None if t is None else ("tp" if p == t else "fn")
                                               for p, t in zip(top1, truth)]
    dataset.delete_evaluation("single")
    assert dataset.get_field("top1.single") is None


def test_wrong_field_types_fail_before_anything_is_written(dataset):
    schema = set(dataset.get_field_schema(flat=True))
    cases = [
        (("gt_det", "gt"), "prediction field 'gt_det' holds Detections; expected Classifications, Classification"),
        (("ram", "count"), "ground-truth field 'count' holds IntField; expected Classifications"),
        (("ram", "nope"), "ground-truth field 'nope' does not exist"),
    ]
    for (pred, gt), message in cases:
        with pytest.raises(ValueError, match=message):
            evaluate_tags(dataset, pred, gt, eval_key="bad", model_tags=MODEL_TAGS)
    with pytest.raises(ValueError, match="invalid evaluation key 'not a key'"):
        evaluate_tags(dataset, "ram", "gt", eval_key="not a key")
    assert "bad" not in dataset.list_evaluations()
    assert set(dataset.get_field_schema(flat=True)) == schema

    # a run that fails half-way leaves an existing run of the same key as it was
    kept = evaluate_tags(dataset, "ram", "gt", eval_key="kept", model_tags=MODEL_TAGS)
    before = dataset.values("kept_tp")
    with pytest.raises(ValueError, match="logits but model_tags has"):
        evaluate_tags(dataset, "ram", "gt", eval_key="kept", model_tags=MODEL_TAGS[:-1])
    assert dataset.values("kept_tp") == before
    assert dataset.load_evaluation_results("kept", cache=False).summary == pytest.approx(kept.summary)
    dataset.delete_evaluation("kept")


def test_scores_from_confidences_only(dataset, assert_scores_close):
    """Without logits, unstored tags have no score (-inf); with ties="sklearn" that matches scikit-learn
    on the same matrix with 0 for a missing score (all confidences are above 0)."""
    results = evaluate_tags(dataset, "ram_conf", "gt", model_tags=MODEL_TAGS, ties="sklearn")
    targets, scores, predicted = _expected_arrays(dataset)
    sparse_scores = np.where(predicted, scores, 0.0)
    assert results.summary["score_source"] == "confidences"
    assert_scores_close(results.summary["mAP"],
                        average_precision_score(targets, sparse_scores, average="macro"))  # confidences are float32
    assert results.summary["tp"] == int((predicted & targets).sum())


def test_threshold_override_redecides_from_logits(dataset):
    results = evaluate_tags(dataset, "ram", "gt", model_tags=MODEL_TAGS, threshold=0.8, top_k=(2,))
    targets, scores, _ = _expected_arrays(dataset)
    predicted = scores.astype(np.float32) >= np.float32(0.8)
    assert results.summary["tp"] == int((predicted & targets).sum())
    assert results.summary["fp"] == int((predicted & ~targets).sum())
    top2 = np.zeros_like(targets)
    np.put_along_axis(top2, np.argsort(-scores, axis=1)[:, :2], True, axis=1)
    assert results.top_k["2"]["tp"] == int((top2 & targets).sum())


class _PanelContext:
    """What the Model Evaluation panel reads from its execution context, and the view it sets."""

    def __init__(self, dataset, state, params=None):
        self.dataset, self.params, self.view = dataset, params or {}, None
        self.panel = SimpleNamespace(get_state=lambda k, d=None: state.get(k, d))
        self.ops = SimpleNamespace(set_view=lambda view: setattr(self, "view", view))


def test_model_evaluation_panel_reads_the_run(dataset):
    """The builtin panel's own Python side accepts the run as the classification evaluation it is: its data (as
    serialised for the browser), with the (sample, tag) pairs as classifications. The browser is not driven here;
    drilling into errors is the plugin's Tag evaluation panel's (tests/app)."""
    from plugins.panels.model_evaluation import EvaluationPanel
    from plugins.panels.model_evaluation.utils import compress_and_serialize, decompress_and_deserialize

    evaluate_tags(dataset, "ram", "gt", eval_key="panel", model_tags=MODEL_TAGS)
    panel = EvaluationPanel()
    info = dataset.get_evaluation_info("panel")
    results = dataset.load_evaluation_results("panel", cache=False)
    assert panel.get_evaluation_type(info.config) == "multiclass_classification"
    data = decompress_and_deserialize(compress_and_serialize(
        panel.get_evaluation_data(_PanelContext(dataset, {"view": {"key": "panel"}}))))
    m = data["metrics"]
    assert m["mAP"] == pytest.approx(results.summary["mAP"])
    # Each (sample, tag) pair: correct when predicted and true, so "correct" counts the true positives.
    assert (m["correct"], m["incorrect"]) == (results.summary["tp"], results.summary["fp"] + results.summary["fn"])
    assert data["custom_metrics"]["fiftyone-ram/CP"]["value"] == pytest.approx(results.summary["CP"])
    dog = EVALUATED.index("dog")
    assert data["per_class_metrics"]["dog"]["recall"] == pytest.approx(results.per_class["recall"][dog])
    assert np.asarray(data["confusion_matrix"]["matrix"]).shape == (len(EVALUATED) + 1,) * 2
    with results.use_subset(dataset.match(fo.ViewField("count") < 40)):  # panel "scenarios"
        assert results.metrics()["support"] < results.summary["num_positives"] + results.summary["fp"]
    dataset.delete_evaluation("panel")


def test_cli_json_carries_the_same_numbers(dataset):
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    tags_file = dataset.name + "-tags.txt"
    with CliRunner().isolated_filesystem():
        with open(tags_file, "w") as f:
            f.write("\n".join(MODEL_TAGS))
        out = CliRunner().invoke(main, ["evaluate", "--dataset", dataset.name, "--pred", "ram", "--gt", "gt",
                                        "--eval-key", "cli", "--model-tags", tags_file, "--json"])
        assert out.exit_code == 0, out.output
        printed = json.loads(out.output)
        text = CliRunner().invoke(main, ["evaluate", "--dataset", dataset.name, "--pred", "ram", "--gt", "gt",
                                         "--model-tags", tags_file])
    stored = dataset.load_evaluation_results("cli", cache=False)
    for key in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "tp", "fp", "fn"):
        assert printed["summary"][key] == pytest.approx(stored.summary[key])
    assert [r["class"] for r in printed["per_class"]] == EVALUATED
    assert printed["mapping"]["unmapped"] == ["zebra"]
    assert text.exit_code == 0 and "mAP" in text.output and "zebra (" in text.output
    bad = CliRunner().invoke(main, ["evaluate", "--dataset", dataset.name, "--pred", "gt_det", "--gt", "gt"])
    assert bad.exit_code != 0 and "gt_det" in bad.output
    dataset.delete_evaluation("cli")


def test_operator_form_immediate_and_delegated_runs(dataset):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionContext

    uri = "@fiftyone-ram/ram/evaluate_tags"
    assert foo.operator_exists(uri)
    operator = foo.get_operator(uri)
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "view": dataset.view()._serialize(),
                                           "params": {"eval_key": "not a key"}})
    form = operator.resolve_input(ctx).type.properties
    assert form["pred_field"].type.values == ["gt", "gt_one", "ram", "ram_conf", "top1"]  # no Detections
    assert {"gt", "gt_det", "tags"} <= set(form["gt_field"].type.values)
    assert form["eval_key"].invalid

    params = {"pred_field": "ram", "gt_field": "gt", "eval_key": "from_app", "top_k": [1, 3], "open_panel": False}
    executed = foo.execute_operator(uri, ctx={"dataset": dataset, "params": params})
    direct = evaluate_tags(dataset, "ram", "gt")
    assert executed.result["mAP"] == round(direct.summary["mAP"], 4)  # figures are rounded for the App
    assert executed.result["CF1"] == round(direct.summary["CF1"], 4)
    assert dataset.get_evaluation_info("from_app").config.method == "ram-tags"

    queued = foo.execute_operator(uri, ctx={"dataset": dataset, "params": {**params, "eval_key": "delegated"},
                                            "request_delegation": True})
    assert queued.delegated and "delegated" not in dataset.list_evaluations()
    DelegatedOperationService().execute_queued_operations(limit=1)
    dataset.reload()
    delegated = dataset.load_evaluation_results("delegated", cache=False)
    assert delegated.summary["mAP"] == pytest.approx(direct.summary["mAP"])
    for key in ("from_app", "delegated"):
        dataset.delete_evaluation(key)
