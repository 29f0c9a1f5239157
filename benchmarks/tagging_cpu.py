"""RAM Swin-L 384 on the CPU, every precision and backend side by side with upstream fp32, in one run: images/s,
the ratio to upstream, the tag-set F1 and max |Δprobability| against our fp32, tags per image, peak RSS, under
the CPU's native instruction set and under AVX2 dispatch limits.

The checkpoint is random weights in the released RAM layout (every key and shape of the released file,
captioning branch included, ~1.9 GB), written once to the cache. Random weights put every score of a photograph
within a few hundredths of the others and would pass ~1,900 tags per image at a flat 0.65; real RAM passes
20-40. So the agreement is measured at per-class thresholds calibrated on the random model: every backend saves
its scores for eight images (the parity fixtures' photographs in ../shared and their mirror images, else
noise), and class c's threshold is its mean fp32 score over them plus k times its standard deviation, one k for
all classes chosen so that ``--tags-per-image`` (30) pass per image on average. Each row says how many pass
there. Random weights leave those decisions within a few thousandths of their thresholds (the classes differ
by ~0.005, all of a photograph's scores move together by ~0.04), far closer than a trained model's, so the F1
there is a pessimistic figure; ``F1@RAM`` is the same comparison at RAM's own per-class thresholds (the copy in
../shared/upstream; ~2,000 tags per image pass there on random weights) and ``F1@0.65`` at a flat 0.65.

Backends: ``torch`` (``load_tagger``, eager), ``torch-compiled`` (``load_tagger(compile=True)``; its compile time
is printed), ``onnxruntime`` (``fiftyone_ram.export``: ``model.onnx`` and its static int8 ``model.int8.onnx``,
exported once into the cache) and ``upstream`` (``RAM.generate_tag`` from a checkout, ``--upstream DIR
--upstream-python PY``: a checkout of xinyu1205/recognize-anything at 7cb804a and an interpreter that runs it,
e.g. transformers 4.40, timm 0.4.12, fairscale; its BERT tokenizer, unused for tagging, is the fixture
vocabulary). ``--dispatch avx2`` runs each under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2`` (onnxruntime has no such switch: its rows there use the native instructions and
say so). Each measurement runs in a fresh process so that its peak RSS is its own; the 1-minute load average
around each is printed (the machine may be shared: compare ratios within one run).

Usage: ``python benchmarks/tagging_cpu.py [--dispatch native avx2] [--batch 4] [--repeats 3]
[--runs torch:fp32 torch:bf16 torch:int8 torch-compiled:bf16 onnxruntime:fp32 onnxruntime:int8]
[--upstream DIR --upstream-python PY] [--json out.json]``.
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
SHARED = ROOT.parent / "shared"
KEYS = SHARED / "docs" / "state-dict-keys" / "ram_released.tsv"
PARITY_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "camera.png")
NUM_TAGS = 4585
#: RAM's per-class thresholds (the acceptance's measure): ../shared's copy of upstream's file, when present.
RAM_THRESHOLDS = SHARED / "upstream" / "ram_tag_list_threshold.txt"
#: Images whose scores every backend saves for the agreement (two batches of four).
AGREEMENT_IMAGES = 8
DEFAULT_RUNS = ("torch:fp32", "torch:bf16", "torch:int8", "torch-compiled:bf16", "torch-compiled:int8",
                "onnxruntime:fp32", "onnxruntime:int8")
#: Instruction-set caps of ``--dispatch avx2``: ATen's kernels, oneDNN's (matmuls, int8) and MKL's.
AVX2_LIMITS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


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
    partial = path.with_suffix(".partial")
    torch.save({"model": state}, partial)
    partial.replace(path)


def eval_images(count: int) -> list:
    """The images every backend scores: the parity photographs (cycled), or seeded noise without ../shared."""
    import numpy as np
    from PIL import Image

    photos = [SHARED / "fixtures" / "parity" / name for name in PARITY_IMAGES]
    if all(p.is_file() for p in photos):
        images = [Image.open(photos[i % len(photos)]).convert("RGB") for i in range(count)]
        return [im if (i // len(photos)) % 2 == 0 else im.transpose(Image.FLIP_LEFT_RIGHT)
                for i, im in enumerate(images)]
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(count)]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def _emit(result: dict) -> None:
    import torch

    print(json.dumps({**result, "peak_rss_gb": _peak_rss_gb(), "threads": torch.get_num_threads()}))


def _time(run, batch, repeats: int) -> tuple[float, object]:
    """Images/s over ``repeats`` calls after a warm-up call, and the last call's output."""
    out = run(batch)  # warm-up: first touch of memory-mapped weights, compilation
    start = time.perf_counter()
    for _ in range(repeats):
        out = run(batch)
    return len(batch) * repeats / (time.perf_counter() - start), out


