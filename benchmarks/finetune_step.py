"""Seconds per training step and peak RSS of RAM++ Swin-L 384 at batch 2 on the CPU: fp32 and bf16 autocast,
with and without gradient checkpointing.

A step is what ``finetune`` does per optimizer step: the RAM++ objective (ASL tagging loss, distillation to a
512-d feature, image-text alignment on 512-d caption embeddings; the CLIP teacher's own forward is left out,
its inputs are random), backward, AdamW. The weights are random in the released RAM++ layout (every key and
shape of the released file), written once to the cache (~3.5 GB). Each setting runs in a fresh process so
that its peak RSS is its own. Usage: ``python benchmarks/finetune_step.py [--steps 2] [--settings fp32 bf16
fp32+ckpt bf16+ckpt]``. The GPU variant is in the GPU benchmark script of the speed issue.
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
KEYS = ROOT.parent / "shared" / "docs" / "state-dict-keys" / "ram_plus_released.tsv"
SETTINGS = ("fp32", "bf16", "fp32+ckpt", "bf16+ckpt")
BATCH = 2


def child(args: argparse.Namespace) -> None:
    from contextlib import nullcontext

    import torch

    from fiftyone_ram import load_tagger
    from fiftyone_ram.training import total_loss, training_losses

    folder = Path(args.folder)
    tagger = load_tagger("ram_plus_swin_large_14m", folder / "ram_plus_random.pth", precision="fp32",
                         tag_list=folder / "tags.txt",
                         thresholds=folder / "thresholds.txt", device="cpu")
    model = tagger.model
    precision, _, checkpointing = args.setting.partition("+")
    model.set_grad_checkpointing(bool(checkpointing))
    model.train()
    model.label_embed.requires_grad_(False)  # frozen, as upstream's recipe
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-6, weight_decay=0.05)
    generator = torch.Generator().manual_seed(0)
    size = tagger.image_size
    pixels = torch.randn(BATCH, 3, size, size, generator=generator)
    targets = (torch.rand(BATCH, len(tagger.tag_list), generator=generator) < 0.01).long()
    features = torch.randn(BATCH, 512, generator=generator)
    texts = torch.nn.functional.normalize(torch.randn(BATCH, 512, generator=generator), dim=-1)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def step() -> None:
        with autocast:
            losses = training_losses(tagger, pixels, tag_targets=targets, clip_image_features=features,
                                     caption_text_embeds=texts)
            loss = total_loss(losses, "ram_plus")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: first touch of the weights, the optimizer's state allocated
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = (time.perf_counter() - start) / args.steps
    print(json.dumps({"setting": args.setting, "batch": BATCH, "image_size": size, "seconds_per_step": elapsed,
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
                      "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    sys.path.insert(0, str(Path(__file__).parent))
    from tagging_cpu import bench_dir, make_checkpoint  # the random released-layout writer shared by benchmarks

    folder = bench_dir()
    checkpoint = folder / "ram_plus_random.pth"
    if not checkpoint.is_file():
        print(f"writing a random upstream-layout RAM++ checkpoint to {checkpoint} ...", flush=True)
        make_checkpoint(checkpoint, KEYS)
    (folder / "tags.txt").write_text("".join(f"tag {i}\n" for i in range(4585)))
    (folder / "thresholds.txt").write_text("0.65\n" * 4585)
    print(f"checkpoint: {checkpoint} ({checkpoint.stat().st_size / 1e9:.2f} GB), CPU cores: {os.cpu_count()}, "
          f"load average: {os.getloadavg()[0]:.1f}")
    rows = []
    for setting in args.settings:
        command = [sys.executable, __file__, "--child", "--setting", setting, "--steps", str(args.steps),
                   "--folder", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{setting}: failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"{setting:>10}: {row['seconds_per_step']:.2f} s/step, peak RSS {row['peak_rss_gb']:.2f} GB "
              f"({row['threads']} threads)", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
