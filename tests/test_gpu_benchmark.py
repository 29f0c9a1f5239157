"""``benchmarks/gpu.py --smoke`` runs on a CPU (tiny architecture) and writes the table's figures as JSON, so the
script a lent GPU machine runs in one command keeps working between such loans. The script runs here as
``python benchmarks/gpu.py`` runs it (``runpy``, as ``__main__``, its arguments in ``sys.argv``), in this process:
a process of its own would spend most of the time importing FiftyOne and torch."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_smoke(tmp_path, monkeypatch, capsys):
    # The script uses this test run's isolated database and homes (conftest put them in the environment).
    out = tmp_path / "gpu.json"
    script = ROOT / "benchmarks" / "gpu.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--smoke", "--json", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["smoke"] and report["machine"]["device"] == "cpu" and report["machine"]["cpu_capability"]
    rows = {(r["model"], r["precision"], r["batch"]): r for r in report["rows"]}
    assert set(rows) == {(m, p, 2) for m in ("RAM++ tiny", "RAM tiny") for p in ("bf16", "fp32")}
    for (_, precision, _), row in rows.items():
        assert row["images_per_s"] > 0
        if precision == "bf16":  # reduced for real, and still agreeing with fp32
            assert row["tag_f1"] >= 0.9 and 0 < row["max_abs_delta"] < 0.25
    end_to_end = report["tag_samples"]
    assert end_to_end["images"] == 4 and end_to_end["tag_samples_images_per_s"] > 0
    assert 0 < end_to_end["model_busy_share"] <= 1
    assert "ran on: cpu" in printed and "tag_samples" in printed
