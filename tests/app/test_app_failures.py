"""A failing run of every operator that runs a job, as the App shows it (``plot_tag_pr_curves`` only draws
what its form offers: every input is chosen from the evaluation it reads): run now, the bar ends on "Failed: <the
one line>", an error notification says the line and the form's dialog says "The run failed" with it (never a bar
stuck at 0 %, never a traceback as the message); scheduled, FiftyOne's delegated-operation record (what
``fiftyone delegated list`` shows on a stock install) is "failed" with that line as its error.

One test, one App server (the one that can schedule: it runs now too) and one page: every form is filled once to
run now and once to schedule, and the launcher, started first, executes the scheduled runs while the page goes
on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import json
import time
from pathlib import Path

import fiftyone as fo

HERE = Path(__file__).resolve().parent
PARITY = HERE.parents[2] / "shared" / "fixtures" / "parity"
UPSTREAM = HERE.parents[2] / "shared" / "upstream"

TAG_IMAGES = "Tag images (Recognize Anything)"
EVALUATE = "Evaluate tags (mAP, precision, recall)"


def _dataset(app_dataset, name: str):
    """Three images with ground truth, predictions with confidences, captions, and an evaluation."""
    from fiftyone_ram.evaluation import evaluate_tags

    dataset = app_dataset(name, count=3)
    names = [["person", "rocket"], ["cat"], ["cup"]]
    dataset.set_values("gt", [fo.Classifications(classifications=[fo.Classification(label=n) for n in tags])
                              for tags in names])
    dataset.set_values("pred", [fo.Classifications(classifications=[fo.Classification(label=n, confidence=0.9)
                                                                    for n in tags[:1]]) for tags in names])
    dataset.set_values("caption", ["a person and a rocket", "a cat", "a cup on a table"])
    dataset.set_values("unknown", [fo.Classifications(classifications=[fo.Classification(label="blorptag")])
                                   for _ in names])
    evaluate_tags(dataset, "pred", "gt", eval_key="eval_tags")
    return dataset


def _own_model(app, bad_tag_list: Path, *, model_label: str = "Model") -> None:
    """Your own checkpoint with a tag list of the wrong length: the model cannot be loaded."""
    app.select(model_label, "Your own checkpoint or model folder")
    app.fill("Checkpoint or model folder", PARITY / "ram_tiny.pth")
    app.wait_for_text("RAM checkpoint; architecture read from its tensor shapes")
    app.fill("Tag list (optional)", bad_tag_list)
    app.fill("Threshold file (optional)", UPSTREAM / "ram_tag_list_threshold.txt")


def _failing_runs(app, dataset, tmp_path: Path):
    """(operator, form steps, words its one line must hold) of one failing run per operator that runs now."""
    bad = tmp_path / "three_tags.txt"
    bad.write_text("a\nb\nc\n")
    missing = tmp_path / "nowhere" / "file.txt"

    def tag():
        app.open_operator("tag_images", TAG_IMAGES)
        _own_model(app, bad)
        app.select("Device", "cpu")

    def evaluate():
        app.open_operator("evaluate_tags", EVALUATE)
        app.choose("Replace it")
        app.fill("Name mapping file", missing)

    def parse():
        app.open_operator("parse_caption_tags", "Parse caption tags")
        app.fill("Tag list", missing)

    def tune():
        app.open_operator("tune_tag_thresholds", "Tune tag thresholds")
        app.fill("Model tag list file", missing)
        app.fill("Thresholds of the other classes", "0.6")

    def generate():
        app.open_operator("generate_tags", "Generate tags (RAM data engine)")
        _own_model(app, bad, model_label="Tagger")

    def clean():  # the default crop embeddings: the released RAM++, not in this offline cache
        app.open_operator("clean_tags", "Clean tags (RAM data engine)")
        app.check("Also flag tags the tagger does not predict on their regions", False)

    return [("tag_images", tag, "has 4585 values but the tag list has 3 tags"),
            ("evaluate_tags", evaluate, str(missing)),
            ("parse_caption_tags", parse, str(missing)),
            ("tune_tag_thresholds", tune, str(missing)),
            ("generate_tags", generate, "has 4585 values but the tag list has 3 tags"),
            ("clean_tags", clean, "ram_plus_swin_large_14m.pth")]


def _streamed(answer) -> list[dict]:
    """The messages an immediate run streamed to the App (FiftyOne's generator protocol, one JSON per line)."""
    return [json.loads(line) for line in answer.text().splitlines() if line.strip()]


def _sent(messages: list[dict], operator: str) -> list[dict]:
    """The params of the streamed ``ctx.ops`` calls of ``operator`` (``set_progress``, ``notify``)."""
    return [m["body"]["params"] for m in messages
            if m.get("body") and m["body"].get("operator_uri", "").endswith(operator)]


def test_a_failing_run_shows_its_one_line_run_now_and_scheduled(app_page, app_dataset, delegated_launcher, child_env,
                                                                 tmp_path):
    from fiftyone.operators.delegated import DelegatedOperationService

    dataset = _dataset(app_dataset, "app_failures")
    launcher = delegated_launcher()  # started first: it executes each scheduled run while the page goes on
    app = app_page(delegation=True)  # this App runs now as well as schedules
    app.open_dataset(dataset.name)
    expected = {}
    for operator, fill, words in _failing_runs(app, dataset, tmp_path):
        # Run now: the bar ends on the line, a notification says it, the form's dialog shows it.
        fill()
        with app.page.expect_response("**/operators/execute/generator", timeout=300_000) as answer:
            app.execute()
        line = app.wait_for_failure()
        assert words in line, (operator, line)
        assert "Traceback" not in line and "full traceback" not in line, (operator, line)  # a user's line
        messages = _streamed(answer.value)
        notice = _sent(messages, "notify")[-1]  # the error notification: the same line
        assert notice["variant"] == "error" and words in notice["message"] and notice["message"] in line, notice
        assert _sent(messages, "set_progress")[-1]["label"] == f"Failed: {notice['message']}", (operator, messages)
        if operator == "tag_images":
            app.docs_shot("app-failed-run.png")
        app.close_output()
        app.prompt.wait_for(state="hidden")
        if operator == "tune_tag_thresholds":  # a table in the form: it runs now only
            continue
        # Scheduled: the same form, queued for the launcher.
        fill()
        app.execute(schedule=True)
        app.prompt.wait_for(state="hidden")
        expected[operator] = words
    # Fine-tuning runs scheduled only: here on tags none of which the model knows.
    app.open_operator("finetune_model", "Fine-tune a tagger (Recognize Anything)")
    app.select("Model", "Your own checkpoint or model folder")
    app.fill("Checkpoint or model folder", PARITY / "ram_tiny.pth")
    app.wait_for_text("RAM checkpoint; architecture read from its tensor shapes")
    app.fill("Tag list (optional)", UPSTREAM / "ram_tag_list.txt")
    app.fill("Threshold file (optional)", UPSTREAM / "ram_tag_list_threshold.txt")
    app.select("Ground-truth tags", "unknown")
    app.fill("Output folder", tmp_path / "model")
    app.execute(schedule=True)
    app.prompt.wait_for(state="hidden")
    expected["finetune_model"] = "blorptag"

    service = DelegatedOperationService()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert launcher.process.poll() is None, launcher.tail()
        operations = service.list_operations(dataset_name=dataset.name)
        if len(operations) == len(expected) and all(o.run_state in ("completed", "failed") for o in operations):
            break
        time.sleep(0.5)
    operations = {o.operator.rsplit("/", 1)[-1]: service.get(o.id) for o in
                  service.list_operations(dataset_name=dataset.name)}
    assert set(operations) == set(expected), (sorted(operations), launcher.tail())
    for operator, words in expected.items():
        operation = operations[operator]
        assert operation.run_state == "failed", (operator, operation.run_state, operation.result)
        error = operation.result.error
        assert words in error and "\n" not in error.strip() and "Traceback" not in error, (operator, error)
    # What a stock install shows: `fiftyone delegated list` lists them as failed.
    fiftyone = shutil.which("fiftyone", path=os.path.dirname(sys.executable)) or shutil.which("fiftyone")
    listed = subprocess.run([fiftyone, "delegated", "list", "--dataset", dataset.name, "--state", "FAILED"],
                            capture_output=True, text=True, timeout=120, env=child_env)
    assert listed.returncode == 0, listed.stderr
    assert sum(1 for operator in expected if operator in listed.stdout) == len(expected), listed.stdout
