"""The Pipeline panel in the real App: a pipeline's rounds as a table and a plot, read from the run store, and a
round's row showing the tags its review removed (by their provenance) in the grid."""

from __future__ import annotations

import re

import pytest


@pytest.fixture()
def pipeline_dataset(tmp_path, captioned_shapes):
    dataset, tag_file = captioned_shapes(tmp_path / "images", train=18, validation=9, name="app_pipeline")
    dataset.persistent = True  # the App server is another process
    yield dataset, tag_file
    if not dataset.deleted:
        dataset.delete()


def test_the_pipeline_panel_shows_the_rounds_and_what_a_round_removed(app_page, pipeline_dataset, pipeline_spec,
                                                                      tmp_path):
    from fiftyone import ViewField as F
    from playwright.sync_api import expect

    from fiftyone_ram.pipeline import run

    dataset, tag_file = pipeline_dataset
    recipe = {"weak_start": True, "batch_size": 6, "teacher": None}
    result = run(pipeline_spec(dataset, tag_file, tmp_path / "out", rounds=2, retrain_from="previous",
                               accept_reasons=["no_region", "outlier"], train={**recipe, "epochs": 4},
                               retrain={**recipe, "epochs": 1}), progress=False, messages=lambda text: None)
    assert result.status == "completed"
    removed = dataset.filter_labels("pl_r1_review", F("provenance") == "r1:removed").count("id")
    assert removed > 0

    app = app_page()
    app.open_dataset(dataset.name)
    app.page.locator("[data-cy=new-panel-btn]").first.click()  # the "+" beside the Samples tab
    app.page.locator("[data-cy$=pipeline_panel]").first.click()
    app.wait_for_text("round 2 published in")
    rows = app.page.get_by_role("table").first.locator("tbody tr")
    expect(rows).to_have_count(3)
    assert rows.nth(0).locator("td").nth(11).inner_text().strip() == "start"
    assert rows.nth(2).locator("td").nth(11).inner_text().strip() == "round2/retrain"
    app.docs_shot("app-pipeline-panel.png")

    rows.nth(1).get_by_role("button", name="Removed").click()
    count = app.page.get_by_text(re.compile(r"^\s*\d+ samples?\s*$")).first
    expect(count).to_have_text(re.compile(rf"^\s*{removed} samples?\s*$"), timeout=60_000)
