"""Fine-tuning from the real App: the ``finetune_model`` form filled the way a user fills it, scheduled (it is
delegated only), executed by a real ``fiftyone delegated launch``, and the model folder it writes loads."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

FINETUNE = "Fine-tune a tagger (Recognize Anything)"
ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT.parent / "shared" / "fixtures" / "parity"
UPSTREAM = ROOT.parent / "shared" / "upstream"


@pytest.fixture()
def shapes(tmp_path, shapes_dataset):
    """Six shape images with ground truth in ``gt``, persistent so that the App server and the launcher see
    them; deleted after the test."""
    dataset, _ = shapes_dataset(tmp_path / "images", train=6, validation=0, name="app_finetune")
    dataset.persistent = True
    yield dataset
    if not dataset.deleted:
        dataset.delete()


def _wait_for_operation(dataset_name: str, launcher, operator: str = "finetune_model", timeout_s: float = 240):
    """The dataset's delegated operation of ``operator`` once it has finished (or the last state seen at the
    deadline)."""
    from fiftyone.operators.delegated import DelegatedOperationService

    service, operation = DelegatedOperationService(), None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert launcher.process.poll() is None, launcher.tail()
        found = [o for o in service.list_operations(dataset_name=dataset_name) if o.operator.endswith(operator)]
        if found:
            assert len(found) == 1, [o.operator for o in found]
            operation = service.get(found[0].id)
            if operation.run_state in ("completed", "failed"):
                return operation
        time.sleep(0.5)
    return operation


def test_a_scheduled_finetune_writes_a_model_folder_that_tags_and_is_evaluated(app_page, shapes, delegated_launcher,
                                                                             tiny_tagger, tmp_path):
    """What a user meets: a form that says what is missing, schedules (no immediate run), and a launcher that
    trains and writes a folder that loads on its own, with weights that moved. Then the loop closes in the App:
    the folder tags the view (the form says what it read from it), and the tags are evaluated."""
    import torch

    from fiftyone_ram import load_tagger
    from fiftyone_ram.tag_files import read_tag_list

    out = tmp_path / "my-model"
    launcher = delegated_launcher()
    app = app_page(delegation=True)  # the App started with FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true
    app.open_dataset(shapes.name)
    app.open_operator("finetune_model", FINETUNE)
    app.wait_for_text("Choose a tags field, a caption field or both")  # nothing to learn from yet
    # The fewest inputs: the checkpoint, its tag files (nothing downloads here), the targets, the folder, 1 epoch
    app.select("Model", "Your own checkpoint or model folder")
    app.fill("Checkpoint or model folder", PARITY / "ram_tiny.pth")
    app.wait_for_text("RAM checkpoint; architecture read from its tensor shapes")
    app.fill("Tag list (optional)", UPSTREAM / "ram_tag_list.txt")
    app.fill("Threshold file (optional)", UPSTREAM / "ram_tag_list_threshold.txt")
    app.field("Ground-truth tags").click()
    offered = [" ".join(o.split()) for o in app.page.get_by_role("option").all_inner_texts()]
    assert offered.count("tags") == 1 and "gt" in offered, offered  # sample tags once, then the fields
    app.page.get_by_role("option", name="gt", exact=True).click()
    app.settle()
    app.fill("Output folder", out)
    app.fill("Epochs", 1)
    text = app.text()
    assert "Complete the form" not in text and "Choose a tags field" not in text, text
    # Training only runs scheduled: the form offers Schedule (available here), never an immediate run
    assert "Runs now" not in text
    choices = app.execution_choices()
    assert choices and all("Schedule" in c for c in choices), choices
    assert not any("NOT AVAILABLE" in c for c in choices), choices
    schedule = app.prompt.get_by_role("button", name="Schedule", exact=True)
    assert schedule.count() == 1 and app.prompt.get_by_role("button", name="Execute", exact=True).count() == 0
    schedule.click()
    app.prompt.wait_for(state="hidden")

    operation = _wait_for_operation(shapes.name, launcher)
    assert operation is not None, f"nothing was scheduled\n{launcher.tail()}"
    assert operation.run_state == "completed", (operation.run_state, operation.result, launcher.tail())
    result = operation.result.result
    assert result["output_dir"] == str(out) and result["steps"] == 1, result  # 6 samples, batch 26: one step
    assert operation.status.progress == 1.0
    assert {"model.pth", "config.json", "tag_list.txt", "thresholds.txt"} <= {p.name for p in out.iterdir()}
    tagger = load_tagger(out, device="cpu")  # the folder alone: its config, tag list and thresholds
    assert tagger.tag_list == read_tag_list(UPSTREAM / "ram_tag_list.txt")
    before, after = tiny_tagger("ram").model.state_dict(), tagger.model.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained, not a copy of the start

    # Tag with the folder, from the App: the form reads the folder and needs nothing else.
    app.open_operator("tag_images", "Tag images (Recognize Anything)")
    app.select("Model", "Your own checkpoint or model folder")
    app.fill("Checkpoint or model folder", out)
    summary = app.wait_for_text("Model folder: RAM, Swin").inner_text()
    assert f"{len(tagger.tag_list)} tags" in summary, summary
    assert "Architecture config" not in app.text() and "Tag list (optional)" not in app.text()  # the folder's own
    app.fill("Output field", "tuned")
    app.execute(schedule=True)
    app.prompt.wait_for(state="hidden")
    tagging = _wait_for_operation(shapes.name, launcher, "tag_images")
    assert tagging is not None and tagging.run_state == "completed", (tagging and tagging.result, launcher.tail())
    shapes.reload()
    assert len(shapes.exists("tuned")) == len(shapes)

    # Evaluate those tags against the ground truth they were trained on, run now.
    app.open_operator("evaluate_tags", "Evaluate tags (mAP, precision, recall)")
    app.select("Predicted tags", "tuned")
    app.select("Ground truth", "gt")
    app.execute()
    out_text = app.wait_for_output("Samples evaluated")
    assert re.search(rf"Samples evaluated:\s*{len(shapes)}\b", out_text), out_text
    shapes.reload()
    info = shapes.get_evaluation_info("eval_tags")
    assert (info.config.pred_field, info.config.gt_field) == ("tuned", "gt")
