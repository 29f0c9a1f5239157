"""Crops/s through the cleaning engine's embedding and clustering path, on CPU, for synthetic regions.

What is timed, per region: cutting the crop out of the decoded image (in memory), embedding it with the RAM
image encoder (``TaggerCrops``: the tagger's batch loop, which also scores the crop's category), and
``score_outliers`` over all regions at the end (K-Means++ per category, silhouette for k, the outlier rule).
Image decoding and the detector are not part of this path (regions come from known boxes).

The data: ``--regions`` boxes (default 2,000) on 96x96 synthetic images, 4 boxes per image, 5 categories
painted as distinct patterns, ``--noise`` of the boxes (default 10 %) painted as another category: the
precision/recall of the flags against those is printed as a sanity check.

The encoder defaults to the tiny RAM of ``../shared/fixtures/parity`` (random weights, 224-pixel input, the
real architecture scaled down), because the released weights are not available offline; pass ``--config``
and ``--checkpoint`` (and ``--tag-list``) for another model. Torch and BLAS run on ``--threads`` threads.

Usage: ``python benchmarks/engine_crops.py [--regions 2000] [--batch-size 32] [--threads 1] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT.parent / "shared" / "fixtures" / "parity"
UPSTREAM = ROOT.parent / "shared" / "upstream"
CATEGORIES = ("dog", "cat", "car", "tree", "boat")
BOXES = [(0.05, 0.05, 0.4, 0.4), (0.55, 0.05, 0.4, 0.4), (0.05, 0.55, 0.4, 0.4), (0.55, 0.55, 0.4, 0.4)]


def paint(category: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A per-category texture: colour and stripe orientation/period differ between categories."""
    yy, xx = np.mgrid[0:size, 0:size]
    period = 3 + 2 * category
    wave = ((xx if category % 2 else yy) // period) % 2
    colour = np.array([[220, 40, 40], [40, 40, 220], [40, 200, 40], [200, 200, 40], [200, 40, 200]][category])
    return np.clip(colour * (0.6 + 0.4 * wave)[..., None] + rng.normal(0, 10, (size, size, 3)), 0, 255)


def synthetic_regions(count: int, noise: float, seed: int):
    """(images, [(image index, box, category)], wrong flags)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, regions, wrong = [], [], []
    for index in range((count + len(BOXES) - 1) // len(BOXES)):
        pixels = rng.normal(128, 20, (96, 96, 3))
        for box in BOXES:
            if len(regions) == count:
                break
            category = int(rng.integers(len(CATEGORIES)))
            painted = category
            if rng.random() < noise:
                painted = int((category + rng.integers(1, len(CATEGORIES))) % len(CATEGORIES))
            x0, y0, side = int(box[0] * 96), int(box[1] * 96), int(box[2] * 96)
            pixels[y0:y0 + side, x0:x0 + side] = paint(painted, side, rng)
            regions.append((index, box, CATEGORIES[category]))
            wrong.append(painted != category)
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images, regions, np.asarray(wrong)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", default=str(PARITY / "fixtures_tiny.json"))
    parser.add_argument("--checkpoint", default=str(PARITY / "ram_tiny.pth"))
    parser.add_argument("--family", default="ram")
    parser.add_argument("--tag-list", default=str(UPSTREAM / "ram_tag_list.txt"))
    parser.add_argument("--thresholds", default=str(UPSTREAM / "ram_tag_list_threshold.txt"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    from fiftyone_ram import load_tagger
    from fiftyone_ram.engine.crops import TaggerCrops, crop
    from fiftyone_ram.engine.outliers import score_outliers

    torch.set_num_threads(args.threads)
    tagger = load_tagger(args.config, args.checkpoint, family=args.family, tag_list=args.tag_list,
                         thresholds=args.thresholds or None, device="cpu", batch_size=args.batch_size)
    encoder = TaggerCrops(tagger)
    images, regions, wrong = synthetic_regions(args.regions, args.noise, args.seed)
    encoder.encode([crop(images[0], BOXES[0])] * 2, ["dog", "dog"])  # warm-up, not timed

    with threadpool_limits(limits=args.threads):
        timings = {"crop": 0.0, "embed": 0.0}
        embeddings = []
        for start in range(0, len(regions), args.batch_size):
            batch = regions[start:start + args.batch_size]
            tick = time.perf_counter()
            crops = [crop(images[i], box) for i, box, _ in batch]
            timings["crop"] += time.perf_counter() - tick
            tick = time.perf_counter()
            vectors, _ = encoder.encode(crops, [c for _, _, c in batch])
            timings["embed"] += time.perf_counter() - tick
            embeddings.append(vectors)
        tick = time.perf_counter()
        report = score_outliers(np.concatenate(embeddings), [c for _, _, c in regions])
        timings["cluster"] = time.perf_counter() - tick
    total = sum(timings.values())
    hits = int((report.flags & wrong).sum())
    result = {
        "regions": len(regions), "embedding_dim": int(embeddings[0].shape[1]), "threads": args.threads,
        "batch_size": args.batch_size, "model": Path(args.checkpoint).name,
        "seconds": {k: round(v, 3) for k, v in timings.items()}, "crops_per_s": round(len(regions) / total, 1),
        "crops_per_s_embed_only": round(len(regions) / timings["embed"], 1),
        "crops_per_s_cluster_only": round(len(regions) / timings["cluster"], 1),
        "precision": round(hits / max(int(report.flags.sum()), 1), 3),
        "recall": round(hits / max(int(wrong.sum()), 1), 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['regions']} regions, {result['model']} ({result['embedding_dim']}-d), {args.threads} "
              f"thread(s): {result['crops_per_s']} crops/s (crop {timings['crop']:.2f}s, embed "
              f"{timings['embed']:.2f}s, cluster {timings['cluster']:.2f}s); flags P={result['precision']} "
              f"R={result['recall']}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