# -- children: one measurement each, in its own process -------------------------------------------------------


def realistic_thresholds(reference, target: int) -> tuple:
    """Per-class thresholds over which ``target`` tags pass per image of ``reference`` (N, C) fp32 scores on
    average: class c's threshold is its mean score plus k times its standard deviation over those images, one k
    for all classes (the module docstring says why)."""
    import numpy as np

    mean, std = reference.mean(axis=0), reference.std(axis=0) + 1e-7
    z = (reference - mean) / std
    k = float(np.sort(z.ravel())[::-1][target * len(reference)])
    return (mean + k * std).astype(np.float32), k


def export_child(args: argparse.Namespace) -> None:
    """The ONNX export (fp32 and static int8, calibrated on the default calibration photographs), once."""
    from fiftyone_ram import load_tagger
    from fiftyone_ram.export import ExportError, export_onnx, read_export
    from fiftyone_ram.tagger import calibration_images

    folder = Path(args.folder)
    checkpoint = folder / "ram_random.pth"
    try:  # exported by an earlier run from this checkpoint: reused
        export = read_export(folder / "onnx")
        same = export.manifest["checkpoint"]["size"] == checkpoint.stat().st_size
        if same and set(export.models) == {"fp32", "int8"}:
            _report_export(export, 0.0)
            return
    except (ExportError, KeyError, TypeError):
        pass
    tagger = load_tagger("ram_swin_large_14m", checkpoint, tag_list=folder / "tags.txt", device="cpu",
                         precision="fp32")
    start = time.perf_counter()
    export = export_onnx(tagger, folder / "onnx", int8=True, calibration=calibration_images(), overwrite=True)
    _report_export(export, time.perf_counter() - start)


def _report_export(export, seconds: float) -> None:
    sizes = {v: (export.path / n).stat().st_size + _data_size(export.path / n) for v, n in export.models.items()}
    print(json.dumps({"seconds": seconds, "sizes": sizes,
                      "agreement": export.manifest["agreement"]}))


def _data_size(model: Path) -> int:
    data = model.with_name(model.name + ".data")
    return data.stat().st_size if data.is_file() else 0


def torch_child(args: argparse.Namespace) -> None:
    import numpy as np

    from fiftyone_ram import load_tagger

    folder = Path(args.folder)
    start = time.perf_counter()
    tagger = load_tagger("ram_swin_large_14m", folder / "ram_random.pth", tag_list=folder / "tags.txt",
                         device="cpu", batch_size=args.batch, precision=args.precision)
    loaded = time.perf_counter() - start
    if args.backend == "torch-compiled":
        tagger.compile()
    images = eval_images(args.batch)
    first = time.perf_counter()
    tagger.predict(images)
    first = time.perf_counter() - first
    speed, _ = _time(tagger.predict, images, args.repeats)
    probs = tagger.probabilities(eval_images(AGREEMENT_IMAGES))  # the scores, for the agreement (untimed)
    np.save(folder / f"probs_{args.key}.npy", probs)
    _emit({"backend": args.backend, "precision": tagger.precision, "images_per_s": speed, "load_s": loaded,
           "first_batch_s": first})


def onnx_child(args: argparse.Namespace) -> None:
    import numpy as np

    from fiftyone_ram.export import read_export
    from fiftyone_ram.export.runtime import open_session, run_session, sigmoid
    from fiftyone_ram.images import preprocess

    folder = Path(args.folder)
    export = read_export(folder / "onnx")
    start = time.perf_counter()
    session = open_session(export.model_path(args.precision))
    loaded = time.perf_counter() - start
    images = eval_images(args.batch)
    def run(batch):
        return run_session(session, preprocess(batch, export.image_size).numpy())[0]

    speed, _ = _time(run, images, args.repeats)
    agreement_images = eval_images(AGREEMENT_IMAGES)
    logits = [run(agreement_images[i:i + args.batch]) for i in range(0, len(agreement_images), args.batch)]
    np.save(folder / f"probs_{args.key}.npy", sigmoid(np.concatenate(logits)))
    _emit({"backend": "onnxruntime", "precision": args.precision, "images_per_s": speed, "load_s": loaded})


