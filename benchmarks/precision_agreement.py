"""How far bf16 and int8 move the full-size taggers' answers from fp32: RAM (Swin-L 384, 4,585 tags), RAM++
(Swin-L 384, 51 descriptions per tag) and Tag2Text (Swin-B 384, 3,429 tags and its captioner), through
``load_tagger`` on the CPU, on real photographs.

Per family and precision: the tag-set F1 against fp32 at upstream's thresholds (RAM and RAM++: the per-class file
of ../shared/upstream; Tag2Text: its one threshold and overrides, as ``load_tagger`` applies them to upstream's tag
list), the same at per-class thresholds calibrated so that 30 tags pass per image (``tagging_cpu.py``'s
``realistic_thresholds``: each class's mean fp32 score plus k standard deviations, one k), tags per image, the
largest |Δprobability|, and for Tag2Text how many captions were produced (and how many equal fp32's).

The released weights cannot be downloaded here, so each family's checkpoint has random weights, written once to
the cache as ``tagging_cpu.py`` writes its own, but made by the model code: the family's network is built at the
released architecture (``models/registry.py``) and initialised as its modules initialise themselves (timm's Swin,
torch's Linear and embedding defaults). The label queries, which the model code leaves at zero because upstream
loads them from CLIP, are random unit vectors (what CLIP text embeddings are), and Tag2Text's per-class output
layer, zeros there too, is uniform in a Linear layer's default range. Tag2Text's captioner uses the
parity fixtures' small WordPiece vocabulary (bert-base-uncased's is a download). Random weights are far less
decisive than trained ones: many decisions sit within a few hundredths of their thresholds, so these F1s are a
pessimistic figure for a trained model (see docs/benchmarks.md, ``tagging_cpu.py``). The images: the five
parity photographs and three mirror images (``tagging_cpu.eval_images``).

Usage: ``python benchmarks/precision_agreement.py [--families ram ram_plus tag2text] [--precisions bf16 int8]
[--images 8] [--tags-per-image 30] [--captions 2] [--json out.json]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
UPSTREAM = SHARED / "upstream"
VOCAB = SHARED / "fixtures" / "parity" / "vocab.txt"
VARIANTS = {"ram": "ram_swin_large_14m", "ram_plus": "ram_plus_swin_large_14m", "tag2text": "tag2text_swin_14m"}


def _tagging_cpu():
    """``benchmarks/tagging_cpu.py`` as a module: its cache folder, images and calibrated thresholds."""
    spec = importlib.util.spec_from_file_location("tagging_cpu", ROOT / "benchmarks" / "tagging_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def label_files(family: str) -> dict[str, Path]:
    """Upstream's tag list (and RAM's per-class thresholds) for a family."""
    if family == "tag2text":
        return {"tag_list": UPSTREAM / "tag2text_ori_tag_list.txt"}
    return {"tag_list": UPSTREAM / "ram_tag_list.txt", "thresholds": UPSTREAM / "ram_tag_list_threshold.txt"}


def make_checkpoint(family: str, path: Path) -> None:
    """A random checkpoint in upstream's layout, initialised by the model code (see the module docstring)."""
    import torch

    from fiftyone_ram.models.captioner import load_tokenizer
    from fiftyone_ram.models.checkpoint import upstream_state_dict
    from fiftyone_ram.models.ram import RAM
    from fiftyone_ram.models.ram_plus import RAMPlus
    from fiftyone_ram.models.registry import get_variant
    from fiftyone_ram.models.tag2text import Tag2Text
    from fiftyone_ram.tag_files import read_tag_list

    config = get_variant(VARIANTS[family]).architecture
    classes = len(read_tag_list(label_files(family)["tag_list"]))
    torch.manual_seed(0)
    if family == "ram":
        model = RAM(config, classes)
    elif family == "ram_plus":
        model = RAMPlus(config, classes)
    else:
        model = Tag2Text(config, classes, vocab_size=len(load_tokenizer(VOCAB)))
    with torch.no_grad():
        if family != "tag2text":  # CLIP's unit text embeddings in upstream; zeros in the model code
            queries = torch.randn(model.label_embed.shape)
            model.label_embed.copy_(queries / queries.norm(dim=-1, keepdim=True))
        else:  # the per-class output layer, zeros in the model code: a Linear's default range, 1/sqrt(width)
            bound = model.fc.W.shape[-1] ** -0.5
            model.fc.W.uniform_(-bound, bound)
            model.fc.b.uniform_(-bound, bound)
    model.tie_weights()
    partial = path.with_suffix(".partial")
    torch.save({"model": upstream_state_dict(model)}, partial)
    partial.replace(path)


