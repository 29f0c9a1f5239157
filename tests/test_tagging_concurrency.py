"""Runs at once on one dataset (issue 11, case 1), with real processes: every path is in the dataset once,
every sample is tagged by exactly one run, nobody crashes; a killed run's claims are taken over."""

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


@pytest.fixture()
def start(tiny_cli_args, vocabulary_file):
    """``start(folder, dataset, *flags)``: a ``fiftyone-ram tag`` process, one torch thread (two processes
    share two cores)."""
    processes = []
    fo.list_datasets()  # this process's database connection first: two processes would each start a server

    def run(folder, dataset_name: str, *flags: str) -> subprocess.Popen:
        args = [sys.executable, "-m", "fiftyone_ram.cli", "tag", str(folder), "--dataset", dataset_name,
                *tiny_cli_args("ram"), "--tags", str(vocabulary_file), "--field", "ram", "--device", "cpu",
                "--num-workers", "0", "--batch-size", "4", "--json", *flags]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        processes.append(process)
        return process

    yield run
    for process in processes:
        if process.poll() is None:
            process.kill()


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert "Traceback" not in err, err
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _claims_left(dataset) -> int:
    import fiftyone.core.odm as foo

    return foo.get_db_conn()["fiftyone_ram.claims"].count_documents(
        {"scope": {"$regex": f"^{dataset._doc.id}:"}})


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


@pytest.mark.parametrize("flags", [("--resume", "--resume"), ((), "--resume")], ids=["resume+resume", "fresh+resume"])
def test_two_runs_creating_the_same_dataset(flags, many_images, start, tmp_path):
    name = f"concurrent-{tmp_path.name}"
    first, second = ([f] if isinstance(f, str) else list(f) for f in flags)
    runs = [start(many_images, name, *first), start(many_images, name, *second)]
    summaries = [_finish(run) for run in runs]
    _check_exactly_once(fo.load_dataset(name), summaries)
    fo.load_dataset(name).delete()


def test_two_resumes_on_a_growing_dataset_with_a_python_run(many_images, start, tmp_path, tiny_model_settings,
                                                              vocabulary_file):
    """Half the files tagged already, the other half new: a CLI run and a Python script (add_images then
    tag_samples) at once, as in the issue (every new path was added twice)."""
    import fiftyone_ram.fiftyone as forf
    import fiftyone_ram.driver as frd
    from fiftyone_ram.driver.datasets import add_images

    name = f"growing-{tmp_path.name}"
    files = sorted(many_images.iterdir())
    dataset = add_images(name, files[: N_FILES // 2])
    model = forf.load_model(**tiny_model_settings(), device="cpu", tags=list(VOCABULARY))
    frd.tag_samples(dataset, model, "ram", batch_size=4, num_workers=0)
    script = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "import fiftyone_ram.fiftyone as forf\n"
        "import fiftyone_ram.driver as frd\n"
        "from fiftyone_ram.driver.datasets import add_images\n"
        f"settings = json.loads({json.dumps(json.dumps(tiny_model_settings()))})\n"
        f"dataset = add_images({name!r}, sorted(__import__('pathlib').Path({str(many_images)!r}).iterdir()))\n"
        f"model = forf.load_model(**settings, device='cpu', tags={list(VOCABULARY)!r})\n"
        "summary = frd.tag_samples(dataset, model, 'ram', resume=True, batch_size=4, num_workers=0)\n"
        "print(json.dumps(summary.to_dict()))\n")
    python_run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    cli_run = start(many_images, name, "--resume")
    summaries = [_finish(cli_run), _finish(python_run)]
    _check_exactly_once(dataset, summaries, before=N_FILES // 2)
    dataset.delete()


def test_a_killed_run_is_taken_over_by_the_next_resume(many_images, start, tmp_path):
    name = f"killed-{tmp_path.name}"
    victim = start(many_images, name)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:  # kill it once it has saved some labels
        if fo.dataset_exists(name):
            dataset = fo.load_dataset(name)
            dataset.reload()  # the schema too: the run adds its field
            if "ram" in dataset.get_field_schema() and dataset.count("ram") >= 8:
                break
        time.sleep(0.1)
    assert victim.poll() is None, victim.communicate()[1]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    dataset = fo.load_dataset(name)
    dataset.reload()
    before = dataset.count("ram")
    assert 0 < before < N_FILES, "the run was killed too late to test a takeover"
    from fiftyone_ram.driver import runs

    assert runs.load(dataset, "tag", "ram").status == "running"  # it never recorded its end
    summary = _finish(start(many_images, name, "--resume"))  # the dead process's claims: taken at once
    assert summary["tagged"] == N_FILES - before and summary["skipped"] == before and summary["elsewhere"] == 0
    _check_exactly_once(dataset, [summary], before=before)
    dataset.delete()


def test_adding_the_same_files_at_once_adds_each_once_every_time(many_images, tmp_path):
    """Two processes add the same 300 files to the same new dataset at the same instant, five times over (the
    issue's race: each read the paths, then added what it had not seen; or both created the dataset)."""
    rounds = 5
    names = [f"race-{tmp_path.name}-{i}" for i in range(rounds)]
    start_at = time.time() + 15  # both processes are up by then; each round starts at the same instant
    script = (
        "import json, sys, time\n"
        "from fiftyone_ram.driver.datasets import add_images\n"
        f"files = sorted(__import__('pathlib').Path({str(many_images)!r}).iterdir())\n"
        f"for i, name in enumerate({names!r}):\n"
        f"    time.sleep(max(0.0, {start_at!r} + 2 * i - time.time()))\n"
        "    add_images(name, files)\n"
        "print('done')\n")
    fo.list_datasets()  # this process's database connection first (see ``start``)
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0 and out.strip() == "done" and "Traceback" not in err, err
    for name in names:
        paths = fo.load_dataset(name).values("filepath")
        assert len(paths) == len(set(paths)) == N_FILES, name
        fo.load_dataset(name).delete()
