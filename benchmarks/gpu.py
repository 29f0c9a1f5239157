"""The GPU path in one command: RAM++ and RAM (Swin-L 384) throughput, peak memory and agreement with fp32, and
the end-to-end ``tag_samples`` rate on a FiftyOne dataset of synthetic JPEGs.

Random weights in the released layout (every module at the released sizes, built in place on the device: no
download, no checkpoint on disk). For each model, precision and batch size it times the model alone on
device-resident pixels (``Tagger.iter_batches`` on a tensor: the copy, the encoder, the full-vocabulary head,
the scores back on the host), records ``torch.cuda.max_memory_allocated``, and for reduced precision compares
the scores with fp32's on the same pixels (tag-set F1 at the per-class thresholds, max |Δprobability|). Then
``tag_samples`` runs RAM at bf16 over ``--images`` JPEGs with the driver's own plan (decoding workers, pinned
memory) and reports images/s and the share of the wall time the model waited for data. The fine-tuning step
(``fiftyone_ram.training``) is reported as not measured where that package has not landed.

``--compile`` adds a compiled row (``Tagger.compile``: ``torch.compile`` of the encoder and the head) beside each
eager one, with the seconds its first batch spent compiling (the inductor cache makes later processes faster).

Usage: ``python benchmarks/gpu.py [--batches 32 128 256] [--precisions bf16 fp32] [--compile] [--json gpu.json]``
(a lent GPU: about 3-4 minutes). ``--smoke``: the tiny fixture architecture on the CPU, one batch size, four
JPEGs (CI runs it: tests/test_gpu_benchmark.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT.parent / "shared" / "fixtures" / "parity" / "fixtures_tiny.json"
RELEASED = {"RAM++ Swin-L 384": ("ram_plus_swin_large_14m", "ram_plus"), "RAM Swin-L 384": ("ram_swin_large_14m", "ram")}
NUM_TAGS = 4585
THRESHOLD = 0.65  # one per-class threshold for the random vocabulary (the released files' typical value)


def random_tagger(name: str, family: str, device, *, smoke: bool):
    """A fp32 ``Tagger`` of the released architecture (or the tiny one) with seeded random weights."""
    import numpy as np
    import torch

    from fiftyone_ram.models.ram import RAM
    from fiftyone_ram.models.ram_plus import RAMPlus
    from fiftyone_ram.models.registry import resolve_config
    from fiftyone_ram.tagger import Tagger

    config = resolve_config(TINY_CONFIG if smoke else name, family=family)
    torch.manual_seed(0)
    with torch.device(device):  # buffers (Swin's position indices) are built where they are used
        model = (RAMPlus if family == "ram_plus" else RAM)(config, NUM_TAGS)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if key.endswith("norm.weight") or "LayerNorm.weight" in key or key.endswith(("norm1.weight", "norm2.weight")):
                parameter.fill_(1.0)
            elif parameter.ndim:
                parameter.normal_(0.0, 0.02)
    model.eval().requires_grad_(False)
    names = [f"tag {i}" for i in range(NUM_TAGS)]
    return Tagger(model, config, names, np.full(NUM_TAGS, THRESHOLD, np.float32), device=device, batch_size=32)


def at_precision(reference, precision: str):
    """A copy of the fp32 tagger prepared for ``precision`` (same weights)."""
    from fiftyone_ram.models.precision import set_precision
    from fiftyone_ram.tagger import Tagger

    model = set_precision(copy.deepcopy(reference.model), precision)
    return Tagger(model, reference.config, reference.tag_list, reference.thresholds, device=reference.device,
                  batch_size=reference.batch_size, precision=precision)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(tagger, pixels, seconds: float) -> tuple[float, object]:
    """Images/s of the model on ``pixels`` (one batch, repeated for about ``seconds``) and the last scores."""
    (batch,) = tagger.iter_batches(pixels, batch_size=len(pixels))  # warm-up (and cuDNN / compile choices)
    _sync(tagger.device)
    runs, start = 0, time.perf_counter()
    while True:
        (batch,) = tagger.iter_batches(pixels, batch_size=len(pixels))
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return runs * len(pixels) / elapsed, batch.probabilities


def model_rows(args, device) -> list[dict]:
    """Eager rows, and with ``--compile`` compiled rows beside them (``Tagger.compile``: the first batch of each
    shape compiles, and its seconds are the row's ``compile_s``)."""
    import torch

    from fiftyone_ram.evaluation.agreement import agreement

    rows = []
    backends = ["eager", "compiled"] if args.compile else ["eager"]
    for label, (name, family) in RELEASED.items():
        label = label.split()[0] + " tiny" if args.smoke else label
        reference = random_tagger(name, family, device, smoke=args.smoke)
        size = reference.image_size
        for precision in args.precisions:
            for backend in backends:
                tagger = reference if precision == "fp32" and backend == "eager" else at_precision(reference,
                                                                                                  precision)
                if backend == "compiled":
                    tagger.compile()
                for batch in args.batches:
                    generator = torch.Generator().manual_seed(batch)
                    pixels = torch.randn(batch, 3, size, size, generator=generator).to(device)
                    row = {"model": label, "precision": precision, "backend": backend, "batch": batch}
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats(device)
                    try:
                        compiled_before = tagger.compile_seconds
                        row["images_per_s"], probs = time_model(tagger, pixels, args.seconds)
                        if backend == "compiled":
                            row["compile_s"] = tagger.compile_seconds - compiled_before
                        if device.type == "cuda":
                            row["peak_gpu_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
                        if tagger is not reference:
                            (want,) = reference.iter_batches(pixels, batch_size=len(pixels))
                            row.update(agreement(want.probabilities, probs, reference.thresholds).to_dict())
                    except torch.OutOfMemoryError:
                        row["error"] = "out of memory"
                    rows.append(row)
                    print(_format_row(row), flush=True)
                if tagger is not reference:
                    del tagger
        del reference
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def synthetic_jpegs(folder: Path, count: int, side: tuple[int, int] = (640, 480)) -> list[str]:
    """``count`` JPEGs of smooth colour fields with noise (decode cost like photographs, not like flat images)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = side
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        phase = rng.uniform(0, 6.28, 3)
        base = np.stack([127 + 100 * np.sin(x / (40 + 10 * c) + y / 70 + phase[c]) for c in range(3)], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def _count_busy(model) -> dict:
    """Adds up the seconds the FiftyOne model spends inside ``predict_outputs`` (its busy time: the driver
    calls it, and ``predict_all`` goes through it) in the returned dict; patched on the instance, so that
    ``apply_model`` still sees our model's type."""
    clock = {"busy": 0.0}
    inner = model.predict_outputs

    def predict_outputs(args):
        start = time.perf_counter()
        try:
            return inner(args)
        finally:
            clock["busy"] += time.perf_counter() - start

    model.predict_outputs = predict_outputs
    return clock


def tag_samples_row(args, device) -> dict:
    import fiftyone as fo

    import fiftyone_ram.fiftyone as forf

    import fiftyone_ram.driver as frd
    from fiftyone_ram.scheduling import plan_for

    precision = "bf16" if args.precisions and "bf16" in args.precisions else args.precisions[0]
    reference = random_tagger(*RELEASED["RAM Swin-L 384"], device, smoke=args.smoke)
    tagger = reference if precision == "fp32" else at_precision(reference, precision)
    tagger.batch_size = args.e2e_batch
    folder = Path(tempfile.mkdtemp(prefix="ram-gpu-bench-"))
    dataset = fo.Dataset()
    try:
        paths = synthetic_jpegs(folder, args.images)
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        model = forf.from_tagger(tagger, confidence_thresh=0.9)  # realistic label counts: writing stays cheap
        frd.tag_samples(dataset.limit(args.e2e_batch), model, "ram", overwrite=True)  # warm-up
        clock = _count_busy(model)
        start = time.perf_counter()
        summary = frd.tag_samples(dataset, model, "ram", overwrite=True, batch_size=args.e2e_batch)
        elapsed = time.perf_counter() - start
        return {"model": "RAM tiny" if args.smoke else "RAM Swin-L 384", "precision": precision, "batch": args.e2e_batch,
                "tag_samples_images_per_s": summary.tagged / elapsed, "model_busy_share": clock["busy"] / elapsed,
                "images": summary.tagged, "plan": plan_for(tagger).describe()}
    finally:
        dataset.delete()
        shutil.rmtree(folder, ignore_errors=True)


def _format_row(row: dict) -> str:
    if "error" in row:
        figures = row["error"]
    else:
        figures = f"{row['images_per_s']:10.1f} img/s"
        if "peak_gpu_gb" in row:
            figures += f"  peak {row['peak_gpu_gb']:6.1f} GB"
        if "tag_f1" in row:
            figures += f"  F1 vs fp32 {row['tag_f1']:.4f}  max|Δp| {row['max_abs_delta']:.4f}"
        if "compile_s" in row:
            figures += f"  compile {row['compile_s']:.0f} s"
    return f"{row['model']:<18}{row['precision']:>6}{row.get('backend', 'eager'):>9}{row['batch']:>6}  {figures}"


def fine_tuning_note() -> str:
    import importlib.util

    if importlib.util.find_spec("fiftyone_ram.training") is None:
        return "fine-tuning step: not measured (fiftyone_ram.training has not landed in this checkout)"
    return "fine-tuning step: see benchmarks/finetune_*.py (run them on this machine as well)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny architecture on the CPU, a few seconds")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default 32 128 256 (smoke: 2)")
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--seconds", type=float, default=None, help="timing per row (default 6; smoke: one run)")
    parser.add_argument("--images", type=int, default=None, help="JPEGs for tag_samples (default 2048; smoke 4)")
    parser.add_argument("--e2e-batch", type=int, default=None, help="tag_samples batch (default 128; smoke 2)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure each precision compiled (Tagger.compile), with its compile time")
    parser.add_argument("--json", dest="json_out", default="gpu_benchmark.json", help="results file")
    args = parser.parse_args()
    smoke = args.smoke
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.batches = args.batches or ([2] if smoke else [32, 128, 256])
    args.seconds = args.seconds if args.seconds is not None else (0.0 if smoke else 6.0)
    args.images = args.images or (4 if smoke else 2048)
    args.e2e_batch = args.e2e_batch or (2 if smoke else 128)

    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
    import torch

    from fiftyone_ram.hardware import describe, resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --smoke for the CPU check")
    machine = describe(device)
    print("ran on: " + ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    print(f"{'model':<18}{'prec':>6}{'backend':>9}{'batch':>6}  figures", flush=True)
    started = time.perf_counter()
    rows = model_rows(args, device)
    end_to_end = tag_samples_row(args, device)
    print(f"tag_samples, {end_to_end['model']} {end_to_end['precision']}, batch {end_to_end['batch']}, "
          f"{end_to_end['images']} JPEGs: {end_to_end['tag_samples_images_per_s']:.1f} img/s, model busy "
          f"{100 * end_to_end['model_busy_share']:.0f} % of the wall time ({end_to_end['plan']})")
    note = fine_tuning_note()
    print(note)
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    Path(args.json_out).write_text(json.dumps({"machine": machine, "smoke": smoke, "rows": rows,
                                               "tag_samples": end_to_end, "fine_tuning": note,
                                               "seconds": total}, indent=1))
    print(f"results: {args.json_out}")


if __name__ == "__main__":
    main()
