"""The pipeline (``fiftyone_ram.pipeline``, ``fiftyone-ram pipeline``, operator ``run_pipeline``): the spec and its
one-line refusals, provenance on every tag, the report, undo, the synthetic task with a known truth (two rounds
from the tiny checkpoint raise the label F1 against the truth and the validation mAP), and a pipeline killed in
every stage that resumes to what an uninterrupted one writes.

The synthetic task is ``captioned_shapes`` (tests/conftest.py): a function of its seed, so another seed is another
held-out set (``PIPELINE_TEST_SEED`` picks it here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")

SEED = int(os.environ.get("PIPELINE_TEST_SEED", "0"))
RUN_PIPELINE = "@fiftyone-ram/ram/run_pipeline"


@pytest.fixture()
def shapes(tmp_path, captioned_shapes):
    made = []

    def make(**options):
        dataset, tag_file = captioned_shapes(tmp_path / f"images{len(made)}", seed=SEED, **options)
        made.append(dataset)
        return dataset, tag_file

    yield make
    for dataset in made:
        if fo.dataset_exists(dataset.name):
            dataset.delete()


# -- the spec ---------------------------------------------------------------------------------------------------


def test_the_plan_runs_the_paradigm_round_after_round():
    from fiftyone_ram.pipeline.spec import PipelineJob

    job = PipelineJob(dataset="d", output_dir="o", caption_field="c", validation="v", reference_field="r",
                      finetune_view="verified", rounds=2)
    assert job.plan() == [
        (0, "parse"), (0, "evaluate"), (0, "publish"),
        (1, "train"), (1, "generate"), (1, "clean"), (1, "review"), (1, "retrain"), (1, "finetune"), (1, "evaluate"),
        (1, "publish"),
        (2, "generate"), (2, "clean"), (2, "review"), (2, "retrain"), (2, "finetune"), (2, "evaluate"), (2, "publish")]
    no_clean = PipelineJob(dataset="d", output_dir="o", caption_field="c", validation="v", reference_field="r",
                           rounds=1, stages=("parse", "train", "generate", "evaluate"))
    assert [s for _, s in no_clean.plan()] == ["parse", "evaluate", "publish", "train", "generate", "evaluate",
                                                "publish"]


@pytest.mark.parametrize(("changes", "words"), [
    ({"validation": None}, "give a validation view"),
    ({"caption_field": None}, "give a caption field"),
    ({"prefix": "my-tags"}, "not a valid field name"),
    ({"rounds": 0}, "rounds (CLI: --rounds) must be at least 1"),
    ({"stages": ("parse", "polish")}, "'polish' is not one of"),
    ({"train": {"epochz": 3}}, "did you mean epochs"),
    ({"train": {"output_dir": "x"}}, "train: output_dir is set by the pipeline"),
    ({"generate": {"out_field": "x"}}, "generate: out_field is set by the pipeline"),
    ({"clean": {"rule": "loudest"}}, "clean: rule (CLI: --rule)"),
    ({"evaluate": {"top_k": [0]}}, "evaluate: top_k"),
    ({"model": {"checkpoint": "x", "colour": "red"}}, "model: unknown tagger option(s) colour"),
    ({"surprise": 1}, "unknown pipeline setting(s) surprise"),
])
def test_a_bad_spec_is_one_line(changes, words):
    from fiftyone_ram.errors import UserError
    from fiftyone_ram.pipeline.spec import load_spec

    values = {"dataset": "d", "output_dir": "o", "caption_field": "c", "validation": "v", "reference_field": "r",
              **changes}
    with pytest.raises(UserError) as info:
        load_spec(values)
    assert words in str(info.value) and "\n" not in str(info.value)


def _state(dataset) -> tuple:
    dataset.reload()
    return (sorted(dataset.get_field_schema(flat=True)), sorted(dataset.list_runs()),
            sorted(dataset.list_evaluations()), sorted(dataset.list_saved_views()))


@pytest.mark.parametrize("case", ["yaml", "unknown_key", "rounds", "recipe", "no_view", "caption_type", "taken",
                                  "nothing_to_resume"])
def test_a_bad_spec_gives_one_line_exit_2_and_writes_nothing(case, tmp_path, shapes, pipeline_spec):
    import yaml
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    dataset, tag_file = shapes(train=4, validation=2)
    output = tmp_path / "out"
    values = pipeline_spec(dataset, tag_file, output)
    extra: list[str] = []
    words = {"yaml": "is not valid YAML", "unknown_key": "unknown pipeline setting(s) colour",
             "rounds": "rounds (CLI: --rounds) must be at least 1", "recipe": "did you mean epochs",
             "no_view": "no saved view 'held_out' and no sample tagged 'held_out'",
             "caption_type": "caption_field: 'truth' holds", "taken": "would write pl_r0",
             "nothing_to_resume": "nothing to resume"}[case]
    spec = tmp_path / "spec.yaml"
    if case == "unknown_key":
        values["colour"] = "red"
    elif case == "rounds":
        values["rounds"] = 0
    elif case == "recipe":
        values["train"] = {"epochz": 2}
    elif case == "no_view":
        values["validation"] = "held_out"
    elif case == "caption_type":
        values["caption_field"] = "truth"
    elif case == "taken":
        dataset.clone_sample_field("truth", "pl_r0")
    elif case == "nothing_to_resume":
        extra = ["--resume"]
    spec.write_text("dataset: [unclosed\n" if case == "yaml" else yaml.safe_dump(values))
    before = _state(dataset)
    result = CliRunner().invoke(main, ["pipeline", "run", str(spec), *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.output
    assert _state(dataset) == before
    assert not output.exists()


# -- provenance, the report and undo, on the parse stage alone (no model) ----------------------------------------


def test_parse_only_pipeline_stamps_provenance_reports_and_undoes(tmp_path, shapes, pipeline_spec):
    from fiftyone import ViewField as F

    from fiftyone_ram.driver import runs
    from fiftyone_ram.pipeline import report, run, undo

    dataset, tag_file = shapes(train=8, validation=4)
    dataset.set_values("given", [fo.Classifications(classifications=[fo.Classification(label="circle")])
                                 for _ in range(len(dataset))])
    spec = pipeline_spec(dataset, tag_file, tmp_path / "out", tag_field="given", stages=["parse"], rounds=2)
    result = run(spec, progress=False, messages=lambda text: None)
    assert result.status == "completed" and result.published == 2
    engine = dataset.match_tags("train")
    provenance = engine.count_values("pl_r0.classifications.provenance")
    assert set(provenance) == {"r0:original", "r0:parsed"} and provenance["r0:original"] == 8
    assert engine.values("pl.classifications.label") == engine.values("pl_r0.classifications.label")
    assert dataset.match_tags("validation").count("pl_r0.classifications") == 0  # the validation view stays out
    parsed = engine.filter_labels("pl", F("provenance") == "r0:parsed").count("pl.classifications")
    assert parsed == provenance["r0:parsed"]
    history = engine.values("pl.classifications.provenance_history")
    assert all(h == [p] for row, prow in zip(history, engine.values("pl.classifications.provenance"))
               for h, p in zip(row, prow))

    record = runs.load(dataset, "pipeline", "pl")
    assert record.status == "completed" and record.inputs["fields"][:2] == ["caption", "given"]
    assert record.details["steps"]["r0:parse"]["status"] == "completed"
    assert runs.load(dataset, "generate", "pl_r0").finished  # the stage's own record
    found = report(dataset, "pl")
    assert [row["round"] for row in found["rows"]] == [0, 1, 2]
    assert dict(found["rows"][0]["added_by"]) == {k.split(":")[1]: n for k, n in provenance.items()}
    assert found["rows"][0]["precision"] is not None
    assert Path(found["figure"]).is_file()

    done = undo(dataset, "pl")
    assert done["undone"] == 2 and done["restored_from"] == "pl_r0"
    assert runs.load(dataset, "pipeline", "pl").details["published"] == 1
    assert report(dataset, "pl")["rows"][2]["undone"]
    with pytest.raises(Exception, match="only the last round published can be undone"):
        undo(dataset, "pl", 2)
    with pytest.raises(Exception, match="was undone"):
        run(spec, resume=True, progress=False, messages=lambda text: None)
    # the current tags changed by hand are not replaced by an undo
    first = engine.first()
    first["pl"] = fo.Classifications(classifications=[fo.Classification(label="mine")])
    first.save()
    with pytest.raises(Exception, match="was changed since the pipeline wrote it"):
        undo(dataset, "pl")
    assert engine.first()["pl"].classifications[0].label == "mine"


@pytest.mark.slow
def test_the_review_waits_for_the_reviewer_and_applies_their_marks(tmp_path, shapes, pipeline_spec):
    """With ``review: wait`` the pipeline stops after cleaning; the reviewer marks a flagged tag keep (as the Tag
    review panel does); resumed, the review removes the other flagged tags and the round goes on."""
    from fiftyone_ram.driver import runs
    from fiftyone_ram.engine.review_marks import flagged_rows, mark
    from fiftyone_ram.pipeline import run

    dataset, tag_file = shapes(train=8, validation=4)
    spec = pipeline_spec(dataset, tag_file, tmp_path / "out", rounds=1, review="wait",
                         stages=["parse", "generate", "clean", "review"])
    said: list[str] = []
    result = run(spec, progress=False, messages=said.append)
    assert result.status == "interrupted" and "waiting for the review of round 1" in result.waiting
    assert said[-1] == result.waiting and result.published == 0
    record = runs.load(dataset, "pipeline", "pl")
    assert record.details["steps"]["r1:review"]["waiting"] and "Tag review panel" in record.error
    before = dataset.count("pl_r1.classifications")
    rows = flagged_rows(dataset, "pl_r1_review")
    assert len(rows) >= 2 and dataset.count("pl_r1.classifications") == before
    kept = rows[0]
    mark(dataset, "pl_r1_review", [kept["label_id"]], "keep")

    result = run(spec, resume=True, progress=False, messages=said.append)
    assert result.status == "completed" and result.published == 1
    assert dataset.count("pl_r1.classifications") == before - (len(rows) - 1)
    assert result.rows[1]["removed"] == len(rows) - 1 and result.rows[1]["kept"] == 1
    labels = {label.label: label for label in dataset[kept["sample_id"]]["pl_r1"].classifications}
    assert labels[kept["tag"]]["provenance"] == "r1:kept"
    assert labels[kept["tag"]]["provenance_history"][-1] == "r1:kept"


# -- the synthetic task: two rounds from the tiny checkpoint ------------------------------------------------------


@pytest.mark.slow
def test_two_rounds_raise_the_label_f1_and_the_validation_map(tmp_path, shapes, pipeline_spec, one_thread,
                                                              monkeypatch):
    """Captions that leave out about 30 % of the shapes and name about 10 % that are not there; boxes from a
    detector that misses and confuses a few. The first model learns from the parsed tags, generation adds the
    shapes it sees, cleaning flags tags without a box of their own (or whose crops stand out) and the review
    accepts those removals; each round retrains on the processed tags."""
    from fiftyone import ViewField as F

    from fiftyone_ram.driver import runs
    from fiftyone_ram.pipeline import run
    from fiftyone_ram.pipeline.report import table, traces

    dataset, tag_file = shapes(train=36, validation=18)
    recipe = {"weak_start": True, "batch_size": 6, "teacher": None}
    spec = pipeline_spec(dataset, tag_file, tmp_path / "out", rounds=2, retrain_from="previous",
                     train={**recipe, "epochs": 6}, retrain={**recipe, "epochs": 2},
                     accept_reasons=["no_region", "outlier"])
    import fiftyone_ram.tagger

    loads = []  # (model, for training) of every model loaded
    load_tagger = fiftyone_ram.tagger.load_tagger

    def counted(spec, *args, **options):
        loads.append(("/".join(Path(spec.model).parts[-2:]), "precision" in options))
        return load_tagger(spec, *args, **options)

    monkeypatch.setattr(fiftyone_ram.tagger, "load_tagger", counted)
    result = run(spec, progress=False, messages=lambda text: None)
    rows = {row["round"]: row for row in result.rows}
    shown = table(result.rows)
    print(f"\nseed {SEED}\n{shown}")
    assert result.status == "completed" and sorted(rows) == [0, 1, 2], shown
    assert rows[2]["f1"] >= rows[0]["f1"] + 0.05, shown
    assert rows[2]["mAP"] >= rows[0]["mAP"] + 0.1, shown
    assert rows[1]["added"] > 0 and rows[1]["removed"] > 0, shown

    # every tag says where it came from, and the App filters by it
    engine = dataset.match_tags("train")
    events = set(engine.distinct("pl.classifications.provenance"))
    assert "r0:parsed" in events and events <= {f"r{n}:{e}" for n in range(3) for e in ("parsed", "generated",
                                                                                        "kept")}
    removed = engine.filter_labels("pl_r1_review", F("provenance") == "r1:removed")
    assert removed.count("pl_r1_review.classifications") == rows[1]["removed"]
    # each stage is a recorded run of its own kind, the pipeline's record lists what it wrote
    record = runs.load(dataset, "pipeline", "pl")
    assert all(step["status"] == "completed" for step in record.details["steps"].values())
    for target in ("pl_r1_train", "pl_r1_retrain", "pl_r2_retrain"):
        trained = runs.load(dataset, "finetune", target)
        assert trained.finished and Path(trained.outputs["model_folder"], "model.pth").is_file()
    assert all(runs.load(dataset, kind, f"pl_r{n}").finished for n in (1, 2) for kind in ("generate", "clean"))
    assert {"pl_r0_eval", "pl_r1_eval", "pl_r2_eval"} <= set(dataset.list_evaluations())
    assert set(record.outputs["model_folders"]) == {str(tmp_path / "out" / p) for p in
                                                    ("round1/train", "round1/retrain", "round2/retrain")}
    assert Path(result.figure).read_bytes()[:4] == b"\x89PNG"
    # one load per model for the stages in a row that use it (round N's evaluation, round N+1's generation and
    # cleaning), and one per training
    assert [name for name, training in loads if not training] == [
        "parity/fixtures_tiny.json", "round1/train", "round1/retrain", "round2/retrain"], loads
    assert sum(training for _, training in loads) == 3, loads
    assert {trace["name"] for trace in traces(result.rows)} >= {"label F1", "validation mAP"}


# -- resume anywhere ----------------------------------------------------------------------------------------------

#: The stage killed in each run, in the order they come (round 0's parse, then round 1's stages).
KILLED = ("parse", "train", "generate", "clean", "review", "retrain", "finetune", "evaluate")
#: What the pipeline's fields hold that a resumed run must reproduce (per label).
COMPARED = ("label", "provenance", "provenance_history", "flag_reason", "sources", "tags")

#: A parent of the pipeline runs: it imports what a run imports once, then forks each run from that state, so a run
#: is a real process of its own (its database connection, its files, SIGKILL) without spending 5-7 s of CPU on
#: imports, which the claim does not need. Requests and answers are JSON lines: ``{"argv", "stdout", "stderr"}``
#: starts ``fiftyone-ram ARGV`` (answer: its pid), ``{"poll": pid}`` / ``{"wait": pid}`` give its exit status
#: (None while it runs; minus the signal that killed it). Nothing runs in the parent before a fork: no thread, no
#: database client. One thread per process (OMP_NUM_THREADS): the same float reductions in every run.
_FORKER = r"""
import json, os, signal, sys
for name in sys.argv[1:]:
    __import__(name)
