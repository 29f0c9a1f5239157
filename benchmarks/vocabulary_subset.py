"""Tagging time per image with a 50-tag subset versus all 4,585 tags: RAM Swin-L 384, fp32, CPU.

A subset selects rows of the label queries (no text encoder), so only the tagging head gets cheaper; the Swin
backbone, identical for both, dominates end to end. Both are reported: end to end (``Tagger.predict`` on a
640×480 image: preprocessing, backbone, head, thresholds) and head only (``model.logits`` on precomputed
image tokens). Measurements alternate between the two vocabularies; medians are reported, and for the
short head-only runs also the best run (on a shared machine the median of a 20 ms run is mostly noise).
CPU seconds (all threads of the process) are reported next to wall time: on a shared machine they are the
steadier measure of the work done.

Uses the random released-layout RAM checkpoint of ``benchmarks/tagging_cpu.py`` (written on first use).
Usage: ``python benchmarks/vocabulary_subset.py [--tags 50] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tagging_cpu import KEYS, bench_dir, make_checkpoint  # noqa: E402


def _seconds(call, repeats: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each call."""
    out = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=50, help="size of the subset (evenly spread over the list)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--head-repeats", type=int, default=20)
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from fiftyone_ram import load_tagger
    from fiftyone_ram.vocabulary import build_vocabulary

    folder = bench_dir()
    checkpoint = folder / "ram_random.pth"
    if not checkpoint.is_file():
        print(f"writing a random upstream-layout RAM checkpoint to {checkpoint} ...", flush=True)
        make_checkpoint(checkpoint, KEYS)
    (folder / "tags.txt").write_text("".join(f"tag {i}\n" for i in range(4585)))
    (folder / "thresholds.txt").write_text("0.65\n" * 4585)

    full = load_tagger("ram_swin_large_14m", checkpoint, tag_list=folder / "tags.txt",
                       thresholds=folder / "thresholds.txt", device="cpu", batch_size=1)
    subset_names = [full.tag_list[i] for i in np.linspace(0, len(full.tag_list) - 1, args.tags).astype(int)]
    subset = full.with_vocabulary(build_vocabulary(full, tags=subset_names))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    taggers = {"all 4585": full, f"subset {args.tags}": subset}

    end_to_end: dict[str, list[tuple[float, float]]] = {name: [] for name in taggers}
    head: dict[str, list[tuple[float, float]]] = {name: [] for name in taggers}
    with torch.inference_mode():
        tokens = full.model.image_embeds(full.preprocess([image]))
        for tagger in taggers.values():  # warm-up: touch the memory-mapped weights, build the query caches
            tagger.predict([image])
        for _ in range(args.repeats):
            for name, tagger in taggers.items():
                end_to_end[name] += _seconds(lambda t=tagger: t.predict([image]), 1)
                per_round = max(1, args.head_repeats // args.repeats)
                head[name] += _seconds(lambda t=tagger: t.model.logits(tokens), per_round)

    print(f"RAM Swin-L 384 fp32, CPU, batch 1, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"medians of {args.repeats} end-to-end and {len(head['all 4585'])} head-only runs")
    def median(runs, which):
        return statistics.median(r[which] for r in runs)

    def best(runs, which):
        return min(r[which] for r in runs)

    print("\n| vocabulary | end to end, s/image: wall (CPU) | head only, ms/image: wall median, best (CPU best) |")
    print("|---|---:|---:|")
    for name in taggers:
        e, h = end_to_end[name], head[name]
        print(f"| {name} | {median(e, 0):.2f} ({median(e, 1):.2f}) "
              f"| {1000 * median(h, 0):.0f}, {1000 * best(h, 0):.0f} ({1000 * best(h, 1):.0f}) |")
    full_runs, subset_runs = end_to_end["all 4585"], end_to_end[f"subset {args.tags}"]
    print(f"\nsubset speed-up end to end: {median(full_runs, 0) / median(subset_runs, 0):.2f}x wall, "
          f"{median(full_runs, 1) / median(subset_runs, 1):.2f}x CPU; head only: "
          f"{best(head['all 4585'], 0) / best(head[f'subset {args.tags}'], 0):.0f}x (best wall)")


if __name__ == "__main__":
    main()
