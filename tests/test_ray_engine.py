"""The Ray engine (issue 14) on a real local cluster (two CPUs, shared by the module's tests): the same labels
as the local engine; a driver killed midway and resumed tags every sample exactly once; a model worker
killed midway is replaced and its batch retried."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray[data] (pip install '.[ray]')")
fo = pytest.importorskip("fiftyone")

N_IMAGES = 30


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (starting one costs seconds); its address for other drivers."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


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


def _summary(result) -> dict:
    """The run's JSON summary: the last JSON line (Ray's worker log lines may follow it in the output)."""
    lines = [line for line in result.output.splitlines() if line.startswith('{"dataset"')]
    assert lines, result.output
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


def test_cli_ray_engine_gives_the_local_labels(cluster, images, local_labels, tiny_cli_args, assert_same_tags,
                                               upstream_dir):
    name = f"ray-cli-{os.getpid()}"
    result = _tag(tiny_cli_args, images, name, "--executor", "ray", "--workers", "2")
    assert result.exit_code == 1, result.output
    summary = _summary(result)
    assert summary["tagged"] == N_IMAGES and list(summary["failed"]) == [str(images / "broken.png")]
    assert "cannot read image" in summary["failed"][str(images / "broken.png")]
    dataset = fo.load_dataset(name)
    assert dataset.exists("ram_error").values("filepath") == [str(images / "broken.png")]
    _assert_like_local(dataset, local_labels, assert_same_tags, upstream_dir)
    dataset.delete()


def _labelled(dataset) -> int:
    dataset.reload()
    return dataset.exists("ram").count() if "ram" in dataset.get_field_schema() else 0


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_driver_killed_midway_then_resumed_tags_every_sample_once(cluster, images, local_labels, tiny_cli_args,
                                                                  assert_same_tags, upstream_dir):
    name = f"ray-kill-{os.getpid()}"
    fo.list_datasets()  # this process's database connection first: two processes would each start a server
    args = [sys.executable, "-m", "fiftyone_ram.cli", "tag", str(images), "--dataset", name,
            *tiny_cli_args("ram"), "--field", "ram", "--device", "cpu", "--batch-size", "1", "--json",
            "--executor", "ray", "--workers", "2", "--ray-address", cluster]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def some_tagged() -> bool:
            assert process.poll() is None, process.communicate()
            return name in fo.list_datasets() and _labelled(fo.load_dataset(name)) > 0

        _wait_until(some_tagged, 240, "the first labels")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    dataset = fo.load_dataset(name)
    first = dict(zip(*dataset.exists("ram").values(["filepath", "ram"])))
    assert 0 < len(first) < N_IMAGES, "the run was to be killed midway"

    result = _tag(tiny_cli_args, images, name, "--executor", "ray", "--workers", "2", "--resume")
    summary = _summary(result)
    dataset.reload()
    assert summary["skipped"] == len(first) and summary["tagged"] == N_IMAGES - len(first), summary
    kept = dict(zip(*dataset.select_by("filepath", list(first)).values(["filepath", "ram"])))
    assert {p: [c.id for c in labels.classifications] for p, labels in kept.items()} == {
        p: [c.id for c in labels.classifications] for p, labels in first.items()}  # not tagged twice
    _assert_like_local(dataset, local_labels, assert_same_tags, upstream_dir)
    dataset.delete()


def _model_actor_pids() -> set[int]:
    """The live model actors' processes, from the cluster's actor table (``ray.util.state`` would need the
    dashboard, which the test cluster does not start)."""
    from ray._private import state

    return {a["Pid"] for a in state.actors().values()
            if "_ModelActor" in a["ActorClassName"] and a["State"] == "ALIVE" and a["Pid"]}


def _restarted_model_actors() -> set[str]:
    """The model actors Ray has restarted (a replacement process under the same actor id)."""
    from ray._private import state

    return {a["ActorID"] for a in state.actors().values()
            if "_ModelActor" in a["ActorClassName"] and a.get("NumRestarts", 0) > 0}


def test_a_worker_killed_midway_is_replaced_and_its_batch_retried(cluster, images, local_labels, tiny_model_settings,
                                                                 assert_same_tags, upstream_dir):
    from fiftyone_ram.fiftyone import load_model
    from fiftyone_ram.driver import tag_samples

    dataset = fo.Dataset(f"ray-worker-{os.getpid()}")
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in sorted(images.iterdir())])
    model = load_model(**tiny_model_settings("ram", device="cpu"))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["summary"] = tag_samples(dataset, model, "ram", batch_size=1, executor="ray", workers=2)
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    _wait_until(lambda: _labelled(dataset) > 0 or not thread.is_alive(), 240, "the first labels")
    pids = _model_actor_pids()
    assert pids and _labelled(dataset) < N_IMAGES, "the worker was to be killed midway"
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    seen, restarted = set(pids), set()
    deadline = time.monotonic() + 300
    while thread.is_alive() and time.monotonic() < deadline:
        seen |= _model_actor_pids()
        restarted |= _restarted_model_actors()
        thread.join(0.2)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    restarted |= _restarted_model_actors()
    assert seen - pids or restarted, "no new model worker replaced the killed one"
    summary = outcome["summary"]
    assert summary.tagged == N_IMAGES and summary.untagged == 0 and len(summary.failed) == 1, str(summary)
    _assert_like_local(dataset, local_labels, assert_same_tags, upstream_dir)
    dataset.delete()