from fiftyone_ram.cli import main
from fiftyone_ram.labels.wordnet import load_wordnet
load_wordnet()  # what every caption parser reads
children, ended = set(), {}

def start(request):
    pid = os.fork()
    if pid:
        children.add(pid)
        return {"pid": pid}
    code = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        main(args=request["argv"], prog_name="fiftyone-ram")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

def status(pid, block):
    if pid not in ended:
        done, raw = os.waitpid(pid, 0 if block else os.WNOHANG)
        if not done:
            return {"status": None}
        ended[pid] = os.waitstatus_to_exitcode(raw)
        children.discard(pid)
    return {"status": ended[pid]}

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if "argv" in request:
        answer = start(request)
    else:
        answer = status(request.get("wait", request.get("poll")), "wait" in request)
    print(json.dumps(answer), flush=True)
for pid in children:  # the test ended (or failed) with runs going: they end with it
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
os._exit(0)  # not the interpreter's teardown of all it imported: seconds, for nothing
"""
#: What the forker imports before it forks: what a pipeline run imports (the rest comes with them).
_PRELOAD = ("fiftyone", "torch", "timm", "transformers", "matplotlib.figure", "matplotlib.backends.backend_agg",
            "fiftyone_ram.cli", "fiftyone_ram.pipeline.run", "fiftyone_ram.pipeline.report",
            "fiftyone_ram.pipeline.provenance", "fiftyone_ram.tagger", "fiftyone_ram.models.ram",
            "fiftyone_ram.fiftyone.model", "fiftyone_ram.driver.tagging", "fiftyone_ram.evaluation.run",
            "fiftyone_ram.training.trainer", "fiftyone_ram.training.validation", "fiftyone_ram.engine.generation",
            "fiftyone_ram.engine.cleaning", "fiftyone_ram.engine.review", "fiftyone_ram.engine.review_marks")


class Runs:
    """Pipeline runs (``fiftyone-ram pipeline run SPEC --json ...``) as processes forked from :data:`_FORKER`."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-c", _FORKER, *_PRELOAD], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.ready = False

    def _ask(self, request: dict | None, timeout: float = 120) -> dict:
        import select

        if request is not None:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if readable else ""
        assert line, f"the forker did not answer {request} (exit {self.process.poll()})"
        return json.loads(line)

    def start(self, spec: Path, *extra: str) -> tuple[int, Path, Path]:
        """Start a run: its pid, and the files its stdout and stderr go to."""
        if not self.ready:
            self.ready = self._ask(None, timeout=300)["ready"]
        self.count += 1
        out, err = self.folder / f"run{self.count}.out", self.folder / f"run{self.count}.err"
        out.touch()
        err.touch()
        argv = ["pipeline", "run", str(spec), "--json", *extra]
        pid = self._ask({"argv": argv, "stdout": str(out), "stderr": str(err)})["pid"]
        return pid, out, err

    def poll(self, pid: int) -> int | None:
        return self._ask({"poll": pid})["status"]

    def wait(self, pid: int, timeout: float = 600) -> int:
        return self._ask({"wait": pid}, timeout=timeout)["status"]

    def finish(self, spec: Path, *extra: str) -> dict:
        """Run to the end: the result the run printed."""
        return self.result(*self.start(spec, *extra))

    def result(self, pid: int, out: Path, err: Path) -> dict:
        code = self.wait(pid)
        assert code == 0, f"exit {code}: {err.read_text()[-3000:]}"
        return json.loads(out.read_text())

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture()
def pipeline_runs(tmp_path):
    """:class:`Runs` (its forker starts importing at once, while the test makes its data)."""
    runs = Runs(tmp_path)
    yield runs
    runs.close()


