"""Runs at once on one dataset (issue 11, case 1), with real processes: every path is in the dataset once,
every sample is tagged by exactly one run, nobody crashes; a killed run's claims are taken over.

Each race is this process against one child process (the installed command, or a script), not two children:
a process start (FiftyOne, torch, timm, transformers) costs more than the work. This process runs the same
command through click (``fiftyone-ram tag`` is :data:`fiftyone_ram.cli.main`) or the same Python functions,
and starts once the child holds the dataset's lock, so that the two runs overlap for certain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")
# real processes racing: slow; one torch thread here (this process and the child share two cores)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

N_FILES = 300
VOCABULARY = ("dog", "cat", "car")  # a three-tag vocabulary keeps the tiny model's head cheap


@pytest.fixture(scope="module")
def many_images(tmp_path_factory, parity_pngs):
    """300 distinct small PNGs (shifted crops of the fixture images)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("many")
    sources = [np.asarray(Image.open(p).convert("RGB").resize((48, 48))) for p in parity_pngs]
    for i in range(N_FILES):
        pixels = np.roll(sources[i % len(sources)], shift=i, axis=1)[:32, :32]
        Image.fromarray(np.ascontiguousarray(pixels)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def vocabulary_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "tags.txt"
    path.write_text("\n".join(VOCABULARY) + "\n")
    return path


@pytest.fixture(scope="module")
def imported():
    """What this process's runs import, imported before any race: a run here must start at once."""
    import fiftyone_ram.cli
    import fiftyone_ram.driver.tagging
    import fiftyone_ram.fiftyone
    import fiftyone_ram.tagger


@pytest.fixture()
def tag_args(tiny_cli_args, vocabulary_file, imported):
    """``tag_args(folder, dataset, *flags)``: the arguments of ``fiftyone-ram tag`` into ``dataset``."""

    def args(folder, dataset_name: str, *flags: str) -> list[str]:
        return ["tag", str(folder), "--dataset", dataset_name, *tiny_cli_args("ram"), "--tags", str(vocabulary_file),
                "--field", "ram", "--device", "cpu", "--num-workers", "0", "--batch-size", "4", "--json", *flags]

    return args


@pytest.fixture()
def start(tag_args):
    """``start(folder, dataset, *flags)``: a ``fiftyone-ram tag`` process, one torch thread; killed after the
    test if it is still running."""
    processes = []
    fo.list_datasets()  # this process's database connection first: two processes would each start a server

    def run(folder, dataset_name: str, *flags: str) -> subprocess.Popen:
        args = [sys.executable, "-m", "fiftyone_ram.cli", *tag_args(folder, dataset_name, *flags)]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        processes.append(process)
        return process

    yield run
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)


