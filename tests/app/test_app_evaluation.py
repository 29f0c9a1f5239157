"""Evaluation in the real App: evaluate with the form's defaults and read the Tag evaluation panel, replace an
existing key only after choosing to, PR curves and threshold tuning from the operator browser."""

from __future__ import annotations

import re

import numpy as np

import fiftyone as fo

EVALUATE = "Evaluate tags (mAP, precision, recall)"
TAGS = ["person", "cat", "cup", "sky", "rocket"]



def _tagged(dataset, unreadable: bool = True):
    """Ground truth and tagger-like predictions (confidences >= 0.6); the last image unreadable, as tagging
    leaves one (no labels, the reason in ``ram_error``)."""
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(len(dataset)):
        names = [t for t in TAGS if rng.random() < 0.5] or ["person"]
        gts.append(fo.Classifications(classifications=[fo.Classification(label=n) for n in names]))
        preds.append(fo.Classifications(classifications=[
            fo.Classification(label=t, confidence=float(0.6 + 0.39 * rng.random()))
            for t in TAGS if (t in names) == (rng.random() < 0.8)]))
    if unreadable:
        preds[-1] = None
        dataset.set_values("ram_error", [None] * (len(dataset) - 1) + ["cannot identify image file"])
    dataset.set_values("ground_truth", gts)
    dataset.set_values("ram", preds)
    return dataset


def test_evaluate_with_the_defaults_then_read_the_panel(app_page, app_dataset, tmp_path):
    dataset = _tagged(app_dataset("app_eval"))
    app = app_page()
    app.open_dataset(dataset.name)
    app.open_operator("evaluate_tags", EVALUATE)
    # Predictions default to the field with confidences, ground truth to another field.
    assert app.field("Predicted tags").inner_text().strip() == "ram"
    assert app.field("Ground truth").inner_text().strip() == "ground_truth"
    app.docs_shot("app-evaluate-form.png")
    app.execute()
    out = app.wait_for_output("Samples evaluated")  # the output only (the form names the panel too)
    assert not re.search(r"\d\.\d{5,}", out), out  # figures are rounded
    assert "Left out: unreadable images" in out and "camera.png" in out
    assert re.search(r"Samples evaluated:\s*4\b", out), out
    dataset.reload()  # the App server wrote the run
    info = dataset.get_evaluation_info("eval_tags")
    assert (info.config.pred_field, info.config.gt_field) == ("ram", "ground_truth")
    app.prompt.get_by_role("button", name="Close", exact=True).click()

    # The Tag evaluation panel opened on the run: confidence over predicted tags, per class, confusions.
    average = app.wait_for_text("Average confidence of the predicted tags")
    value = float(re.search(r"([\d.]+)\s*$", average.locator("xpath=..").inner_text()).group(1))
    assert value >= 0.6  # every stored confidence is >= 0.6 (the built-in panel counts absent classes as 0)
    table = app.page.get_by_role("table").first
    assert {"cat", "cup", "person"} <= {c.strip() for c in table.locator("tbody tr td:first-child").all_inner_texts()}
    app.wait_for_text("Confusions (missed tag × wrong tags on the same image)")
    app.page.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for(state="attached")  # PR curves drawn
    app.docs_shot("app-tag-evaluation-panel.png")


def test_an_existing_key_is_replaced_only_after_choosing_to(app_page, app_dataset):
    from fiftyone_ram.evaluation import evaluate_tags

    dataset = _tagged(app_dataset("app_eval_key"), unreadable=False)
    evaluate_tags(dataset, "ram", "ground_truth", eval_key="eval_tags")
    app = app_page()
    app.open_dataset(dataset.name)
    app.open_operator("evaluate_tags", EVALUATE)
    app.wait_for_text("An evaluation 'eval_tags' exists")
    app.select("Ground truth", "tags")
    execute = app.prompt.get_by_role("button", name="Execute", exact=True)
    assert execute.is_disabled()  # no run until the user chooses what happens to the existing one
    dataset.reload()
    assert dataset.get_evaluation_info("eval_tags").config.gt_field == "ground_truth"
    app.choose("Replace it")
    app.execute()
    app.wait_for_output("Samples evaluated")  # the output only (the form names the panel too)
    dataset.reload()
    assert dataset.get_evaluation_info("eval_tags").config.gt_field == "tags"


def test_pr_curves_and_threshold_tuning(app_page, app_dataset, tmp_path):
    from fiftyone_ram.evaluation import evaluate_tags

    dataset = _tagged(app_dataset("app_eval_tune"), unreadable=False)
    results = evaluate_tags(dataset, "ram", "ground_truth", eval_key="eval_tags")
    app = app_page()
    app.open_dataset(dataset.name)
    app.open_operator("plot_tag_pr_curves", "Tag PR curves")
    app.execute()
    app.wait_for_output("Precision-recall curves")
    traces = app.prompt.locator(".js-plotly-plot .scatterlayer .trace")
    traces.first.wait_for(state="attached")
    assert traces.count() == 3  # the three classes with the best AP
    legend = app.prompt.locator(".js-plotly-plot .legendtext").all_text_contents()
    assert len(legend) == 3 and all("(AP " in name for name in legend), legend
    app.docs_shot("app-pr-curves.png")
    app.prompt.get_by_role("button", name="Close", exact=True).click()
    app.prompt.wait_for(state="hidden")

    tags_file, out = tmp_path / "tags.txt", tmp_path / "tuned.txt"
    tags_file.write_text("\n".join(TAGS) + "\n")
    app.open_operator("tune_tag_thresholds", "Tune tag thresholds")
    app.fill("Model tag list file", tags_file)
    app.fill("Thresholds of the other classes", "0.6")
    app.fill("Write to (optional)", out)
    app.execute()
    text = app.wait_for_output("Tuned thresholds")
    expected = results.tune_thresholds(tag_list=TAGS, base_thresholds=0.6)
    written = [float(x) for x in out.read_text().split()]
    assert np.allclose(written, expected.thresholds, atol=1e-6)
    assert str(out) in text and "Tuned" in text
    app.docs_shot("app-tune-thresholds.png")
