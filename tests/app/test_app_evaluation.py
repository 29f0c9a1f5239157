"""Evaluation in the real App: evaluate with the form's defaults and read the Tag evaluation panel, PR curves and
threshold tuning from the operator browser, replace an existing key only after choosing to."""

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
    app.close_output()

    # The Tag evaluation panel opened on the run: confidence over predicted tags, per class, confusions.
    app.wait_for_text("Mean confidence of the predicted tags")
    value = float(re.search(r"Mean confidence of the predicted tags:\s*([\d.]+)", app.page.inner_text("body")).group(1))
    assert value >= 0.6  # every stored confidence is >= 0.6 (the built-in panel counts absent classes as 0)
    app.wait_for_text("1 sample(s) left out: their image could not be read")  # what the CLI prints, too
    table = app.page.get_by_role("table").first
    assert {"cat", "cup", "person"} <= {c.strip() for c in table.locator("tbody tr td:first-child").all_inner_texts()}
    app.docs_shot("app-tag-evaluation-panel.png")
    app.page.get_by_role("tab", name="Confusions").click()
    app.wait_for_text("Missed tag × wrong tags on the same image")
    app.page.get_by_role("tab", name="PR curves").click()
    app.page.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for(state="attached")  # PR curves drawn


def test_the_panel_fits_a_split_view_and_follows_the_latest_run(app_page, app_dataset):
    """A 1280×800 window, the panel split beside the grid: the summary, TP/FP/FN and each class's errors
    button within the panel (no horizontal scrolling); the PR curves one click away, one class's curve alone
    when chosen; a run evaluated from the App while the panel is open becomes the panel's run."""
    from playwright.sync_api import expect

    from fiftyone_ram.evaluation import evaluate_tags

    dataset = _tagged(app_dataset("app_eval_split"), unreadable=False)
    dataset.set_values("ground_truth_b", dataset.values("ground_truth")[::-1])
    evaluate_tags(dataset, "ram", "ground_truth", eval_key="first")
    app = app_page(viewport=(1280, 800))
    app.open_dataset(dataset.name)
    app.page.locator("[data-cy=new-panel-btn]").first.click()  # the App opens it in a split beside the grid
    app.page.locator("[data-cy$=tag_evaluation_panel]").first.click()
    app.wait_for_text("against ground_truth:")
    expect(app.page.locator("[data-cy=fo-grid]").first).to_be_visible()  # the grid stays, to the left

    table = app.page.get_by_role("table").first
    app.docs_shot("app-tag-evaluation-split.png")
    header = [" ".join(h.split()) for h in table.locator("thead th").all_inner_texts()]
    assert "TP / FP / FN" in header, header
    grid = app.page.locator("[data-cy=fo-grid]").first.bounding_box()
    summary = app.page.get_by_text("Mean confidence of the predicted tags").first
    for element in (table.locator("thead th").filter(has_text="TP / FP / FN").first,
                    table.get_by_role("button", name="Errors").first, summary):
        box = element.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280, (box, header)  # no horizontal scrolling
        assert box["x"] >= grid["x"] + grid["width"] - 1, (box, grid)  # in the panel beside the grid

    app.page.get_by_role("tab", name="PR curves").click()  # one click
    traces = app.page.locator(".js-plotly-plot .scatterlayer .trace")
    expect(traces).to_have_count(3)  # the three best classes
    app.select_in_page("PR curve of (empty: the three best)", "cup")
    expect(traces).to_have_count(1)  # that class alone
    expect(app.page.locator(".js-plotly-plot .legendtext").first).to_contain_text("cup")

    app.open_operator("evaluate_tags", EVALUATE)  # a new run, from the App, while the panel is open
    app.select("Ground truth", "ground_truth_b")
    app.fill("Evaluation key", "second")
    app.execute()
    app.wait_for_output("Samples evaluated")
    app.close_output()
    app.wait_for_text("against ground_truth_b:")  # the panel moved to the new run


def test_pr_curves_threshold_tuning_then_the_key_replaced_only_after_choosing_to(app_page, app_dataset, tmp_path):
    """On one evaluated dataset: the PR curves and threshold tuning from the operator browser; then evaluating
    under the same key asks what happens to the existing run, and replaces it only once the user chooses to."""
    from fiftyone_ram.evaluation import evaluate_tags

    dataset = _tagged(app_dataset("app_eval_tune"), unreadable=False)
    results = evaluate_tags(dataset, "ram", "ground_truth", eval_key="eval_tags")
    app = app_page()
    app.open_dataset(dataset.name)
    app.open_operator("plot_tag_pr_curves", "Tag PR curves")
    app.execute()
    app.wait_for_output("Precision-recall curves")
    traces = app.output.locator(".js-plotly-plot .scatterlayer .trace")
    traces.first.wait_for(state="attached")
    assert traces.count() == 3  # the three classes with the best AP
    legend = app.output.locator(".js-plotly-plot .legendtext").all_text_contents()
    assert len(legend) == 3 and all("(AP " in name for name in legend), legend
    app.docs_shot("app-pr-curves.png")
    app.close_output()
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
    app.close_output()
    app.prompt.wait_for(state="hidden")

    # An existing key is replaced only after choosing to.
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