def upstream_child(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.upstream)
    import numpy as np
    import torch
    from ram import get_transform
    from ram.models import ram

    folder = Path(args.folder)
    model = ram(pretrained=str(folder / "ram_random.pth"), image_size=384, vit="swin_l",
                text_encoder_type=str(SHARED / "fixtures" / "parity")).eval()
    transform = get_transform(image_size=384)
    pixels = torch.stack([transform(image) for image in eval_images(args.batch)])
    with torch.no_grad():
        speed, _ = _time(model.generate_tag, pixels, args.repeats)
        # its scores, for the record: the same head and logit layer generate_tag runs
        pixels = torch.stack([transform(image) for image in eval_images(AGREEMENT_IMAGES)])
        embeds = model.image_proj(model.visual_encoder(pixels))
        label_embed = torch.nn.functional.relu(model.wordvec_proj(model.label_embed)).unsqueeze(0)
        label_embed = label_embed.repeat(len(pixels), 1, 1)
        atts = torch.ones(embeds.size()[:-1], dtype=torch.long)
        tagging = model.tagging_head(encoder_embeds=label_embed, encoder_hidden_states=embeds,
                                     encoder_attention_mask=atts, return_dict=False, mode="tagging")
        probs = torch.sigmoid(model.fc(tagging[0]).squeeze(-1)).numpy()
    np.save(folder / f"probs_{args.key}.npy", probs)
    _emit({"backend": "upstream", "precision": "fp32", "images_per_s": speed})


# -- the parent ---------------------------------------------------------------------------------------------


def _child(command: list[str], env: dict[str, str] | None = None) -> dict:
    load = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200], "load": load}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "load": (load + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="backend:precision pairs")
    parser.add_argument("--dispatch", nargs="+", choices=["native", "avx2"], default=["native", "avx2"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tags-per-image", type=int, default=30, help="what the calibrated thresholds pass")
    parser.add_argument("--upstream", help="checkout of upstream recognize-anything to measure side by side")
    parser.add_argument("--upstream-python", default=sys.executable, help="interpreter that runs upstream")
    parser.add_argument("--json", dest="json_out", help="also write the rows here")
    for hidden in ("--child", "--backend", "--precision", "--folder", "--key"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    children = {"export": export_child, "torch": torch_child,
                "torch-compiled": torch_child, "onnxruntime": onnx_child, "upstream": upstream_child}
    if args.child:
        return children[args.child](args)

    folder = bench_dir()
    checkpoint = folder / "ram_random.pth"
    if not checkpoint.is_file():
        print(f"writing a random upstream-layout RAM checkpoint to {checkpoint} ...", flush=True)
        make_checkpoint(checkpoint, KEYS)
    (folder / "tags.txt").write_text("".join(f"tag {i}\n" for i in range(NUM_TAGS)))
    print(f"checkpoint: {checkpoint} ({checkpoint.stat().st_size / 1e9:.2f} GB)", flush=True)
    from fiftyone_ram.hardware import describe

    print("ran on: " + ", ".join(f"{k} {v}" for k, v in describe("cpu").items()), flush=True)
    base = [sys.executable, __file__, "--folder", str(folder), "--batch", str(args.batch),
            "--repeats", str(args.repeats), "--tags-per-image", str(args.tags_per_image)]
    runs = [tuple(run.split(":", 1)) for run in args.runs]
    if any(backend == "onnxruntime" for backend, _ in runs):
        exported = _child(base + ["--child", "export"])
        if "error" in exported:
            print(f"ONNX export failed: {exported['error']}", flush=True)
        else:
            made = f"in {exported['seconds']:.0f} s" if exported["seconds"] else "(from an earlier run)"
            print(f"ONNX export {made}: " + "; ".join(
                f"{v} {exported['sizes'][v] / 1e6:.0f} MB, max |Δp| vs torch fp32 "
                f"{a['max_abs_probability']:.2g} on {a['images']} calibration images"
                for v, a in exported["agreement"].items()), flush=True)
    rows = []
    for dispatch in args.dispatch:
        env = AVX2_LIMITS if dispatch == "avx2" else {}
        plan = [("torch", "fp32")] + [r for r in runs if r != ("torch", "fp32")]
        if args.upstream:
            plan.insert(0, ("upstream", "fp32"))
        for backend, precision in plan:
            key = f"{dispatch}_{backend}_{precision}"
            python = args.upstream_python if backend == "upstream" else sys.executable
            command = [python, __file__, *base[2:], "--child", backend, "--backend", backend, "--precision",
                       precision, "--key", key]
            if backend == "upstream":
                command += ["--upstream", args.upstream]
            row = {"dispatch": dispatch, "backend": backend, "asked": precision,
                   **_child(command, env)}
            if backend == "onnxruntime" and dispatch == "avx2":
                row["note"] = "onnxruntime ignores the caps"
            rows.append(row)
            print(_format(row), flush=True)
    calibrated = _compare(rows, folder, args.tags_per_image)
    print(f"\nRAM Swin-L 384, batch {args.batch}, CPU, {rows[0].get('threads', '?')} threads. Per-class thresholds: "
          f"each class's mean fp32 score + {calibrated['k']:.2f} std over the {AGREEMENT_IMAGES} agreement images "
          f"({args.tags_per_image} tags per image on average); F1 and max |Δp| on those images against our torch "
          "fp32 of the same dispatch; F1@RAM: the same at RAM's per-class thresholds (../shared/upstream, ~2,000 "
          "tags per image on random weights); F1@0.65: at a flat 0.65; load: 1-minute load average around each run")
    print(f"{'dispatch':<9}{'backend':<16}{'precision':>9}{'images/s':>10}{'x upstream':>11}{'F1':>8}{'F1@RAM':>8}{'F1@0.65':>8}"
          f"{'max|Δp|':>9}{'tags/img':>9}{'RSS GB':>8}{'load':>6}  note")
    for row in rows:
        print(_format(row, table=True))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": describe("cpu"), "thresholds": calibrated,
                                                   "rows": rows}, indent=1))


