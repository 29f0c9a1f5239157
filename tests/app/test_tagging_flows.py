"""Tagging from the real App: your own checkpoint with no config, a rerun that resumes, a scheduled run
executed by a real ``fiftyone delegated launch``, progress streamed to the form and Tag2Text captions in the
sidebar (two immediate runs on one page). Screenshots of the main flows go to docs/images/ (the docs link them)."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import fiftyone as fo

TAG_IMAGES = "Tag images (Recognize Anything)"
SUMMARY = "Already tagged (skipped)"  # a row of the summary a run ends with
ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT.parent / "shared" / "fixtures" / "parity"
UPSTREAM = ROOT.parent / "shared" / "upstream"


def _open_custom_form(app, checkpoint: Path, family_label: str) -> None:
    """What a user types for a checkpoint of their own: the file, and (no cache here) the tag files."""
    app.open_operator("tag_images", TAG_IMAGES)
    app.select("Model", "Your own checkpoint or model folder")
    app.fill("Checkpoint or model folder", checkpoint)
    app.wait_for_text(f"{family_label} checkpoint; architecture read from its tensor shapes")
    tag_list = "tag2text_ori_tag_list.txt" if family_label == "Tag2Text" else "ram_tag_list.txt"
    app.fill("Tag list (optional)", UPSTREAM / tag_list)
    if family_label != "Tag2Text":
        app.fill("Threshold file (optional)", UPSTREAM / "ram_tag_list_threshold.txt")
    app.select("Device", "cpu")


def test_own_checkpoint_without_config_then_a_rerun_that_resumes(app_page, app_dataset, tiny_tagger, stored_tags,
                                                                 assert_same_tags, tmp_path):
    dataset = app_dataset("own_checkpoint", count=3)
    checkpoint = Path(shutil.copyfile(PARITY / "ram_tiny.pth", tmp_path / "my_ram.pth"))  # no config beside it
    app = app_page()
    app.open_dataset(dataset.name)
    _open_custom_form(app, checkpoint, "RAM")
    text = app.text()
    assert "Architecture config (optional)" in text and "Model family" not in text  # read from the file
    assert "Runs now, inside the App" in text  # this App cannot schedule: it says so, and runs immediately
    choices = app.execution_choices()
    assert choices[0].startswith("Execute") and any("Schedule" in c and "NOT AVAILABLE" in c for c in choices)
    app.docs_shot("tag-own-checkpoint.png", prompt_only=True)
    app.execute()
    output = app.wait_for_output(SUMMARY)
    assert "Tagged: 3" in " ".join(output.split())
    app.docs_shot("tag-finished.png", target=app.page.locator("[role=dialog]").filter(has_text=SUMMARY).last)
    app.close_output()

    dataset.reload()
    assert len(dataset.exists("ram")) == 3
    tagger = tiny_tagger("ram")
    assert_same_tags([stored_tags(label) for label in dataset.values("ram")], tagger.predict(dataset.values("filepath")),
                     names=tagger.tag_list, thresholds=tagger.thresholds)

    # two new images; the rerun tags only them
    for name in ("rocket.png", "camera.png"):
        dataset.add_sample(fo.Sample(filepath=str(shutil.copyfile(PARITY / name, tmp_path / name))))
    app.open_dataset(dataset.name)  # loaded again: the grid shows the new samples
    _open_custom_form(app, checkpoint, "RAM")
    app.wait_for_text("'ram' already exists")
    app.choose("Tag only the samples without labels")
    app.execute()
    output = " ".join(app.wait_for_output(SUMMARY).split())
    assert "Tagged: 2" in output and "Already tagged (skipped): 3" in output
    dataset.reload()
    assert len(dataset.exists("ram")) == 5


def test_a_scheduled_run_is_executed_by_fiftyone_delegated_launch(app_page, app_dataset, delegated_launcher):
    dataset = app_dataset("scheduled", count=3)
    launcher = delegated_launcher()
    app = app_page(delegation=True)  # the App started with FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true
    app.open_dataset(dataset.name)
    _open_custom_form(app, PARITY / "ram_tiny.pth", "RAM")
    assert "Runs now" not in app.text()
    choices = app.execution_choices()
    assert any(c.startswith("Schedule") and "NOT AVAILABLE" not in c for c in choices)
    app.docs_shot("tag-schedule.png", prompt_only=True)
    assert app.prompt.get_by_role("button", name="Schedule", exact=True).count() == 1  # the default here
    app.prompt.get_by_role("button", name="Schedule", exact=True).click()
    app.prompt.wait_for(state="hidden")

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(dataset.exists("ram")) < 3:
        assert launcher.process.poll() is None, launcher.tail()
        time.sleep(0.5)
        dataset.reload()
    assert len(dataset.exists("ram")) == 3, launcher.tail()
    from fiftyone.operators.delegated import DelegatedOperationService

    (operation,) = DelegatedOperationService().list_operations(dataset_name=dataset.name)
    deadline = time.monotonic() + 60
    while operation.run_state != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
        operation = DelegatedOperationService().get(operation.id)
    assert operation.run_state == "completed" and operation.result.result["tagged"] == 3


def test_immediate_runs_stream_their_progress_and_tag2text_captions_show_in_the_sidebar(app_page, app_dataset):
    """Two immediate runs on one page: RAM++ one image a batch streams its progress to the form (several
    updates, each saying how far it got, up to done); then Tag2Text (its vocab.txt beside the checkpoint, so the
    form asks for none) writes captions, listed in the sidebar once the page is loaded again and shown in the
    sample modal's sidebar."""
    dataset = app_dataset("progress", count=4)
    app = app_page()
    app.open_dataset(dataset.name)
    _open_custom_form(app, PARITY / "ram_plus_tiny.pth", "RAM++")
    app.fill("Batch size", 1)
    with app.page.expect_response("**/operators/execute/generator") as answer:
        app.execute()
    app.wait_for_output(SUMMARY)
    messages = [json.loads(line) for line in answer.value.text().splitlines() if line.strip()]
    progress = [m["body"]["params"] for m in messages if m["body"] and m["body"].get("operator_uri", "").endswith(
        "set_progress")]
    assert len(progress) >= 2 and progress[-1]["progress"] == 1.0  # several updates, up to done
    assert progress[-1]["label"] == "Tagged 4 of 4"  # the bar says how far it got
    assert all(p["label"] == "Tagging" or re.fullmatch(r"Tagged \d of 4", p["label"]) for p in progress), progress
    dataset.reload()
    assert len(dataset.exists("ram")) == 4
    app.close_output()
    app.prompt.wait_for(state="hidden")

    _open_custom_form(app, PARITY / "tag2text_tiny.pth", "Tag2Text")  # its vocab.txt lies beside it
    app.fill("Output field", "t2t")
    assert "Caption vocabulary" not in app.text()
    app.execute()
    app.wait_for_output(SUMMARY)
    app.close_output()
    dataset.reload()
    caption = dataset.first()["t2t_caption"]
    assert caption
    app.page.reload()
    app.page.wait_for_selector("[data-cy=action-browse-operations]")
    app.wait_for_text("t2t_caption")  # listed in the sidebar's primitives
    app.page.locator("[data-cy=looker]").first.click()
    app.wait_for_text(caption)  # the sample's caption in the modal's sidebar
    app.docs_shot("tag2text-caption.png")
