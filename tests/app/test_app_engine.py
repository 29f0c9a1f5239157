"""The data engine in the real App: generate tags from fields picked in dropdowns, clean a field, then review
in the Tag review panel (one-click Keep / Remove, show only the flags), apply and undo."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest




@pytest.fixture()
def engine_dataset(tmp_path, cleaning_dataset):
    """The cleaning test set (known wrong tags, boxes in ``objects``), persistent so that the App sees it."""
    made = []

    def make(name: str):
        folder = tmp_path / name
        folder.mkdir()
        dataset, wrong = cleaning_dataset(folder, name=name, per_category=2)
        dataset.persistent = True
        made.append(dataset)
        return dataset, wrong

    yield make
    for dataset in made:
        if not dataset.deleted:
            dataset.delete()


def test_generate_then_clean_review_keep_apply_and_undo(app_page, engine_dataset, tiny_clip_vision_dir, tmp_path):
    """One dataset, one page: tags generated from fields picked in dropdowns; then the same dataset's ``gt``
    cleaned, reviewed in the Tag review panel (Keep on a row, show only the flags), applied and undone."""
    dataset, wrong = engine_dataset("app_engine")
    app = app_page()
    app.open_dataset(dataset.name)
    app.open_operator("generate_tags", "Generate tags (RAM data engine)")
    app.check("Add the tags a tagger predicts ('predicted')", False)
    app.select("Existing tags", "gt")
    app.select("Existing tags", "objects")
    app.execute()
    out = app.wait_for_output("Tags generated")
    assert "No value provided" not in out
    assert re.search(r"Tags added as 'original':\s*\d+", out), out
    dataset.reload()
    expected = sum(len({c.label for c in g.classifications} | {d.label for d in o.detections})
                   for g, o in zip(dataset.values("gt"), dataset.values("objects")))
    assert dataset.count("generated.classifications") == expected
    app.close_output()
    app.prompt.wait_for(state="hidden")

    before = dataset.count("gt.classifications")
    app.open_operator("clean_tags", "Clean tags (RAM data engine)")
    app.select("Tags to clean", "gt")  # the newest tags ('generated') are the default
    # The dataset's boxes are the default regions: nothing to download.
    assert app.field("Boxes").inner_text().strip() == "objects"
    app.choose("clip")
    app.fill("CLIP model", tiny_clip_vision_dir)
    app.check("Also flag tags the tagger does not predict on their regions", False)
    app.execute()
    out = app.wait_for_output("Tags flagged")  # the output only (the form has the same title)
    assert "No value provided" not in out
    flagged = int(re.search(r"Tags flagged:\s*(\d+)", out).group(1))
    assert flagged == len(wrong)
    app.close_output()

    # The Tag review panel opened on the field: one row per flagged tag, Keep / Remove on the row.
    app.wait_for_text(f"{flagged} tags flagged in gt_review")
    rows = app.page.get_by_role("row").filter(has_text=".png")
    assert rows.count() == flagged
    kept = rows.first.locator("td").nth(1).inner_text().strip(), rows.first.locator("td").first.inner_text().strip()
    rows.first.get_by_role("button").first.click()  # Keep (the first of the two row buttons)
    app.wait_for_text("1 marked keep", timeout_s=30)
    app.page.get_by_role("button", name="Show flagged").click()
    app.wait_for_text(f"{len({f for f, _ in wrong})} samples", timeout_s=30)
    app.docs_shot("app-tag-review-panel.png")

    app.page.get_by_role("button", name="Apply", exact=True).click()
    app.wait_for_text(f"Removed {flagged - 1} tags from 'gt'", timeout_s=60)
    dataset.reload()
    assert dataset.count("gt.classifications") == before - flagged + 1
    tag, file = kept
    names = {(Path(p).name, c.label) for p, row in zip(*dataset.values(["filepath", "gt.classifications"]))
             for c in row or []}
    assert (file, tag) in names  # the tag marked keep stayed

    app.page.get_by_role("button", name="Undo", exact=True).click()
    deadline = time.monotonic() + 60  # the undo's request, then its write, on the App server
    while dataset.count("gt.classifications") != before and time.monotonic() < deadline:
        time.sleep(0.25)
        dataset.reload()
    assert dataset.count("gt.classifications") == before
