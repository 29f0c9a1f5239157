"""Fine-tuning loses nothing and claims nothing (issue 26, round two; issue 21's ``--set``): a run that cannot
teach the model is refused in one line before anything is written, a run never ends "successfully" without a
usable model, only the package's own files are ever removed, one run at a time writes a folder, a failed write
leaves no temporary file, and a model folder's files stay inside it. Real datasets, checkpoints and processes;
the tiny parity checkpoints train for a step or two."""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fiftyone_ram.errors import UserError

fo = pytest.importorskip("fiftyone")
pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATES = ("a photo of {article} {}.", "itap of my {}.")
#: Other labels of the same images (each shape named as the next one): a different training target.
ROTATED = {"circle": "square", "square": "triangle", "triangle": "zigzag", "zigzag": "circle"}


class Interrupted(Exception):
    """Raised from the progress callback: a run stopped mid-epoch, its resumable state on disk."""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, shapes_dataset):
    """4 training and 3 validation shape images (persistent: the CLI in other processes reads it), with
    fields of every kind a user may wrongly name."""
    folder = tmp_path_factory.mktemp("shapes")
    dataset, tag_file = shapes_dataset(folder, train=4, validation=3)
    dataset.persistent = True
    gt, tags = dataset.values("gt"), dataset.values("tags")
    dataset.set_values("train_only", [g if "train" in t else None for g, t in zip(gt, tags)])
    dataset.set_values("other", [fo.Classifications(classifications=[fo.Classification(label=ROTATED[c.label])
                                                                     for c in g.classifications]) for g in gt])
    dataset.set_values("unknown", [fo.Classifications(classifications=[fo.Classification(label=name)])
                                   for name in ("blorp", "glorp") * 3 + ("blorp",)])
    dataset.set_values("a_string", ["hello"] * len(gt))
    dataset.set_values("an_int", [3] * len(gt))
    dataset.set_values("a_detection", [fo.Detection(label="circle", bounding_box=[0.1, 0.1, 0.5, 0.5])] * len(gt))
    dataset.set_values("keypoints", [fo.Keypoints(keypoints=[fo.Keypoint(label="circle", points=[(0.2, 0.3)])])]
                       * len(gt))
    templates = folder / "templates.txt"
    templates.write_text("\n".join(TEMPLATES) + "\n")
    yield dataset, tag_file, templates
    dataset.delete()


@pytest.fixture()
def model(shapes, parity_dir, upstream_dir, tiny_clip_text_dir):
    """``load_tagger``'s options for the tiny RAM fine-tuned on the four shape tags (one new: zigzag)."""
    _, tag_file, _ = shapes
    return dict(model=parity_dir / "fixtures_tiny.json", checkpoint=parity_dir / "ram_tiny.pth", family="ram",
                tag_list=upstream_dir / "ram_tag_list.txt", thresholds=upstream_dir / "ram_tag_list_threshold.txt",
                tags=str(tag_file), text_encoder=str(tiny_clip_text_dir(0)), templates=list(TEMPLATES))


@pytest.fixture()
def cli_args(shapes, tiny_cli_args, tiny_clip_text_dir):
    """``cli_args(output, *more)``: ``fiftyone-ram finetune`` of the tiny RAM on the shapes, one step."""
    dataset, tag_file, templates = shapes

    def args(output: Path, *more: str) -> list[str]:
        teacher = [] if "--teacher" in more else ["--no-teacher"]
        return ["finetune", dataset.name, "--output", str(output), *tiny_cli_args("ram"), "--tags", str(tag_file),
                "--text-encoder", str(tiny_clip_text_dir(0)), "--templates", str(templates), *teacher,
                "--train-tag", "train", "--epochs", "1", "--batch-size", "4", "--device", "cpu", *more]

    return args


def _quiet() -> dict:
    return dict(teacher=None, device="cpu", progress=False, messages=lambda _: None)