def _tag_here(args: list[str]) -> dict:
    """``fiftyone-ram tag`` run by click in this process; its summary."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert "Traceback" not in err, err
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _claims():
    import fiftyone.core.odm as foo

    from fiftyone_ram.driver.claims import COLLECTION

    return foo.get_db_conn()[COLLECTION]


def _wait_for_the_lock(name: str, process: subprocess.Popen) -> None:
    """Until ``process`` holds (or has held) the lock of dataset ``name``: it is adding its files or planning
    its run, and tags right after."""
    deadline = time.monotonic() + 300
    while _claims().find_one({"_id": f"lock:{name}"}) is None and not fo.dataset_exists(name):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the other run never took the dataset's lock"
        time.sleep(0.02)


def _held_by(process: subprocess.Popen) -> bool:
    """Whether ``process`` holds sample claims (it claims a window of samples, then tags it)."""
    return _claims().count_documents({"state": "claimed", "pid": process.pid}) > 0


def _claims_left(dataset) -> int:
    return _claims().count_documents({"scope": {"$regex": f"^{dataset._doc.id}:"}})


def _check_exactly_once(dataset, summaries: list[dict], before: int = 0) -> None:
    dataset.reload()
    paths = dataset.values("filepath")
    assert len(paths) == len(set(paths)) == N_FILES  # every path once
    assert dataset.count("ram") == N_FILES  # every sample tagged
    assert sum(s["tagged"] for s in summaries) == N_FILES - before  # ... by exactly one of the runs
    for summary in summaries:
        assert summary["tagged"] + summary["skipped"] + summary["elsewhere"] == N_FILES
        assert not summary["failed"] and not summary["untagged"]
    from fiftyone_ram.driver import runs

    assert runs.load(dataset, "tag", "ram").status == "completed"
    assert _claims_left(dataset) == 0


def test_two_runs_creating_the_same_dataset(many_images, start, tag_args, tmp_path):
    """Two ``fiftyone-ram tag --dataset`` of the same files at once, the dataset new: the child starts a new run
    (with ``--resume``: nothing to resume yet); this process runs the command without it as soon as the child
    holds the dataset's lock: it waits for the lock, adds nothing, and a fresh run joins the child's run of the
    same settings. (A resume joining a run going on: the next test; a fresh run creating the dataset: the
    killed run below.)"""
    name = f"concurrent-{tmp_path.name}"
    child = start(many_images, name, "--resume")
    _wait_for_the_lock(name, child)
    here = _tag_here(tag_args(many_images, name))
    summaries = [_finish(child), here]
    assert here["tagged"] + here["elsewhere"] > 0, summaries  # it joined the child's run, not a finished one
    _check_exactly_once(fo.load_dataset(name), summaries)
    fo.load_dataset(name).delete()


def test_two_resumes_on_a_growing_dataset_with_a_python_run(many_images, start, tmp_path, tiny_model_settings):
    """Half the files tagged already, the other half new: a CLI run and a Python script (add_images then
    tag_samples, here in this process) at once, as in the issue (every new path was added twice)."""
    import fiftyone_ram.driver as frd
    import fiftyone_ram.fiftyone as forf
    from fiftyone_ram.driver.datasets import add_images

    name = f"growing-{tmp_path.name}"
    files = sorted(many_images.iterdir())
    dataset = add_images(name, files[: N_FILES // 2])
    model = forf.load_model(**tiny_model_settings(), device="cpu", tags=list(VOCABULARY))
    frd.tag_samples(dataset, model, "ram", batch_size=4, num_workers=0)
    cli_run = start(many_images, name, "--resume")
    _wait_for_the_lock(name, cli_run)
    grown = add_images(name, files)
    python_run = frd.tag_samples(grown, model, "ram", resume=True, batch_size=4, num_workers=0).to_dict()
    summaries = [_finish(cli_run), python_run]
    assert python_run["tagged"] + python_run["elsewhere"] > 0, summaries  # the two overlapped
    _check_exactly_once(dataset, summaries, before=N_FILES // 2)
    dataset.delete()


def test_a_killed_run_is_taken_over_by_the_next_resume(many_images, start, tag_args, tmp_path):
    name = f"killed-{tmp_path.name}"
    victim = start(many_images, name)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:  # kill it once it has saved some labels
        if fo.dataset_exists(name):
            dataset = fo.load_dataset(name)
            dataset.reload()  # the schema too: the run adds its field
            if "ram" in dataset.get_field_schema() and dataset.count("ram") >= 8 and _held_by(victim):
                break
        time.sleep(0.05)
    assert victim.poll() is None, victim.communicate()[1]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    dataset = fo.load_dataset(name)
    dataset.reload()
    before = dataset.count("ram")
    assert 0 < before < N_FILES, "the run was killed too late to test a takeover"
    from fiftyone_ram.driver import runs

    assert runs.load(dataset, "tag", "ram").status == "running"  # it never recorded its end
    assert _held_by(victim)  # it died holding claims
    summary = _tag_here(tag_args(many_images, name, "--resume"))  # the dead process's claims: taken at once
    assert summary["tagged"] == N_FILES - before and summary["skipped"] == before and summary["elsewhere"] == 0
    _check_exactly_once(dataset, [summary], before=before)
    dataset.delete()


#: A process that adds the files to each named dataset when told to: it says ``ready <i>``, then reads the
#: instant (``time.time()``) at which to start round ``i``.
ADDER = """
import sys, time
from pathlib import Path
from fiftyone_ram.driver import claims
from fiftyone_ram.driver.datasets import add_images
claims.connect()  # connected before the first round, as this process is
files = sorted(Path(sys.argv[1]).iterdir())
for i, name in enumerate(sys.argv[2:]):
    print(f"ready {i}", flush=True)
    at = float(sys.stdin.readline())
    time.sleep(max(0.0, at - time.time()))
    add_images(name, files)
print("done", flush=True)
"""


def test_adding_the_same_files_at_once_adds_each_once_every_time(many_images, tmp_path):
    """This process and another add the same 300 files to the same new dataset at the same instant, five
    times over (the issue's race: each read the paths, then added what it had not seen; or both created the
    dataset)."""
    from fiftyone_ram.driver.datasets import add_images

    names = [f"race-{tmp_path.name}-{i}" for i in range(5)]
    files = sorted(many_images.iterdir())
    fo.list_datasets()  # this process's database connection first (see ``start``)
    other = subprocess.Popen([sys.executable, "-c", ADDER, str(many_images), *names], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for i, name in enumerate(names):
            line = other.stdout.readline()
            assert line.strip() == f"ready {i}", (line, other.poll())
            at = time.time() + 0.05
            other.stdin.write(f"{at!r}\n")
            other.stdin.flush()
            time.sleep(max(0.0, at - time.time()))
            add_images(name, files)
        out, err = other.communicate(timeout=600)
    finally:
        if other.poll() is None:
            other.kill()
    assert other.returncode == 0 and out.strip() == "done" and "Traceback" not in err, err
    for name in names:
        paths = fo.load_dataset(name).values("filepath")
        assert len(paths) == len(set(paths)) == N_FILES, name
        fo.load_dataset(name).delete()
