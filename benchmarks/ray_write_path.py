"""The Ray executor's write path: samples/s and the driver's memory while outputs come back and are written.

What runs: the real pipeline of ``executor="ray"`` (pages of ids and paths read from the view by the driver,
the bounded queue, page-slot tasks, an actor pool, outputs streamed back, ``LabelWriter`` storing them by
sample id through FiftyOne's ``add_labels`` + ``SaveContext``), with the model replaced by a
**fixed-output stand-in**: every sample gets the same five-tag ``Classifications``, and no image is read
(the file paths are synthetic). So the figures are the engine's own overhead and the database writes, not
tagging speed.

Printed at several sample counts of one run: samples written, the rate over the last segment and overall,
and the driver's resident memory (RSS, from /proc): flat when the driver holds only what is in flight.

Usage: ``python benchmarks/ray_write_path.py [--samples 100000] [--page 256] [--workers 2] [--json]``
(``--cpus`` sizes the local cluster; ``--address`` joins an existing one).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = "fixed-output stand-in model (no image is read; the same five tags for every sample)"


def rss_mib() -> float:
    """The driver's resident memory now (not the peak)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PassIds:
    """The decode stage of the stand-in: ids only, no pixels."""

    def __call__(self, batch):
        return {"id": batch["id"]}


class FixedOutput:
    """The stand-in model: the same five tags for every sample of the batch, as the tagging actors return
    them (``TagOutput``: plain lists; the writer turns them into documents)."""

    def __init__(self) -> None:
        from fiftyone_ram.fiftyone.outputs import TagOutput

        names = ["dog", "cat", "car", "tree", "boat"]
        self.output = TagOutput(names, [0.9 - 0.1 * i for i in range(len(names))], [0.5] * len(names))

    def __call__(self, batch):
        import numpy as np

        column = np.empty(len(batch["id"]), dtype=object)
        column[:] = [self.output for _ in range(len(batch["id"]))]
        return {"id": batch["id"], "output": column}


def make_dataset(name: str, count: int):
    import fiftyone as fo

    if name in fo.list_datasets():
        fo.delete_dataset(name)
    dataset = fo.Dataset(name)
    step = 10_000
    for start in range(0, count, step):
        dataset.add_samples([fo.Sample(filepath=f"/synthetic/{i:07d}.jpg")
                             for i in range(start, min(start + step, count))], progress=False)
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=256, help="samples per page (one model batch)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local cluster")
    parser.add_argument("--address", default=None, help="an existing Ray cluster instead of a local one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import ray

    from fiftyone_ram.driver.writer import LabelWriter, iter_pages
    from fiftyone_ram.driver.ray_executor import RayOptions, stream_pages

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=args.cpus, include_dashboard=False, configure_logging=False)
    dataset = make_dataset("fiftyone-ram-ray-write-path", args.samples)
    marks = sorted({m for m in (1_000, 10_000, 25_000, 50_000, args.samples) if m <= args.samples})
    options = RayOptions(address=args.address, workers=args.workers, cpus_per_worker=0.5)
    rows = []
    start = last_time = time.perf_counter()
    last_count = 0
    stream = stream_pages(iter_pages(dataset, args.page), max_pages=-(-args.samples // args.page),
                          decode=PassIds(), predictor=FixedOutput, predictor_kwargs={}, options=options)
    def record(written: int) -> None:
        """A row for each mark ``written`` has passed (the writer counts from its own thread)."""
        nonlocal last_time, last_count
        while marks and written >= marks[0]:
            now = time.perf_counter()
            rows.append({"samples": written, "segment_per_s": (written - last_count) / max(now - last_time, 1e-9),
                         "overall_per_s": written / (now - start), "driver_rss_mib": rss_mib()})
            last_time, last_count = now, written
            marks.pop(0)
            if not args.json:  # as it goes: a long run shows its figures before it ends
                print(f"  {rows[-1]['samples']} written, {rows[-1]['segment_per_s']:.0f}/s, driver RSS "
                      f"{rows[-1]['driver_rss_mib']:.0f} MiB", flush=True)

    with LabelWriter(dataset, "ram") as writer:
        for batch in stream:
            writer.write(list(batch["id"]), list(batch["output"]))
            record(writer.written)
    record(writer.written)  # the last batches, written once the writer was left
    written = dataset.exists("ram").count()
    load = os.getloadavg()
    result = {"model": STAND_IN, "samples": args.samples, "written": written, "page": args.page,
              "workers": args.workers, "load_average": load, "rows": rows}
    dataset.delete()
    ray.shutdown()
    if args.json:
        print(json.dumps(result))
        return
    print(f"model: {STAND_IN}")
    print(f"{written} of {args.samples} samples written; page {args.page}, {args.workers} workers; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'samples':>9} {'segment/s':>10} {'overall/s':>10} {'driver RSS MiB':>15}")
    for row in rows:
        print(f"{row['samples']:>9} {row['segment_per_s']:>10.0f} {row['overall_per_s']:>10.0f} "
              f"{row['driver_rss_mib']:>15.0f}")


if __name__ == "__main__":
    main()