def _cli(args: list[str]):
    from fiftyone_ram.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line(result) -> str:
    """The single ``Error: ...`` line of a refused command (exit status 2, no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def _env(repo_root: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _interrupted_run(out: Path, dataset, model: dict, **changes) -> None:
    """A run stopped in its second step (2 steps an epoch, a state saved after each): resumable."""
    calls = []

    def progress(fraction: float, label: str) -> None:
        calls.append(label)
        if len(calls) == 2:
            raise Interrupted()

    options = {**model, **_quiet(), "tag_field": "gt", "epochs": 2, "batch_size": 2, "checkpoint_every": 1,
               "progress": progress, **changes}
    from fiftyone_ram.training import finetune

    with pytest.raises(Interrupted):
        finetune(dataset.match_tags("train"), out, **options)
    assert (out / "resume" / "state.pt").is_file()


def _temporary_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp"))


# -- case 1: a validation view that cannot be scored -------------------------------------------------------


def test_validation_without_labels_is_refused_and_a_run_always_leaves_a_model(shapes, cli_args, model, tmp_path,
                                                                             monkeypatch):
    from fiftyone_ram import load_tagger
    from fiftyone_ram.training import finetune

    dataset, _, _ = shapes
    out = tmp_path / "refused"
    line = _one_line(_cli(cli_args(out, "--tag-field", "train_only", "--validation-tag", "validation")))
    assert "validation view has no labels" in line and "'train_only'" in line and "3 sample(s)" in line
    assert not out.exists()  # refused before anything was written

    # Validation that gives no score (a seam: every summary value missing) cannot pick a best epoch: the
    # folder still gets the last epoch's model, and the run says so.
    import fiftyone_ram.training.validation as validation

    monkeypatch.setattr(validation, "summary_of", lambda results: dict.fromkeys(("mAP", "CP", "CR"), None))
    notes: list[str] = []
    out = tmp_path / "unscored"
    result = finetune(dataset.match_tags("train"), out, **model, **{**_quiet(), "messages": notes.append},
                      tag_field="gt", validation=dataset.match_tags("validation"), epochs=2, batch_size=4)
    assert result.best_epoch is None and result.model_epoch == 1
    assert any("no mAP to pick the best epoch by" in n for n in notes), notes
    assert json.loads((out / "finetune.json").read_text())["model_epoch"] == 1
    assert load_tagger(out, device="cpu").tag_list == ["circle", "square", "triangle", "zigzag"]


# -- case 2: settings that are not finite, and a run that diverges ---------------------------------------


def test_non_finite_settings_are_refused_and_a_diverging_run_stops_without_a_model(shapes, cli_args, model,
                                                                                   tmp_path):
    from fiftyone_ram.training import finetune

    dataset, _, _ = shapes
    out = tmp_path / "inf"
    line = _one_line(_cli(cli_args(out, "--tag-field", "gt", "--lr", "inf")))
    assert line == "Error: lr must be a finite number with 0 < lr, not inf"
    assert not out.exists()
    for bad in ({"lr": math.inf}, {"head_lr": math.inf}, {"loss_weights": {"tag": math.nan}}):
        with pytest.raises(UserError, match="must be a finite number") as excinfo:
            finetune(dataset, out, **model, **_quiet(), tag_field="gt", **bad)
        assert "\n" not in str(excinfo.value)
    assert not out.exists()

    # A finite lr that is far too large: the weights overflow in the first steps. The run stops in one line
    # as soon as they do, and the folder never gets a model of NaNs.
    with pytest.raises(UserError, match=r"training diverged at step \d") as excinfo:
        finetune(dataset.match_tags("train"), out, **model, **_quiet(), tag_field="gt", lr=1e30, epochs=1,
                 batch_size=1)
    assert "lower lr" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert not (out / "model.pth").exists() and not _temporary_files(out)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["type"] == "diverged" and not any(r["type"] == "end" for r in log)


# -- case 3: a resumption with other data --------------------------------------------------------------------


def test_resume_with_other_labels_mapping_thresholds_or_validation_is_refused_naming_the_change(shapes, model,
                                                                                              tmp_path):
    from fiftyone_ram.tag_files import read_tag_list
    from fiftyone_ram.training import finetune

    dataset, _, _ = shapes
    out = tmp_path / "run"
    validation = dataset.match_tags("validation")
    _interrupted_run(out, dataset, model, validation=validation.limit(2), baseline=False)
    resume = {**model, **_quiet(), "tag_field": "gt", "epochs": 2, "batch_size": 2, "checkpoint_every": 1,
              "validation": validation.limit(2), "baseline": False, "resume_run": True}
    count = len(read_tag_list(model["tag_list"]))
    changes = [({"tag_field": "other"}, {"tag field", "training labels", "validation labels"}),
               ({"mapping": {"circle": "square"}}, {"mapping", "training labels", "validation labels"}),
               ({"thresholds": [0.5] * count}, {"thresholds"}),
               ({"validation": validation}, {"validation samples", "validation labels"})]
    for change, named in changes:
        with pytest.raises(UserError, match="was started with another") as excinfo:
            finetune(dataset.match_tags("train"), out, **{**resume, **change})
        shown = str(excinfo.value).split("was started with another ")[1].split(":")[0]
        assert set(shown.split(", ")) == named, str(excinfo.value)
    result = finetune(dataset.match_tags("train"), out, **resume)  # the same run resumes
    assert result.steps == 4 and not (out / "resume").exists()


# -- case 4: --overwrite and the user's own files ------------------------------------------------------------


def test_overwrite_removes_only_what_fine_tuning_wrote(shapes, model, tmp_path):
    from fiftyone_ram.training import finetune

    dataset, _, _ = shapes
    out = tmp_path / "run"
    _interrupted_run(out, dataset, model)
    (out / "mine.txt").write_text("keep me\n")
    (out / "resume" / "notes.txt").write_text("my notes\n")
    (out / "plots").mkdir()
    notes: list[str] = []
    result = finetune(dataset.match_tags("train"), out, **model, **{**_quiet(), "messages": notes.append},
                      tag_field="gt", epochs=1, batch_size=4, overwrite=True)
    assert result.steps == 1 and (out / "model.pth").is_file()
    assert (out / "mine.txt").read_text() == "keep me\n" and (out / "plots").is_dir()
    assert sorted(p.name for p in (out / "resume").iterdir()) == ["notes.txt"]  # the run's state went, not yours
    assert any("kept 3 other(s): mine.txt, plots/, resume/notes.txt" in n for n in notes), notes
    starts = [line for line in (out / "log.jsonl").read_text().splitlines() if '"type": "start"' in line]
    assert len(starts) == 1  # the previous run's log was replaced, not appended to

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "log.jsonl").write_text("my own experiment log\n")
    with pytest.raises(UserError, match="log.jsonl was not written by fine-tuning"):
        finetune(dataset.match_tags("train"), theirs, **model, **_quiet(), tag_field="gt", overwrite=True)
    assert (theirs / "log.jsonl").read_text() == "my own experiment log\n"
    assert sorted(p.name for p in theirs.iterdir()) == ["log.jsonl"]


# -- case 5: two runs into one folder --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_holder(cli_args, tmp_path, repo_root):
    out = tmp_path / "busy"
    first = subprocess.Popen([sys.executable, "-m", "fiftyone_ram.cli",
                              *cli_args(out, "--tag-field", "gt", "--epochs", "500", "--batch-size", "1")],
                             env=_env(repo_root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "log.jsonl").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, first.stderr.read()
        line = _one_line(_cli(cli_args(out, "--tag-field", "gt", "--max-steps", "1", "--overwrite")))
        assert f"in use by another fine-tuning run (pid {first.pid} on {socket.gethostname()})" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # the operating system released the killed run's lock: the folder can be used again
    result = _cli(cli_args(out, "--tag-field", "gt", "--max-steps", "1", "--overwrite"))
    assert result.exit_code == 0, result.output
    assert (out / "model.pth").is_file() and not (out / ".finetune.lock").exists()


# -- case 6: a full disk -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_fails_in_one_line_and_leaves_no_temporary_file(cli_args, tmp_path):
    """Writes past 1 MB fail (RLIMIT_FSIZE, as a full disk does with ENOSPC) while the command runs (by click, in
    this process: the limit is lifted afterwards): the model file is larger, so writing it fails."""
    out = tmp_path / "full"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        result = _cli(cli_args(out, "--tag-field", "gt", "--max-steps", "1"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert _one_line(result) == f"Error: could not write {out / 'model.pth'}: file too large"
    assert not _temporary_files(out) and not (out / "model.pth").exists()


# -- case 7: wrong fields, files and settings ----------------------------------------------------------------


CLI_REFUSALS = {
    "no such field": (["--tag-field", "nosuchfield"], "tag field 'nosuchfield' does not exist"),
    "a string field": (["--tag-field", "a_string"], "tag field 'a_string' holds StringField"),
    "an int field": (["--tag-field", "an_int"], "tag field 'an_int' holds IntField"),
    "a Detection": (["--tag-field", "a_detection"], "tag field 'a_detection' holds Detection;"),
    "Keypoints": (["--tag-field", "keypoints"], "tag field 'keypoints' holds Keypoints"),
    "filepath": (["--tag-field", "filepath"], "tag field 'filepath' holds StringField"),
    "metadata": (["--tag-field", "metadata"], "tag field 'metadata' holds"),
    "id": (["--tag-field", "id"], "tag field 'id' holds ObjectIdField"),
    "a caption field of ints": (["--caption-field", "an_int"], "caption field 'an_int' must hold a string"),
    "labels outside the vocabulary": (["--tag-field", "unknown"], "none of the 2 label name(s) of 'unknown' in "
                                      "the training view (blorp, glorp) is in the model's vocabulary: map them "
                                      "with mapping= / --mapping or add them with tags= / --tags"),
    "a resume state that is not one": (["--tag-field", "gt", "--resume"], "cannot resume from"),
    "a damaged teacher": (["--tag-field", "gt", "--teacher", "TEACHER"], "the CLIP teacher"),
    "an unknown --set key": (["--tag-field", "gt", "--set", "no_such=1"], "unknown fine-tuning setting 'no_such'"),
}
PYTHON_REFUSALS = {"seed": ({"seed": 1e100}, "seed must be an integer, not 1e+100"),
                   "crop_scale": ({"crop_scale": (0.5,)}, "crop_scale must be two numbers"),
                   "weight_decay": ({"weight_decay": -5}, "weight_decay must be a finite number with 0 <="),
                   "target_precision": ({"target_precision": 2}, "target_precision must be a finite number with 0 <"),
                   "the old precision name": ({"precision": "bf16"}, "did you mean train_precision?")}


@pytest.mark.parametrize("case", [*CLI_REFUSALS, *PYTHON_REFUSALS, "--help"])
def test_wrong_fields_files_and_settings_are_one_line(case, shapes, cli_args, model, tmp_path,
                                                      tiny_clip_vision_dir):
    from fiftyone_ram.training import finetune

    dataset, _, _ = shapes
    out = tmp_path / "out"
    if case == "--help":  # one --precision: training's own, under its own name; click has nothing to warn of
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            shown = _cli(["finetune", "--help"])
        assert shown.exit_code == 0 and "--train-precision" in shown.output and "--precision" not in shown.output
        return
    if case in PYTHON_REFUSALS:
        change, expected = PYTHON_REFUSALS[case]
        with pytest.raises(UserError) as excinfo:
            finetune(dataset, out, **model, **_quiet(), tag_field="gt", **change)
        assert expected in str(excinfo.value) and "\n" not in str(excinfo.value) and not out.exists()
        return
    args, expected = CLI_REFUSALS[case]
    if "--resume" in args:
        (out / "resume").mkdir(parents=True)
        (out / "resume" / "state.pt").write_bytes(b"not a state at all")
    if "TEACHER" in args:  # a CLIP folder whose weights are damaged
        teacher = tmp_path / "teacher"
        teacher.mkdir()
        (teacher / "config.json").write_bytes((tiny_clip_vision_dir / "config.json").read_bytes())
        (teacher / "model.safetensors").write_bytes(b"garbage" * 100)
        args = [str(teacher) if a == "TEACHER" else a for a in args]
    before = sorted(p.name for p in out.rglob("*")) if out.exists() else None
    line = _one_line(_cli(cli_args(out, *args, "--max-steps", "1")))
    assert expected in line, line
    assert (sorted(p.name for p in out.rglob("*")) if out.exists() else None) == before  # nothing written


# -- case 8: files a model folder names --------------------------------------------------------------------------


def test_a_model_folder_naming_a_file_outside_it_is_refused(shapes, cli_args, model, tmp_path):
    from fiftyone_ram import load_tagger
    from fiftyone_ram.training import finetune

    dataset, _, _ = shapes
    folder = tmp_path / "model"
    finetune(dataset.match_tags("train"), folder, **model, **_quiet(), tag_field="gt", epochs=1, batch_size=4)
    (tmp_path / "secret.txt").write_text("password=hunter2\n")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "tokenizer": "../secret.txt"}))
    with pytest.raises(UserError, match=r"names the tokenizer '\.\./secret\.txt', which is outside the model folder"):
        load_tagger(folder, device="cpu")
    out = tmp_path / "from-folder"
    line = _one_line(_cli(["finetune", dataset.name, "--output", out, "--checkpoint", folder, "--tag-field", "gt",
                           "--no-teacher", "--max-steps", "1", "--batch-size", "4", "--device", "cpu"]))
    assert "outside the model folder" in line
    assert not out.exists()


# -- issue 21: --set KEY=VALUE -------------------------------------------------------------------------------------


def test_set_key_value_reaches_the_settings(cli_args, tmp_path):
    out = tmp_path / "set"
    result = _cli(cli_args(out, "--tag-field", "gt", "--max-steps", "1", "--set", "crop_scale=[0.9, 1]",
                           "--set", "rand_augment=false", "--set", "loss_weights={\"tag\": 2}", "--json"))
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "finetune.json").read_text())["settings"]
    assert settings["crop_scale"] == [0.9, 1] and settings["rand_augment"] is False
    assert settings["loss_weights"] == {"tag": 2}


# -- issue 26 case 15: a config too large to build ------------------------------------------------------------


def test_a_config_too_large_to_build_is_refused_with_its_numbers(parity_dir, tmp_path):
    from fiftyone_ram.models.config import (MAX_ACTIVATION_VALUES, MAX_PARAMETERS, ConfigError,
                                            activation_estimate, load_config_file, parameter_estimate)
    from fiftyone_ram.models.registry import default_cfgs

    tiny = json.loads((parity_dir / "fixtures_tiny.json").read_text())["config"]
    path = tmp_path / "huge.json"
    started = time.monotonic()
    path.write_text(json.dumps({**tiny, "family": "ram", "image_size": 100000}))
    with pytest.raises(ConfigError, match=r"image_size 100000 makes a tensor of about 8\.0e10 values per image in "
                                          r"Swin stage 1, .* use an image_size of at most \d+"):
        load_config_file(path)
    path.write_text(json.dumps({**tiny, "family": "ram", "swin": {**tiny["swin"], "depths": [1, 1, 10000, 1]}}))
    with pytest.raises(ConfigError, match=r"about 2\.0e9 weights \(swin stage 3: 2\.0e9; swin.depths \[1, 1, 10000, "
                                          r"1\]"):
        load_config_file(path)
    assert time.monotonic() - started < 5  # refused from the sizes, nothing built

    # The released sizes pass with a clear margin, and the estimate is the real count (the released state
    # dicts, the tags' own rows aside).
    shared = parity_dir.parent.parent / "docs" / "state-dict-keys"
    for variant in default_cfgs.values():
        config = variant.architecture
        estimate = sum(parameter_estimate(config).values())
        assert estimate < MAX_PARAMETERS / 2.5 and activation_estimate(config)[0] < MAX_ACTIVATION_VALUES / 50
        actual = 0
        for line in (shared / f"{variant.family}_released.tsv").read_text().splitlines():
            key, shape = line.split("\t")[:2]
            if key.startswith("label_embed"):
                continue  # a row per tag
            actual += math.prod(int(n) for n in shape.strip("()").split(",") if n.strip())
        assert abs(estimate - actual) < 0.15 * actual, (variant.name, estimate, actual)