def measure(family: str, checkpoint: Path, precisions: list[str], images: list, captions: int,
            target: int, realistic_thresholds) -> list[dict]:

    from fiftyone_ram import load_tagger
    from fiftyone_ram.evaluation.agreement import agreement

    options = dict(device="cpu", tokenizer=str(VOCAB) if family == "tag2text" else None, **label_files(family))
    rows, reference, calibrated, fp32_captions = [], None, None, None
    for precision in ["fp32", *precisions]:
        started = time.perf_counter()
        tagger = load_tagger(VARIANTS[family], checkpoint, precision=precision, **options)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        probabilities = tagger.probabilities(images)
        seconds = time.perf_counter() - started
        written = tagger.caption(images[:captions]) if family == "tag2text" and captions else None
        if reference is None:
            reference, upstream = probabilities, tagger.thresholds
            calibrated, k = realistic_thresholds(reference, target)
            fp32_captions = written
        kept = ~tagger.excluded
        row = {"family": family, "precision": tagger.precision, "asked": precision, "load_s": loaded,
               "images_per_s": len(images) / seconds,
               "f1_upstream": agreement(reference[:, kept], probabilities[:, kept], upstream[kept]).tag_f1,
               "tags_upstream": float((probabilities[:, kept] > upstream[kept]).sum(1).mean()),
               "f1_calibrated": agreement(reference, probabilities, calibrated).tag_f1,
               "tags_calibrated": float((probabilities > calibrated).sum(1).mean()), "k": k,
               "max_abs_delta": agreement(reference, probabilities, calibrated).max_abs_delta,
               "load": os.getloadavg()[0]}
        if written is not None:
            row["captions"] = sum(bool(c and c.strip()) for c in written)
            row["captions_asked"] = len(written)
            row["captions_as_fp32"] = sum(a == b for a, b in zip(written, fp32_captions))
            row["caption_example"] = written[0]
        rows.append(row)
        print(_line(row), flush=True)
        del tagger
        gc.collect()
    return rows


def _line(row: dict) -> str:
    captions = (f"{row['captions']}/{row['captions_asked']} ({row['captions_as_fp32']} as fp32)"
                if "captions" in row else "-")
    asked = row["precision"] if row["asked"] == row["precision"] else f"{row['asked']}→{row['precision']}"
    return (f"{row['family']:<9}{asked:<10}{row['f1_upstream']:>10.4f}{row['tags_upstream']:>9.1f}"
            f"{row['f1_calibrated']:>10.4f}{row['tags_calibrated']:>9.1f}{row['max_abs_delta']:>9.4f}"
            f"{row['images_per_s']:>8.2f}{row['load']:>6.1f}  {captions}")


HEADER = (f"{'family':<9}{'precision':<10}{'F1 upst.':>10}{'tags/img':>9}{'F1 30/img':>10}{'tags/img':>9}"
          f"{'max|Δp|':>9}{'img/s':>8}{'load':>6}  captions produced")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--precisions", nargs="+", default=["bf16", "int8"],
                        help="compared with fp32 (auto: what this machine picks)")
    parser.add_argument("--images", type=int, default=8, help="photographs (the five parity ones, then mirrored)")
    parser.add_argument("--tags-per-image", type=int, default=30, help="what the calibrated thresholds pass")
    parser.add_argument("--captions", type=int, default=2, help="Tag2Text: images captioned per precision")
    parser.add_argument("--json", dest="json_out", help="also write the rows here")
    args = parser.parse_args()

    import torch

    from fiftyone_ram.hardware import describe

    tagging_cpu = _tagging_cpu()
    folder = tagging_cpu.bench_dir()
    print("ran on: " + ", ".join(f"{k} {v}" for k, v in describe("cpu").items()), flush=True)
    images = tagging_cpu.eval_images(args.images)
    print(HEADER, flush=True)
    rows = []
    for family in args.families:
        checkpoint = folder / f"{family}_model_init.pth"
        if not checkpoint.is_file():
            print(f"writing a random {VARIANTS[family]} checkpoint to {checkpoint} ...", flush=True)
            make_checkpoint(family, checkpoint)
        with torch.inference_mode():
            rows += measure(family, checkpoint, args.precisions, images, args.captions, args.tags_per_image,
                            tagging_cpu.realistic_thresholds)
    print(f"\nF1 against fp32 over {len(images)} photographs, (image, tag) pairs pooled; 'F1 upst.': upstream's "
          f"thresholds (Tag2Text's excluded tags left out), 'F1 30/img': per-class thresholds calibrated on the "
          f"fp32 scores to {args.tags_per_image} tags per image; tags/img: what the row passes there; max|Δp| over "
          f"every score; load: 1-minute load average after the row; captions: non-empty of those asked.")
    print(HEADER)
    for row in rows:
        print(_line(row))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": describe("cpu"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
