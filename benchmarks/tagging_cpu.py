"""Images/s and peak RSS of RAM Swin-L 384 on the CPU at batch 1 and 4, on an upstream-layout checkpoint, at
each ``--precisions`` (default ``auto fp32``: what this machine picks, and the reference), with the agreement of
every reduced precision with fp32 (tag-set F1 at the per-class thresholds, max |Δprobability|; our fp32 equals
upstream's to ~1e-6, benchmarks/full_size_parity.py). The CPU, its instruction set and the threads are printed.

The checkpoint is random weights in the released RAM layout (every key and shape of the released file,
captioning branch included, ~1.9 GB), written once to the cache. Each measurement runs in a fresh process so
that its peak RSS is its own. Usage: ``python benchmarks/tagging_cpu.py [--batches 1 4] [--repeats 3]``.

Side by side with upstream: ``--upstream DIR --upstream-python PY`` also runs upstream's ``RAM.generate_tag``
from a checkout of xinyu1205/recognize-anything (commit 7cb804a) with an interpreter whose environment runs it
(transformers 4.40, timm 0.4.12, fairscale), on the same checkpoint and images. Upstream's constructor loads a
BERT tokenizer it does not use for tagging; the fixture vocabulary in ../shared stands in for it offline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT.parent / "shared" / "docs" / "state-dict-keys" / "ram_released.tsv"
THRESHOLD = 0.65  # every class's threshold in the benchmark's tag files


def bench_dir() -> Path:
    from fiftyone_ram.assets import ram_home

    folder = ram_home() / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def make_checkpoint(path: Path, keys: Path) -> None:
    """Random tensors under every key of the released RAM state dict (the layout is what matters here)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    state = {}
    for line in keys.read_text().splitlines():
        name, shape, dtype = line.split("\t")
        dims = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
        if dtype.endswith("int64"):
            state[name] = torch.zeros(dims, dtype=torch.int64)
        elif name.endswith(("LayerNorm.weight", "norm.weight", "norm1.weight", "norm2.weight")):
            state[name] = torch.ones(dims)
        else:
            state[name] = torch.randn(dims, generator=generator) * 0.02
    torch.save({"model": state}, path)


def _images(count: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(count)]


def _report(args: argparse.Namespace, elapsed: float, implementation: str, precision: str = "fp32") -> None:
    import torch

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"implementation": implementation, "batch": args.batch, "precision": precision,
                      "images_per_s": args.batch * args.repeats / elapsed, "peak_rss_gb": peak_mb / 1024,
                      "threads": torch.get_num_threads(), "fused_attention": args.fused or "default"}))


def upstream_child(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.upstream)
    import torch
    from ram import get_transform
    from ram.models import ram

    folder = Path(args.folder)
    model = ram(pretrained=str(folder / "ram_random.pth"), image_size=384, vit="swin_l",
                text_encoder_type=str(ROOT.parent / "shared" / "fixtures" / "parity")).eval()
    transform = get_transform(image_size=384)
    pixels = torch.stack([transform(image) for image in _images(args.batch)])
    with torch.no_grad():
        model.generate_tag(pixels)
        start = time.perf_counter()
        for _ in range(args.repeats):
            model.generate_tag(pixels)
    _report(args, time.perf_counter() - start, "upstream")


def child(args: argparse.Namespace) -> None:
    from fiftyone_ram import load_tagger

    folder = Path(args.folder)
    tagger = load_tagger("ram_swin_large_14m", folder / "ram_random.pth", tag_list=folder / "tags.txt",
                         thresholds=folder / "thresholds.txt", device="cpu", batch_size=args.batch,
                         precision=args.precision)
    if args.fused is not None:
        from fiftyone_ram.models.backbone import set_fused_attention

        set_fused_attention(tagger.model.visual_encoder, args.fused == "on")
    images = _images(args.batch)
    tagger.predict(images)  # warm-up: first touch of the memory-mapped weights
    start = time.perf_counter()
    for _ in range(args.repeats):
        tagger.predict(images)
    elapsed = time.perf_counter() - start
    import numpy as np

    (batch,) = tagger.iter_batches(images, batch_size=len(images))  # the scores, for the agreement (untimed)
    np.save(folder / f"probs_{tagger.precision}_{args.batch}.npy", batch.probabilities)
    _report(args, elapsed, "fiftyone-ram", tagger.precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fused", choices=["on", "off"], nargs="*", default=[None],
                        help="timm Swin attention path(s) to measure (default: timm's own choice)")
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"],
                        help="load_tagger precisions to measure (auto: what this machine picks)")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help="checkout of upstream recognize-anything to measure side by side")
    parser.add_argument("--upstream-python", default=sys.executable, help="interpreter that runs upstream")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--upstream-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.upstream_child:
        args.fused = args.fused[0] if args.fused else None
        return upstream_child(args) if args.upstream_child else child(args)

    folder = bench_dir()
    checkpoint = folder / "ram_random.pth"
    if not checkpoint.is_file():
        print(f"writing a random upstream-layout RAM checkpoint to {checkpoint} ...", flush=True)
        make_checkpoint(checkpoint, KEYS)
    (folder / "tags.txt").write_text("".join(f"tag {i}\n" for i in range(4585)))
    (folder / "thresholds.txt").write_text(f"{THRESHOLD}\n" * 4585)
    print(f"checkpoint: {checkpoint} ({checkpoint.stat().st_size / 1e9:.2f} GB), CPU cores: {os.cpu_count()}")
    from fiftyone_ram.hardware import describe

    machine = describe("cpu")
    print("ran on: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    precisions = list(dict.fromkeys(machine["auto_precision"] if p == "auto" else p for p in args.precisions))
    runs = [([sys.executable, __file__, "--child", "--precision", precision]
             + (["--fused", fused] if fused else []), batch)
            for precision in precisions for fused in args.fused for batch in args.batches]
    if args.upstream:
        runs += [([args.upstream_python, __file__, "--upstream-child", "--upstream", args.upstream], batch)
                 for batch in args.batches]
    rows = []
    for command, batch in runs:
        command = command + ["--batch", str(batch), "--repeats", str(args.repeats), "--folder", str(folder)]
        load = os.getloadavg()[0]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append({**json.loads(out.strip().splitlines()[-1]), "load": (load + os.getloadavg()[0]) / 2})
    _agreement(rows, folder)
    print(f"\nRAM Swin-L 384, CPU ({rows[0]['threads']} threads); load: the 1-minute load average around each run")
    print(f"{'implementation':<16}{'precision':>10}{'batch':>6}{'attention':>12}{'images/s':>10}{'peak RSS GB':>13}"
          f"{'load':>6}  agreement with fp32")
    for r in rows:
        print(f"{r['implementation']:<16}{r['precision']:>10}{r['batch']:>6}{r['fused_attention']:>12}"
              f"{r['images_per_s']:>10.3f}{r['peak_rss_gb']:>13.2f}{r['load']:>6.1f}  {r.get('agreement', '')}")


def _agreement(rows: list[dict], folder: Path) -> None:
    """Adds each reduced-precision row's agreement with the fp32 run of the same batch (when it was run)."""
    import numpy as np

    from fiftyone_ram.evaluation.agreement import agreement

    for row in rows:
        if row["implementation"] != "fiftyone-ram" or row["precision"] == "fp32":
            continue
        reference = folder / f"probs_fp32_{row['batch']}.npy"
        if reference.is_file():
            mine = np.load(folder / f"probs_{row['precision']}_{row['batch']}.npy")
            row["agreement"] = str(agreement(np.load(reference), mine, THRESHOLD))


if __name__ == "__main__":
    main()
