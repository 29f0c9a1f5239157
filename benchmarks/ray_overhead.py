"""The Ray executor's single-node overhead: the same images tagged with ``executor="local"`` and ``executor="ray"``.

The model is the tiny RAM of ``../shared/fixtures/parity`` (random weights, the real architecture scaled
down): its forward pass is cheap, so the figures show what the executors add (start-up, decoding, transfers,
writes), the worst case for Ray. Each executor tags ``--images`` copies of the five fixture PNGs into a fresh
dataset; the Ray figures include starting the local cluster (``ray.init``) and the actors (each loads the
model once). The load average is printed with the figures: on a shared machine they move with it.

Usage: ``python benchmarks/ray_overhead.py [--images 120] [--batch-size 4] [--workers 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT.parent / "shared" / "fixtures" / "parity"
UPSTREAM = ROOT.parent / "shared" / "upstream"
PNGS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "camera.png")


def tag_once(folder: Path, executor: str, *, batch_size: int, workers: int) -> dict:
    import fiftyone as fo

    from fiftyone_ram.fiftyone import load_model

    from fiftyone_ram.driver import tag_samples

    name = f"fiftyone-ram-ray-overhead-{executor}"
    if name in fo.list_datasets():
        fo.delete_dataset(name)
    dataset = fo.Dataset(name)
    dataset.add_samples([fo.Sample(filepath=str(p)) for p in sorted(folder.iterdir())], progress=False)
    model = load_model(config=str(PARITY / "fixtures_tiny.json"), family="ram",
                       checkpoint_path=str(PARITY / "ram_tiny.pth"), tag_list=str(UPSTREAM / "ram_tag_list.txt"),
                       thresholds=str(UPSTREAM / "ram_tag_list_threshold.txt"), device="cpu")
    start = time.perf_counter()
    summary = tag_samples(dataset, model, "ram", batch_size=batch_size, num_workers=0, executor=executor,
                          workers=workers, progress=False)
    seconds = time.perf_counter() - start
    dataset.delete()
    return {"executor": executor, "images": summary.tagged, "seconds": seconds, "images_per_s": summary.tagged / seconds,
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    for i in range(args.images):
        shutil.copyfile(PARITY / PNGS[i % len(PNGS)], folder / f"{i:05d}.png")
    rows = []
    for executor in ("local", "ray"):
        rows.append(tag_once(folder, executor, batch_size=args.batch_size, workers=args.workers))
        if executor == "ray":
            import ray

            # the pipeline again with the cluster up: what each further run costs
            rows.append({**tag_once(folder, executor, batch_size=args.batch_size, workers=args.workers),
                         "executor": "ray (cluster up)"})
            ray.shutdown()
    shutil.rmtree(folder)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"tiny RAM, {args.images} images, batch {args.batch_size}, Ray workers {args.workers}, "
          f"{os.cpu_count()} CPUs")
    for row in rows:
        load = " ".join(f"{x:.1f}" for x in row["load_average"])
        print(f"{row['executor']:>17}: {row['seconds']:7.1f} s  {row['images_per_s']:6.1f} images/s  (load {load})")


if __name__ == "__main__":
    main()
