"""The Sample tags panel: the open sample's tags with their confidences, in the App's sample modal (the App
itself shows confidences only in the sidebar filter and the JSON view)."""

from __future__ import annotations

from playwright.sync_api import expect

from fiftyone_ram.fiftyone.outputs import TagOutput

FIRST = TagOutput(["dog", "grass", "sky"], [0.9312, 0.6105, 0.7777], [0.8, 0.6, 0.5])
SECOND = TagOutput(["cat"], [0.8421], [0.7])


def test_the_sample_tags_panel_lists_the_open_samples_tags_with_confidences(app_page, app_dataset):
    dataset = app_dataset("sample_tags", count=2)
    dataset.set_values("ram", [FIRST.to_label(), SECOND.to_label()])
    first = dataset.first()

    app = app_page()
    app.open_dataset(f"{dataset.name}?id={first.id}")  # the grid with the sample open in the modal
    modal = app.page.locator("[data-cy=modal]")
    modal.wait_for()
    # A modal panel is a tab beside "Sample": the App adds it itself when it knows the plugin's panels by the time
    # the modal opens, else a user adds it from the "+" beside the tabs.
    tab, add = modal.get_by_text("Sample tags", exact=True).first, modal.locator("[data-cy=new-panel-btn]").first
    tab.or_(add).first.wait_for()
    if tab.is_visible():
        tab.click()
    else:
        add.click()
        app.page.get_by_text("Sample tags", exact=True).first.click()  # the menu's entry: the tab, opened
    app.wait_for_text("3 tags in ram, most confident first")

    rows = modal.get_by_role("table").first.locator("tbody tr")
    expect(rows).to_have_count(3)
    shown = [[cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()[:4]] for i in range(3)]
    assert shown == [["dog", "0.9312", "0.8", "0.1312"], ["sky", "0.7777", "0.5", "0.2777"],
                     ["grass", "0.6105", "0.6", "0.0105"]]
    app.docs_shot("app-sample-tags-panel.png")

    second = dataset.skip(1).first()  # another sample: the panel reads the one open in the modal
    app.page.goto(f"{app.server.dataset_url(dataset.name)}?id={second.id}")
    modal.wait_for()
    tab = modal.get_by_text("Sample tags", exact=True).first
    if not app.page.get_by_text("tags in ram, most confident first").count():
        tab.click()
    app.wait_for_text("1 tags in ram, most confident first", timeout_s=60)
    expect(rows).to_have_count(1)
    assert rows.first.locator("td").first.inner_text().strip() == "cat"
