"""The harness itself: the App serves this checkout's plugin and its forms open from the operator browser."""

from __future__ import annotations

TAG_IMAGES = "Tag images (Recognize Anything)"


def test_the_operator_browser_lists_the_plugin_and_opens_a_form(app_page, app_dataset):
    dataset = app_dataset("harness", count=2)
    app = app_page()
    app.open_dataset(dataset.name)
    app.page.keyboard.press("`")
    browser = app.page.locator("[data-cy=operators-browser]")
    browser.wait_for()
    app.page.fill("[data-cy=operators-browser-search]", "Recognize Anything")
    assert browser.get_by_text(TAG_IMAGES, exact=True).count() == 1
    app.page.keyboard.press("Escape")

    app.open_operator("tag_images", TAG_IMAGES)
    assert app.field("Output field").input_value() == "ram"
    app.select("Model", "Your own checkpoint or model folder")
    assert app.field("Checkpoint or model folder").input_value() == ""  # the custom route asks for the checkpoint
    app.prompt.get_by_role("button", name="Cancel", exact=True).click()
    app.prompt.wait_for(state="hidden")
