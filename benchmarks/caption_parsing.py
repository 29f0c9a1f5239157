"""Caption parsing throughput on one CPU core with RAM's 4,585-tag label system.

    python3 benchmarks/caption_parsing.py [--tag-list ../shared/upstream/ram_tag_list.txt] [--captions 20000]

The corpus mixes the hand-checked everyday captions of tests/data/captions_gold.jsonl with captions built
from random RAM tag names (plurals, "-ing" verbs, negations), so that new words keep reaching WordNet as in a
real dataset. It prints the first pass (caches filling) and a second pass over the same captions.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

GOLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "captions_gold.jsonl"
TEMPLATES = (
    "a {a} {b} next to a {c}",
    "two {a}s and a {b} in the {c}",
    "a {a} {v}ing a {b} on a {c}",
    "a {a} with no {b}s near a {c}",
    "there is a {a} without a {b} and some {c}s",
    "a close up of a {a}'s {b}",
)


def corpus(names: list[str], size: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    gold = [json.loads(line)["caption"] for line in GOLD.read_text(encoding="utf-8").splitlines()]
    verbs = ["ride", "hold", "play", "walk", "eat", "sit", "stand", "carry", "watch", "throw", "catch", "fly"]
    captions = []
    for i in range(size):
        if i % 2:
            captions.append(gold[(i // 2) % len(gold)])
        else:
            a, b, c = (rng.choice(names).lower() for _ in range(3))
            v = rng.choice(verbs).rstrip("e")
            captions.append(rng.choice(TEMPLATES).format(a=a, b=b, c=c, v=v))
    return captions


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--tag-list", help="RAM's ram_tag_list.txt (default: the pinned download)")
    args.add_argument("--captions", type=int, default=20000)
    options = args.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    from fiftyone_ram.labels.caption_parser import load_parser

    started = time.perf_counter()
    parser = load_parser(options.tag_list)
    setup = time.perf_counter() - started
    labels = parser.label_system
    captions = corpus(list(labels.names), options.captions)
    print(f"label system: {len(labels)} tags ({sum(map(len, labels.synonyms))} synonyms); set-up {setup:.1f} s")
    for name in ("first pass", "second pass"):
        started = time.perf_counter()
        tags = sum(len(parser.parse(caption)) for caption in captions)
        elapsed = time.perf_counter() - started
        rate, per_caption = len(captions) / elapsed, tags / len(captions)
        print(f"{name}: {rate:,.0f} captions/s on one core ({per_caption:.2f} tags each)")


if __name__ == "__main__":
    main()
