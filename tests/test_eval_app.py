"""Evaluation from the App, through FiftyOne's execution API on a real database: the form's defaults and
checks, rounded figures, unreadable images left out, an existing key replaced only when asked, PR curves,
threshold tuning, and the multi-label tables of the Tag evaluation panel."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import fiftyone as fo

from fiftyone_ram.evaluation import evaluate_tags
from fiftyone_ram.evaluation import tables

EVALUATE = "@fiftyone-ram/ram/evaluate_tags"
PR = "@fiftyone-ram/ram/plot_tag_pr_curves"
TUNE = "@fiftyone-ram/ram/tune_tag_thresholds"
MODEL_TAGS = ["car", "dog", "cat", "tree", "person", "sky", "boat"]
N = 40


@pytest.fixture()
def dataset():
    """Tagger-like predictions (confidences >= 0.6, logits) and ground truth; the last image is unreadable
    (no labels, the reason in ``ram_error``), as tagging leaves it."""
    rng = np.random.default_rng(3)
    ds = fo.Dataset()
    samples = []
    for i in range(N):
        names = [t for t in MODEL_TAGS[:-1] if rng.random() < 0.35]  # "boat" is never in the ground truth
        logits = rng.normal(-1.0, 1.2, len(MODEL_TAGS)) + np.array([2.5 if t in names else 0 for t in MODEL_TAGS])
        probs = 1 / (1 + np.exp(-logits))
        preds = [fo.Classification(label=t, confidence=float(p)) for t, p in zip(MODEL_TAGS, probs) if p > 0.6]
        sample = fo.Sample(filepath=f"/tmp/fiftyone-ram-eval-app/{i}.jpg", tags=list(names),
                           ground_truth=fo.Classifications(classifications=[fo.Classification(label=n)
                                                                            for n in names]))
        if i < N - 1:
            sample["ram"] = fo.Classifications(classifications=preds, logits=logits)
        else:
            sample["ram_error"] = "cannot identify image file"
        samples.append(sample)
    ds.add_samples(samples, progress=False)
    yield ds
    ds.delete()


def _form(dataset, params):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "view": dataset.view()._serialize(),
                                           "params": params})
    return foo.get_operator(EVALUATE).resolve_input(ctx).type.properties


def _run(uri, dataset, **params):
    import fiftyone.operators as foo

    return foo.execute_operator(uri, ctx={"dataset": dataset, "params": params})


def test_form_defaults_to_predictions_with_confidences_and_another_field_as_ground_truth(dataset):
    # "ground_truth" sorts before "ram" and is a Classifications too: the default must still be "ram".
    form = _form(dataset, {})
    assert form["pred_field"].type.values == ["ground_truth", "ram"]
    assert form["pred_field"].default == "ram"
    assert form["gt_field"].default == "ground_truth" and "ram" not in form["gt_field"].type.values
    assert form["gt_field"].type.values == ["ground_truth", "tags"]
    assert "existing" not in form
    # Choosing the other field as predictions takes it out of the ground-truth choices.
    assert "ground_truth" not in _form(dataset, {"pred_field": "ground_truth"})["gt_field"].type.values


def test_run_rounds_reports_unreadable_and_replaces_a_key_only_when_asked(dataset):
    result = _run(EVALUATE, dataset, pred_field="ram", gt_field="ground_truth", eval_key="app",
                  open_panel=False).result
    readable = dataset.exists("ram_error", False)
    direct = evaluate_tags(readable, "ram", "ground_truth")
    assert result["num_samples"] == N - 1  # the unreadable image is left out, not counted as misses
    assert "1 (reason in 'ram_error'): 39.jpg" == result["unreadable"]
    for key in tables.SUMMARY_LABELS:
        assert result[key] == round(direct.summary[key], 4)
    assert (result["tp"], result["fp"], result["fn"]) == (direct.summary["tp"], direct.summary["fp"],
                                                          direct.summary["fn"])

    form = _form(dataset, {"pred_field": "ram", "gt_field": "ground_truth", "eval_key": "app"})
    assert "exists" in form and form["existing"].invalid
    assert not _form(dataset, {"eval_key": "app", "existing": "replace"})["existing"].invalid
    before = dataset.get_evaluation_info("app").timestamp
    with pytest.raises(Exception, match="Replace it"):
        _run(EVALUATE, dataset, pred_field="ram", gt_field="tags", eval_key="app", open_panel=False)
    assert dataset.get_evaluation_info("app").timestamp == before
    assert dataset.get_evaluation_info("app").config.gt_field == "ground_truth"
    replaced = _run(EVALUATE, dataset, pred_field="ram", gt_field="tags", eval_key="app", existing="replace",
                    open_panel=False)
    assert replaced.error is None and dataset.get_evaluation_info("app").config.gt_field == "tags"


def test_panel_tables_read_as_multi_label_results(dataset):
    view = dataset.exists("ram")
    results = evaluate_tags(view, "ram", "ground_truth", eval_key="panel")
    confidences = tables.predicted_confidences(results)
    predicted = {c.label for row in view.values("ram.classifications") for c in row}
    for name, value in confidences.items():
        # Every stored confidence is > 0.6: an average over predicted tags can never be lower.
        assert (value is None) == (name not in predicted) and (value is None or value > 0.6)
    assert tables.average_confidence(results) > 0.6

    rows = {r["class"]: r for r in tables.class_rows(results)}
    assert set(rows) == set(results.classes.tolist())
    for r in rows.values():
        assert r["tp"] + r["fn"] == r["support"]
        assert all(r[k] is None or round(r[k], 4) == r[k] for k in ("ap", "precision", "recall", "f1"))

    # The confusion, recomputed from the raw fields: missed tag x wrong tag predicted on the same image.
    # Tags outside the evaluated classes ("boat" is in no ground truth) get no verdict, so they do not count.
    evaluated = set(results.classes.tolist())
    expected: Counter = Counter()
    for truth, preds in zip(view.values("ground_truth.classifications.label"),
                            view.values("ram.classifications.label")):
        missed, wrong = set(truth) - set(preds), (set(preds) - set(truth)) & evaluated
        for m in missed:
            for w in wrong or {tables.NOTHING}:
                expected[(m, w)] += 1
    got = {(r["missed"], r["predicted_instead"]): r["images"] for r in tables.confusions(view, results, top=None)}
    assert got == dict(expected) and got
    matrix, labels, _ = tables.confusion_matrix(view, results, max_classes=len(results.classes))
    index = {c: i for i, c in enumerate(labels)}
    for c in results.classes.tolist():
        assert matrix[index[c], index[c]] == rows[c]["tp"]  # the diagonal counts the images where c was found


def test_pr_curves_and_threshold_tuning_operators(dataset, tmp_path):
    view = dataset.exists("ram")
    results = evaluate_tags(view, "ram", "ground_truth", eval_key="tune")
    curves = _run(PR, dataset, eval_key="tune").result["curves"]
    ap = dict(zip(results.classes.tolist(), results.per_class["ap"]))
    best = sorted(ap, key=lambda c: -ap[c])[:3]
    assert [t["name"].split(" (")[0] for t in curves] == best
    one = _run(PR, dataset, eval_key="tune", classes=["dog"]).result["curves"]
    _, precision = results.pr_curve("dog").interpolated(np.linspace(0, 1, 101))
    assert len(one) == 1 and np.allclose(one[0]["y"], precision, atol=1e-4)
    with pytest.raises(Exception, match="not evaluated in 'tune': zebra"):
        _run(PR, dataset, eval_key="tune", classes=["zebra"])

    tags_file = tmp_path / "tags.txt"
    tags_file.write_text("\n".join(MODEL_TAGS) + "\n")
    out = tmp_path / "tuned.txt"
    shown = _run(TUNE, dataset, eval_key="tune", tag_list=str(tags_file), base_thresholds="0.6").result
    assert "written" not in shown and not out.exists()
    done = _run(TUNE, dataset, eval_key="tune", tag_list=str(tags_file), base_thresholds="0.6",
                output=str(out)).result
    direct = results.tune_thresholds(tag_list=MODEL_TAGS, base_thresholds=0.6)
    written = np.array([float(x) for x in out.read_text().split()])
    assert np.allclose(written, direct.thresholds, atol=1e-6) and done["written"] == str(out)
    assert done["tuned"] == len(direct.tuned()) and written[MODEL_TAGS.index("boat")] == pytest.approx(0.6)
    by_tag = {r["tag"]: r for r in done["thresholds"]}
    for row in direct.tuned():
        assert by_tag[row["tag"]]["threshold"] == round(row["threshold"], 4)

    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {
        "eval_key": "tune", "output": str(out)}})
    form = foo.get_operator(TUNE).resolve_input(ctx).type.properties
    assert form["output"].invalid and "overwrite" in form  # an existing file is replaced only when asked
    assert {"tag_list", "base_thresholds"} <= set(form)  # the run had no tag list nor thresholds
    with pytest.raises(Exception, match="Replace"):
        _run(TUNE, dataset, eval_key="tune", tag_list=str(tags_file), base_thresholds="0.6", output=str(out))


def test_panels_are_registered():
    import fiftyone.operators as foo

    names = {op.name for op in foo.list_operators(type="panel")}
    assert {"tag_evaluation_panel", "tag_review_panel"} <= names