def _errors_by_class(dataset, gt_field: str = "ground_truth", pred_field: str = "ram") -> dict[str, set[str]]:
    """Per class, the samples where it is missed or wrongly predicted, read from the labels themselves (not
    from the fields the evaluation wrote): what "Show errors" must show."""
    errors: dict[str, set[str]] = {t: set() for t in TAGS}
    for sample_id, gt, pred in zip(*dataset.values(["id", gt_field, pred_field])):
        truth = {c.label for c in gt.classifications} if gt else set()
        predicted = {c.label for c in pred.classifications} if pred else set()
        for name in truth ^ predicted:
            errors[name].add(sample_id)
    return errors


def test_tag_evaluation_panel_show_errors_and_tune_thresholds(app_page, app_dataset, tmp_path):
    """The panel's own buttons act on the evaluation chosen in the panel (not on the newest one): a class's
    "Show errors" filters the grid to exactly its error samples, "Tune thresholds" opens the tuning form on
    that evaluation and its run writes that evaluation's thresholds."""
    from playwright.sync_api import expect

    from fiftyone_ram.evaluation import evaluate_tags

    dataset = _tagged(app_dataset("app_eval_panel"), unreadable=False)
    gts = dataset.values("ground_truth")
    dataset.set_values("ground_truth_b", gts[1:] + gts[:1])  # a decoy run: the same tags on the wrong images
    chosen = evaluate_tags(dataset, "ram", "ground_truth", eval_key="eval_a")
    decoy = evaluate_tags(dataset, "ram", "ground_truth_b", eval_key="eval_b")
    errors = _errors_by_class(dataset)
    counts = [len(ids) for ids in errors.values()]
    # A class whose error count no other class has, neither none nor all: the count alone shows which was shown
    cls = next(c for c, ids in errors.items() if 1 < len(ids) < len(dataset) and counts.count(len(ids)) == 1)
    assert errors[cls] != _errors_by_class(dataset, "ground_truth_b")[cls]

    app = app_page()
    app.open_dataset(dataset.name)
    app.page.locator("[data-cy=new-panel-btn]").first.click()  # the "+" beside the Samples tab
    app.page.locator("[data-cy$=tag_evaluation_panel]").first.click()
    app.wait_for_text("against ground_truth_b:")  # the newest run first
    evaluation = app.page.get_by_text("Evaluation (latest first)", exact=True).first
    evaluation.locator("xpath=following::*[@role='combobox'][1]").click()
    app.page.get_by_role("option", name="eval_a", exact=True).click()
    app.wait_for_text("against ground_truth:")

    rows = app.page.get_by_role("table").first.locator("tbody tr")
    row = rows.filter(has=app.page.locator("td:first-child").get_by_text(cls, exact=True))
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Errors").click()
    expect(app.page.locator("body")).to_contain_text("Match", timeout=60_000)  # a stage in the view bar
    count = app.page.get_by_text(re.compile(r"^\s*\d+ samples?\s*$")).first
    expect(count).to_have_text(re.compile(rf"^\s*{len(errors[cls])} samples\s*$"), timeout=60_000)

    app.page.get_by_role("button", name="Tune thresholds", exact=True).click()
    app.prompt.wait_for()
    assert app.field("Evaluation").inner_text().strip() == "eval_a"  # the panel's run, not the newest
    tags_file, out = tmp_path / "tags.txt", tmp_path / "tuned.txt"
    tags_file.write_text("\n".join(TAGS) + "\n")
    app.fill("Model tag list file", tags_file)
    app.fill("Thresholds of the other classes", "0.6")
    app.fill("Write to (optional)", out)
    app.execute()
    text = app.wait_for_output("Tuned thresholds")
    assert str(out) in " ".join(text.split())
    written = [float(x) for x in out.read_text().split()]
    expected = chosen.tune_thresholds(tag_list=TAGS, base_thresholds=0.6).thresholds
    assert np.allclose(written, expected, atol=1e-6)
    assert not np.allclose(written, decoy.tune_thresholds(tag_list=TAGS, base_thresholds=0.6).thresholds, atol=1e-6)