def _kill_in(runs: Runs, stage: str, spec: Path, output: Path, *extra: str) -> None:
    """Run the pipeline and SIGKILL it while ``stage`` is running: as soon as it says the stage started (after
    recording it as running), or for the first training once it has saved a resumable state."""
    pid, _, err = runs.start(spec, *extra)
    number = 0 if stage == "parse" else 1
    deadline = time.monotonic() + 300
    while not any(line.strip().endswith(f"round {number} {stage}") for line in err.read_text().splitlines()):
        assert runs.poll(pid) is None, f"the pipeline ended before its {stage} stage: {err.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {stage} stage within 300 s: {err.read_text()[-2000:]}"
        time.sleep(0.01)
    if stage == "train":  # killed mid-training: it resumes from the state it saved
        state = output / "round1" / "train" / "resume" / "state.pt"
        while not state.is_file():
            assert runs.poll(pid) is None, f"the training ended without a resumable state: {err.read_text()[-2000:]}"
            time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    assert runs.wait(pid, timeout=60) == -signal.SIGKILL


def _labels(dataset, field: str) -> list:
    rows = []
    for value in dataset.sort_by("filepath").values(field):
        labels = value.classifications if value is not None else []
        rows.append([tuple(str(label[k]) if label.has_field(k) else None for k in COMPARED) for label in labels])
    return rows