def _format(row: dict, table: bool = False) -> str:
    if "error" in row:
        return f"{row['dispatch']:<9}{row['backend']:<16}{row['asked']:>9}  failed: {row['error']}"
    if not table:
        return (f"{row['dispatch']:<9}{row['backend']:<16}{row['precision']:>9}{row['images_per_s']:>10.3f} "
                f"images/s, load {row['load']:.1f}" + (f", first batch {row['first_batch_s']:.0f} s"
                                                         if "first_batch_s" in row else ""))
    ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
    f1 = f"{row['tag_f1']:.4f}" if "tag_f1" in row else ""
    flat = f"{row['tag_f1_flat']:.4f}" if "tag_f1_flat" in row else ""
    at_ram = f"{row['tag_f1_ram']:.4f}" if "tag_f1_ram" in row else ""
    delta = f"{row['max_abs_delta']:.4f}" if "max_abs_delta" in row else ""
    tags = f"{row['tags_per_image']:.1f}" if "tags_per_image" in row else ""
    note = row.get("note", "")
    if row["backend"] == "torch-compiled":
        note = f"first batch (compile) {row['first_batch_s']:.0f} s " + note
    return (f"{row['dispatch']:<9}{row['backend']:<16}{row['precision']:>9}{row['images_per_s']:>10.3f}{ratio:>11}"
            f"{f1:>8}{at_ram:>8}{flat:>8}{delta:>9}{tags:>9}{row['peak_rss_gb']:>8.2f}{row['load']:>6.1f}  {note}")


def _compare(rows: list[dict], folder: Path, target: int) -> dict:
    """Ratio to upstream fp32 and agreement with our torch fp32, per dispatch, at the realistic thresholds
    (calibrated on the native torch fp32 scores) and at a flat 0.65."""
    import numpy as np

    from fiftyone_ram.evaluation.agreement import agreement
    from fiftyone_ram.tag_files import read_thresholds

    native = folder / "probs_native_torch_fp32.npy"
    anchor = native if native.is_file() else next(folder.glob("probs_*_torch_fp32.npy"))
    thresholds, k = realistic_thresholds(np.load(anchor), target)
    ram = read_thresholds(RAM_THRESHOLDS, NUM_TAGS) if RAM_THRESHOLDS.is_file() else None
    for dispatch in {row["dispatch"] for row in rows}:
        mine = [r for r in rows if r["dispatch"] == dispatch and "error" not in r]
        upstream = next((r for r in mine if r["backend"] == "upstream"), None)
        reference_file = folder / f"probs_{dispatch}_torch_fp32.npy"
        reference = np.load(reference_file) if reference_file.is_file() else None
        for row in mine:
            if upstream is not None:
                row["ratio"] = row["images_per_s"] / upstream["images_per_s"]
            probs = np.load(folder / f"probs_{dispatch}_{row['backend']}_{row['asked']}.npy")
            row["tags_per_image"] = float((probs > thresholds).sum(axis=1).mean())
            if reference is not None:
                row.update(agreement(reference, probs, thresholds).to_dict())
                row["tag_f1_flat"] = agreement(reference, probs, 0.65).tag_f1
                if ram is not None:
                    row["tag_f1_ram"] = agreement(reference, probs, ram).tag_f1
    return {"k": k, "tags_per_image": target}


if __name__ == "__main__":
    main()
