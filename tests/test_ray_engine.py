"""The Ray engine (issue 14) on real local clusters: a CLI run that starts its own local cluster, killed
midway, leaves none of that cluster's processes behind (issue 26, case 10); its resume joins the tests' cluster
(``ray_cluster``) by address, outlives its model worker killed midway (Ray replaces it and retries the batch)
and tags every sample exactly once with the local engine's labels."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray[data] (pip install '.[ray]')")
fo = pytest.importorskip("fiftyone")
pytestmark = pytest.mark.ray

N_IMAGES = 30


@pytest.fixture(scope="module")
def images(tmp_path_factory, parity_pngs):
    """30 images (the five fixture PNGs, six copies each under distinct names) and one unreadable file."""
    folder = tmp_path_factory.mktemp("ray-images")
    for i in range(N_IMAGES):
        shutil.copyfile(parity_pngs[i % len(parity_pngs)], folder / f"{i:02d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def _tag(tiny_cli_args, folder, name: str, *extra: str):
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    args = ["tag", str(folder), "--dataset", name, *tiny_cli_args("ram"), "--field", "ram", "--device", "cpu",
            "--num-workers", "0", "--batch-size", "4", "--json", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _summary(output: str) -> dict:
    """The run's JSON summary: the last JSON line (Ray's worker log lines may follow it in the output)."""
    lines = [line for line in output.splitlines() if line.startswith('{"dataset"')]
    assert lines, output[-3000:]
    return json.loads(lines[-1])


def _labels(dataset) -> dict[str, list[tuple[str, float]]]:
    paths, labels = dataset.values(["filepath", "ram"])
    return {path: [(c.label, c.confidence) for c in label.classifications] if label is not None else None
            for path, label in zip(paths, labels, strict=True)}


@pytest.fixture(scope="module")
def local_labels(images, tiny_cli_args) -> dict[str, list[tuple[str, float]]]:
    """What the local engine writes for the folder: the reference of every test here."""
    name = f"ray-local-{os.getpid()}"
    result = _tag(tiny_cli_args, images, name)
    assert result.exit_code == 1, result.output  # broken.png: recorded, not fatal
    dataset = fo.load_dataset(name)
    labels = _labels(dataset)
    dataset.delete()
    return labels


def _assert_like_local(dataset, local_labels, assert_same_tags, upstream_dir) -> None:
    from fiftyone_ram.tag_files import read_tag_list, read_thresholds

    names = read_tag_list(upstream_dir / "ram_tag_list.txt")
    limits = read_thresholds(upstream_dir / "ram_tag_list_threshold.txt", len(names))
    got = _labels(dataset)
    assert sorted(got) == sorted(local_labels)
    tagged = sorted(path for path, labels in local_labels.items() if labels is not None)
    assert len(tagged) == N_IMAGES and all(got[path] is not None for path in tagged)
    assert_same_tags([got[p] for p in tagged], [local_labels[p] for p in tagged], thresholds=limits, names=names)


def _labelled(dataset) -> int:
    dataset.reload()
    return dataset.exists("ram").count() if "ram" in dataset.get_field_schema() else 0


def _wait_until(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.2 s (a look at the database each time: polling faster costs the runs CPU; a
    run of 30 batches of one image takes seconds after its first labels)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


#: The agents of a local cluster's raylet: the processes Ray itself leaves behind when its driver is killed.
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _ray_descendants(pid: int) -> list:
    import psutil

    from fiftyone_ram.driver.ray_cleanup import _is_ray

    return [p for p in psutil.Process(pid).children(recursive=True) if _is_ray(p)]


def _start_cli(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """The command as its own process, its output to ``log`` and its errors (Ray's log lines among them) to
    ``log.err``: files, not pipes, which nobody would read while it runs."""
    with log.open("w") as out, log.with_suffix(".err").open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "fiftyone_ram.cli", *args], stdout=out, stderr=err,
                                env=env)


def _tail(log: Path) -> str:
    return f"{log.read_text()[-1000:]}\n{log.with_suffix('.err').read_text()[-3000:]}"


def _model_actors(job: str | None = None) -> list[dict]:
    """The model actors of the tests' cluster that drivers other than this process started (``job``: of that
    job only), from the cluster's actor table (``ray.util.state`` would need the dashboard, which the test
    cluster does not start)."""
    from ray._private import state

    here = ray.get_runtime_context().get_job_id()
    return [a for a in state.actors().values() if "_ModelActor" in a["ActorClassName"] and a["JobID"] != here
            and (job is None or a["JobID"] == job)]


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_process_behind_and_its_resume_outlives_a_killed_worker_tagging_each_sample_once(
        ray_cluster, images, local_labels, tiny_cli_args, assert_same_tags, upstream_dir, tmp_path):
    """Three kills, each midway, in one tagging (so the runs they interrupt are paid once):

    - the driver of a run that started its own local cluster (``--executor ray`` and no address, as a user
      on one machine runs it): none of that cluster's processes outlive it;
    - the resume joins the tests' cluster by address (as users on a cluster do); its one model worker is
      killed: Ray replaces it and retries its batch;
    - the resume tags exactly what the first run left, each sample once, with the local engine's labels, and
      records the unreadable file."""
    import psutil

    name = f"ray-kill-{os.getpid()}"
    fo.list_datasets()  # this process's database connection first: two processes would each start a server
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    args = ["tag", str(images), "--dataset", name, *tiny_cli_args("ram"), "--field", "ram", "--device", "cpu",
            "--batch-size", "1", "--json", "--executor", "ray", "--workers", "1"]
    log = tmp_path / "killed-run.log"
    process = _start_cli(args, log, env)
    try:
        def tagging_on_its_own_cluster() -> bool:
            assert process.poll() is None, _tail(log)
            return (name in fo.list_datasets() and _labelled(fo.load_dataset(name)) > 0
                    and any(p.name() in AGENTS for p in _ray_descendants(process.pid)))

        _wait_until(tagging_on_its_own_cluster, 240, "the first labels")
        own_cluster = _ray_descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    dataset = fo.load_dataset(name)
    first = dict(zip(*dataset.exists("ram").values(["filepath", "ram"])))
    assert 0 < len(first) < N_IMAGES, "the run was to be killed midway"

    # The resume, while the killed run's cluster goes.
    log = tmp_path / "resume.log"
    resume = _start_cli([*args, "--ray-address", ray_cluster, "--resume"], log, env)
    try:
        def resumed_some() -> bool:
            assert resume.poll() is None, _tail(log)
            return _labelled(dataset) > len(first)

        _wait_until(resumed_some, 240, "the resume's first labels")
        workers = [a for a in _model_actors() if a["State"] == "ALIVE" and a["Pid"]]
        assert len(workers) == 1 and _labelled(dataset) < N_IMAGES, "the worker was to be killed midway"
        job, victim = workers[0]["JobID"], workers[0]["Pid"]
        os.kill(victim, signal.SIGKILL)
        seen = set()
        deadline = time.monotonic() + 300
        while resume.poll() is None and time.monotonic() < deadline:
            seen |= {a["Pid"] for a in _model_actors(job) if a["State"] == "ALIVE" and a["Pid"]}
            time.sleep(0.2)
        assert resume.poll() is not None, "the resume did not end"
    finally:
        if resume.poll() is None:
            resume.kill()
            resume.wait(30)
    assert resume.returncode == 1, (resume.returncode, _tail(log))  # broken.png: recorded, not fatal
    restarted = [a for a in _model_actors(job) if a.get("NumRestarts", 0) > 0]
    assert seen - {victim} or restarted, "no new model worker replaced the killed one"
    summary = _summary(log.read_text())
    broken = str(images / "broken.png")
    assert summary["skipped"] == len(first) and summary["tagged"] == N_IMAGES - len(first), summary
    assert list(summary["failed"]) == [broken] and "cannot read image" in summary["failed"][broken], summary
    dataset.reload()
    assert dataset.exists("ram_error").values("filepath") == [broken]
    kept = dict(zip(*dataset.select_by("filepath", list(first)).values(["filepath", "ram"])))
    assert {p: [c.id for c in labels.classifications] for p, labels in kept.items()} == {
        p: [c.id for c in labels.classifications] for p, labels in first.items()}  # not tagged twice
    _assert_like_local(dataset, local_labels, assert_same_tags, upstream_dir)
    dataset.delete()

    _, alive = psutil.wait_procs(own_cluster, timeout=60)  # stopped while the resume ran, by now
    assert not alive, [f"{p.pid} {p.name()}" for p in alive]