def _confidences(dataset, field: str) -> np.ndarray:
    values = dataset.sort_by("filepath").values(f"{field}.classifications.confidence")
    return np.array([np.nan if c is None else c for row in values for c in (row or [])], dtype=float)


@pytest.mark.slow
def test_killed_in_every_stage_and_resumed_it_ends_as_an_uninterrupted_run(pipeline_runs, tmp_path, shapes,
                                                                          pipeline_spec):
    """Each of the eight stages is killed once (SIGKILL, in a process of its own) and the next run resumes it;
    the uninterrupted run goes on meanwhile, in a process of its own too."""
    import torch
    import yaml

    from fiftyone_ram.driver import runs

    interrupted, tag_file = shapes(train=8, validation=4)
    interrupted.match_tags("train").limit(4).tag_samples("verified")
    uninterrupted = interrupted.clone()
    recipe = {"weak_start": True, "batch_size": 4, "teacher": None, "checkpoint_every": 1}
    specs = {}
    for name, dataset in (("a", uninterrupted), ("b", interrupted)):
        spec = pipeline_spec(dataset, tag_file, tmp_path / f"out_{name}", rounds=1, finetune_view="verified",
                             parser_tags=str(tag_file), train={**recipe, "epochs": 2},
                             retrain={**recipe, "epochs": 1}, finetune={**recipe, "epochs": 1})
        specs[name] = tmp_path / f"spec_{name}.yaml"
        specs[name].write_text(yaml.safe_dump(spec))
    reference = pipeline_runs.start(specs["a"])

    for number, stage in enumerate(KILLED):
        _kill_in(pipeline_runs, stage, specs["b"], tmp_path / "out_b", *(["--resume"] if number else []))
        interrupted.reload()
        record = runs.load(interrupted, "pipeline", "pl")
        step = record.details["steps"][f"r{0 if stage == 'parse' else 1}:{stage}"]
        assert record.status == "running" and step["status"] == "running", (stage, record.details)
    assert pipeline_runs.finish(specs["b"], "--resume")["status"] == "completed"
    done = pipeline_runs.result(*reference)
    assert done["status"] == "completed" and done["rows"][1]["removed"] > 0, done
    for dataset in (interrupted, uninterrupted):
        dataset.reload()

    fields = ["pl", "pl_r0", "pl_r1", "pl_r1_review", "pl_r1_cleaned", "pl_r0_val", "pl_r1_val"]
    for field in fields:
        assert _labels(interrupted, field) == _labels(uninterrupted, field), field
        np.testing.assert_allclose(_confidences(interrupted, field), _confidences(uninterrupted, field), atol=1e-5)
    for stage in ("train", "retrain", "finetune"):
        a, b = tmp_path / "out_a" / "round1" / stage, tmp_path / "out_b" / "round1" / stage
        assert (a / "tag_list.txt").read_text() == (b / "tag_list.txt").read_text()
        np.testing.assert_allclose(np.loadtxt(b / "thresholds.txt"), np.loadtxt(a / "thresholds.txt"), atol=1e-5)
        weights_a = torch.load(a / "model.pth", map_location="cpu", weights_only=True)["model"]
        weights_b = torch.load(b / "model.pth", map_location="cpu", weights_only=True)["model"]
        assert weights_a.keys() == weights_b.keys()
        for key in weights_a:  # torch.allclose first: assert_close on each of the tensors takes seconds
            got, want = weights_b[key], weights_a[key]
            if got.shape != want.shape or not torch.allclose(got, want, atol=1e-6, rtol=1e-5):
                torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5, msg=f"{stage} {key}")
    for key in ("pl_r0_eval", "pl_r1_eval"):
        a = uninterrupted.load_evaluation_results(key).summary
        b = interrupted.load_evaluation_results(key).summary
        assert a.keys() == b.keys(), key
        for name, value in a.items():
            if isinstance(value, float):
                assert np.isclose(b[name], value, atol=1e-6, equal_nan=True), (key, name)
            else:
                assert b[name] == value, (key, name)


