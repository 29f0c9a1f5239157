"""Throughput of ``dataset.apply_model`` versus the raw tagger on the same images (default 64).

Both sides read the image files from disk and produce the same tags: the raw side is
``Tagger.predict(paths)`` (decoding in the main process, batches of ``--batch-size``), the FiftyOne side is
``apply_model`` with the ``RamModel`` (DataLoader with ``--num-workers`` decoding processes, labels written
to the database), plainly and through ``fiftyone_ram.fiftyone.tag_samples`` (the driver the operator and the
CLI use: overwrite check, error summary). Each figure is the best of ``--repeats`` runs after a one-batch warm-up; the runs of the
different methods are interleaved. The labels written are checked against ``predict()``.

Default: the tiny parity fixture (``../shared/fixtures/parity``, 224 px) on copies of its five PNGs.
``--full``: the released RAM architecture (Swin-L, 384 px) with random weights in the upstream layout,
written once by ``benchmarks/tagging_cpu.py``'s generator (~1.9 GB; slow on CPU: several seconds per image).

Usage: ``python benchmarks/apply_model_throughput.py [--images 64] [--batch-size 8] [--num-workers 2] [--full]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT.parent / "shared" / "fixtures" / "parity"
UPSTREAM = ROOT.parent / "shared" / "upstream"


def tiny_settings() -> dict:
    return {"config": str(PARITY / "fixtures_tiny.json"), "family": "ram",
            "checkpoint_path": str(PARITY / "ram_tiny.pth"), "tag_list": str(UPSTREAM / "ram_tag_list.txt"),
            "thresholds": str(UPSTREAM / "ram_tag_list_threshold.txt")}


def full_settings() -> dict:
    spec = importlib.util.spec_from_file_location("tagging_cpu", ROOT / "benchmarks" / "tagging_cpu.py")
    tagging_cpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tagging_cpu)
    folder = tagging_cpu.bench_dir()
    checkpoint = folder / "ram_random.pth"
    if not checkpoint.is_file():
        print(f"writing a random upstream-layout RAM checkpoint to {checkpoint} ...", flush=True)
        tagging_cpu.make_checkpoint(checkpoint, tagging_cpu.KEYS)
    return {"model": "ram_swin_large_14m", "checkpoint_path": str(checkpoint),
            "tag_list": str(UPSTREAM / "ram_tag_list.txt"), "thresholds": str(UPSTREAM / "ram_tag_list_threshold.txt")}


def make_images(folder: Path, count: int) -> list[str]:
    """``count`` files cycling over the fixture PNGs (distinct names, so nothing is cached by path)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(PARITY.glob("*.png"))
    paths = []
    for i in range(count):
        source = sources[i % len(sources)]
        target = folder / f"{i:04d}_{source.name}"
        shutil.copyfile(source, target)
        paths.append(str(target))
    return paths


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DataLoader workers end with each run)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeats: int, runs: dict) -> dict:
    """Best (wall, CPU) seconds of each run; the runs are interleaved so that a slow spell on a shared machine
    hits all. CPU seconds are the steadier figure on a loaded machine (they do not count the time waited).

    ``runs`` maps a key to ``(warm_up, run)``; warm-ups (a batch each: page in the memory-mapped weights,
    start the database) are not timed.
    """
    for warm_up, _ in runs.values():
        warm_up()
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, (_, run) in runs.items():
            start, cpu = time.perf_counter(), _cpu_seconds()
            run()
            times[key].append((time.perf_counter() - start, _cpu_seconds() - cpu))
    return {key: min(values) for key, values in times.items()}


def fiftyone_storing_seconds(dataset, field: str) -> float:
    """Seconds per image that FiftyOne itself spends storing ``field``'s labels the way ``apply_model`` does
    with our model (``Sample.add_labels`` and a ``SaveContext`` with asynchronous writes, inside the model's
    ), with no model: the part of ``apply_model``'s time that no model can remove."""
    import fiftyone.core.collections as foc

    labels = dataset.values(field)
    scratch = dataset.clone()
    try:
        start = time.perf_counter()
        with foc.SaveContext(scratch, async_writes=True) as context:
            for sample, label in zip(scratch.select_fields().iter_samples(), labels):
                sample.add_labels(label, label_field="stored_again")
                context.save(sample)
        return (time.perf_counter() - start) / max(len(labels), 1)
    finally:
        scratch.delete()


