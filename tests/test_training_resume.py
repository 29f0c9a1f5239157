"""Fine-tuning in real processes: a run killed (SIGKILL) mid-epoch and resumed ends with the weights of an
uninterrupted run (CPU, fp32, fixed seed), and two processes under torchrun (gloo) train one model that
loads. Only what must be a process is one (the run that is killed, the ranks): the others run the same
command through click in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

fo = pytest.importorskip("fiftyone")
pytestmark = pytest.mark.slow  # fine-tuning in real processes

TEMPLATES = ("a photo of {article} {}.", "itap of my {}.")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, shapes_dataset):
    """Persistent: other processes read it."""
    dataset, tag_file = shapes_dataset(tmp_path_factory.mktemp("shapes"), train=8, validation=0)
    dataset.persistent = True
    yield dataset, tag_file
    dataset.delete()


@pytest.fixture(scope="module")
def command(shapes, tmp_path_factory, tiny_cli_args, tiny_clip_text_dir, repo_root):
    dataset, tag_file = shapes
    templates = tmp_path_factory.mktemp("templates") / "templates.txt"
    templates.write_text("\n".join(TEMPLATES) + "\n")

    def args(output: Path, *extra: str) -> list[str]:
        return ["finetune", dataset.name, "--output", str(output), *tiny_cli_args("ram"), "--tags", str(tag_file),
                "--text-encoder", str(tiny_clip_text_dir(0)), "--templates", str(templates), "--tag-field", "gt",
                "--no-teacher", "--epochs", "3", "--batch-size", "4", "--lr", "1e-5", "--checkpoint-every", "1",
                "--device", "cpu", "--json", *extra]

    return args


def _env(repo_root: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))
    # one thread in every process: the same float reductions in each run
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(repo_root: Path, args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fiftyone_ram.cli", *args], env=_env(repo_root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pth", map_location="cpu", weights_only=True)["model"]


def _finetune_here(args: list[str]):
    """``fiftyone-ram finetune`` run by click in this process (one torch thread, as in the processes)."""
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _kill_mid_epoch(process: subprocess.Popen, state_file: Path, outcome: dict) -> None:
    """SIGKILL ``process`` once its resumable state is at step 3 or later (the second epoch, 2 steps an epoch; on
    a loaded machine the state may be read first at step 5, in the third).
    The state is read again only when its file changed."""
    deadline = time.monotonic() + 600
    seen = None
    while process.poll() is None and time.monotonic() < deadline:
        try:
            stamp = state_file.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != seen:
            try:
                step = torch.load(state_file, map_location="cpu", weights_only=True)["step"]
                seen = stamp
            except (EOFError, RuntimeError, OSError, KeyError):  # being replaced: read it next time
                step = 0
            if step >= 3:
                process.send_signal(signal.SIGKILL)
                outcome["step"] = step
                break
        time.sleep(0.05)
    process.wait(timeout=60)


@pytest.mark.usefixtures("one_thread")
def test_killed_and_resumed_equals_uninterrupted(command, tmp_path, repo_root, assert_scores_close):
    """A process killed (SIGKILL) mid-epoch, resumed (here, by click) and a run never interrupted (here too, while
    the other process trains) end with the same weights."""
    import threading

    killed = _cli(repo_root, command(tmp_path / "killed"))
    outcome: dict = {}
    killer = threading.Thread(target=_kill_mid_epoch,
                              args=(killed, tmp_path / "killed" / "resume" / "state.pt", outcome))
    killer.start()
    try:
        _finetune_here(command(tmp_path / "whole"))
    finally:
        killer.join()
    assert killed.returncode == -signal.SIGKILL and outcome["step"] < 6, \
        f"the run ended before it could be killed: {killed.stderr.read()}"
    resumed = _finetune_here(command(tmp_path / "killed", "--resume"))
    epoch = (outcome["step"] - 1) // 2 + 1  # the epoch of the last step done (2 steps an epoch)
    assert f"resuming at epoch {epoch}, step {outcome['step']} of 6" in resumed.stderr
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert set(a) == set(b)
    for key in a:
        assert_scores_close(b[key], a[key], err_msg=key)
    key = "tagging_head.encoder.layer.0.output.dense.weight"
    start = torch.load(repo_root.parent / "shared" / "fixtures" / "parity" / "ram_tiny.pth", weights_only=True)
    assert not torch.equal(a[key], start["model"][key])  # it trained
    assert not (tmp_path / "killed" / "resume").exists()


def test_two_processes_with_gloo(command, tmp_path, repo_root, parity_pngs):
    from fiftyone_ram import load_tagger

    out = tmp_path / "ddp"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                          "--nproc-per-node", "2", "-m", "fiftyone_ram.cli", *command(out, "--max-steps", "2")],
                         env=_env(repo_root), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert '"steps": 2' in run.stdout
    tagger = load_tagger(out, device="cpu")
    assert tagger.tag_list == ["circle", "square", "triangle", "zigzag"]
    assert len(tagger.predict([str(p) for p in parity_pngs[:2]], threshold=0.0)[0]) == 4