# -- the doors that run it elsewhere: a scheduled operator, torchrun -----------------------------------------------


def test_run_pipeline_is_registered_and_delegated_only():
    import fiftyone.operators as foo
    from fiftyone.operators.registry import OperatorRegistry

    assert foo.operator_exists(RUN_PIPELINE)
    assert not [e for e in OperatorRegistry().list_errors() if "pipeline" in str(e)]
    operator = foo.get_operator(RUN_PIPELINE)
    assert operator.config.allow_delegated_execution and not operator.config.allow_immediate_execution


def test_a_scheduled_run_of_the_operator_runs_and_records_the_pipeline(tmp_path, shapes, upstream_dir):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    from fiftyone_ram.driver import runs

    dataset, _ = shapes(train=6, validation=3)
    params = {"output_dir": str(tmp_path / "out"), "prefix": "op", "caption_field": "caption",
              "reference_field": "truth", "validation": "validation", "rounds": 1, "stages": ["parse"],
              "parser_tags": str(upstream_dir / "ram_tag_list.txt")}
    queued = foo.execute_operator(RUN_PIPELINE, ctx={"dataset": dataset, "params": params, "request_delegation": True})
    assert queued.delegated
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=dataset.name, limit=1)
    done = service.get(queued.result["id"])
    assert done.run_state == "completed", done.result
    assert done.result.result["status"] == "completed" and done.result.result["published"] == 1
    dataset.reload()
    assert runs.load(dataset, "pipeline", "op").finished
    assert dataset.match_tags("train").count("op_r0.classifications") > 0


@pytest.mark.slow
def test_a_training_stage_runs_under_torchrun(tmp_path, shapes, pipeline_spec):
    from fiftyone_ram import load_tagger
    from fiftyone_ram.driver import runs
    from fiftyone_ram.pipeline import run

    dataset, tag_file = shapes(train=8, validation=4)
    spec = pipeline_spec(dataset, tag_file, tmp_path / "out", rounds=1, stages=["parse", "train"],
                     train={"weak_start": True, "epochs": 1, "batch_size": 2, "teacher": None, "processes": 2})
    said: list[str] = []
    result = run(spec, progress=False, messages=said.append)
    assert result.status == "completed", said
    folder = tmp_path / "out" / "round1" / "train"
    start = json.loads((folder / "log.jsonl").read_text().splitlines()[0])
    assert start["type"] == "start" and start["world"] == 2
    assert runs.load(dataset, "finetune", "pl_r1_train").finished
    assert load_tagger(folder, device="cpu").tag_list == ["circle", "square", "triangle"]