def _workers(value: str) -> int | None:
    return None if value == "auto" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=_workers, nargs="+", default=[2],
                        help="DataLoader workers per run; 'auto': FiftyOne's default for apply_model, the "
                             "driver's plan (fiftyone_ram.scheduling) for tag_samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="released RAM size with random weights (slow on CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16 or int8 (load_tagger's)")
    parser.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    parser.add_argument("--threshold", type=float, default=None,
                        help="one threshold for all tags on both sides (default: per-class thresholds); the "
                             "tiny random-weight model emits ~150 tags per image with its per-class thresholds, "
                             "a real one 10-30, and FiftyOne's label objects cost about as much as the model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the main process "
                        "(default: torch's choice, one per core)")
    parser.add_argument("--tags-per-image", type=int, default=30,
                        help="realistic outputs: thresholds calibrated (benchmarks/realistic.py) so that about this "
                             "many tags pass per image, as the released models emit (0: upstream's per-class "
                             "thresholds, ~1,900 tags per image with random weights)")
    args = parser.parse_args()

    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
    import fiftyone as fo
    import torch

    import fiftyone_ram.fiftyone as forf

    import fiftyone_ram.driver as frd
    from fiftyone_ram.hardware import describe
    from fiftyone_ram.scheduling import plan_for

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = full_settings() if args.full else tiny_settings()
    folder = Path(tempfile.mkdtemp(prefix="ram-bench-"))
    if args.tags_per_image and args.threshold is None:
        from realistic import calibrated_thresholds

        calibration = forf.load_model(device=args.device, precision=args.precision, **settings).tagger
        settings["thresholds"] = str(calibrated_thresholds(calibration, make_images(folder / "calibration", 4),
                                                           folder / "thresholds.txt", args.tags_per_image))
        del calibration
    model = forf.load_model(device=args.device, confidence_thresh=args.threshold, precision=args.precision,
                            **settings)
    tagger = model.tagger
    tagger.batch_size = args.batch_size
    dataset = fo.Dataset()
    try:
        paths = make_images(folder, args.images)
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        first = paths[:args.batch_size]
        def predict(images):
            return tagger.predict(images, threshold=args.threshold)

        raw_output: list = []
        runs = {"raw": (lambda: predict(first), lambda: raw_output.__setitem__(slice(None), predict(paths)))}
        for workers in args.num_workers:
            def plain(samples=dataset, workers=workers):
                samples.apply_model(model, label_field="ram", batch_size=args.batch_size, num_workers=workers,
                                    skip_failures=False)

            def driver(samples=dataset, workers=workers):
                frd.tag_samples(samples, model, "ram", overwrite=True, batch_size=args.batch_size,
                                 num_workers=workers, skip_failures=False)

            runs[("apply_model", workers)] = (lambda run=plain: run(dataset.limit(args.batch_size)), plain)
            runs[("tag_samples", workers)] = (lambda run=driver: run(dataset.limit(args.batch_size)), driver)
        best = best_of(args.repeats, runs)
        rows = [("Tagger.predict (raw)", "-", *best.pop("raw"))]
        rows += [(method, "auto" if workers is None else str(workers), *seconds)
                 for (method, workers), seconds in sorted(best.items(), key=lambda item: str(item[0]))]

        stored = [[(c.label, c.confidence) for c in label.classifications] for label in dataset.values("ram")]
        assert stored == raw_output, "apply_model labels differ from Tagger.predict"
        tags_per_image = sum(len(tags) for tags in raw_output) / len(raw_output)
        storing = fiftyone_storing_seconds(dataset, "ram")

        raw = rows[0][2]
        name = "RAM Swin-L 384 (random weights)" if args.full else "tiny parity fixture (224 px)"
        decided = ("per-class thresholds" if args.threshold is not None or not args.tags_per_image else
                   f"thresholds calibrated for ~{args.tags_per_image} tags/image (realistic outputs)")
        if args.threshold is not None:
            decided = f"threshold {args.threshold}"
        machine = describe(args.device)
        print(f"\n{name}, {decided}, precision {tagger.precision}, {args.images} images, batch {args.batch_size}, "
              f"{tags_per_image:.0f} tags/image; best of {args.repeats}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print("ran on: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
        print(f"driver plan (workers 'auto'): {plan_for(tagger).describe()}")
        per_image = raw / args.images
        print(f"FiftyOne storing these labels alone (add_labels + SaveContext, no model): {storing:.3f} s/image, "
              f"{storing / per_image:.0%} of the raw model's {per_image:.3f} s/image: apply_model can reach at "
              f"most {per_image / (per_image + storing):.2f}x")
        print(f"{'method':<24}{'workers':>8}{'seconds':>10}{'CPU s':>8}{'images/s':>10}{'vs raw':>8}")
        for method, workers, seconds, cpu in rows:
            print(f"{method:<24}{workers:>8}{seconds:>10.2f}{cpu:>8.1f}{args.images / seconds:>10.2f}"
                  f"{raw / seconds:>8.2f}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({
                "model": name, "precision": tagger.precision, "images": args.images, "batch": args.batch_size,
                "machine": machine, "load_average": os.getloadavg(),
                "fiftyone_storing_seconds_per_image": storing,
                "rows": [dict(zip(("method", "workers", "seconds", "cpu_seconds"), row)) for row in rows]}, indent=1))
    finally:
        dataset.delete()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
