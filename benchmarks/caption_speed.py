"""Seconds per Tag2Text caption (Swin-B 384, fp32, CPU) with and without the decoder's key/value cache.

The checkpoint is random weights in the released Tag2Text layout (every key and shape of the released file,
captioning branch included, ~1.7 GB), written once to the cache by ``tagging_cpu.make_checkpoint``. The
tokenizer is the fixture's WordPiece vocabulary padded with filler tokens to bert-base's 30522 (plus [DEC] and
[ENC]: the released 30524), so every shape is the released one and nothing is downloaded.

Captions use upstream's defaults (3 beams, max length 30, min length 10). Random weights rarely pick [SEP],
so every caption runs to the full 30 tokens: the longest search a caption can take. The image tokens are
computed once per image and reported apart; the caption time is the tag encoder plus the search.
"Without cache" re-runs the decoder over the whole prefix at every step (``use_cache=False``), as before the
cache; both give the same ids, which the script checks.

Usage: ``python benchmarks/caption_speed.py [--images 4] [--batch 1] [--repeats 2] [--beams 3]
[--threads N]``. ``--batch 4`` is what ``Tagger.caption`` does by default (``batch_size=4``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from tagging_cpu import _images, bench_dir, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT.parent / "shared" / "docs" / "state-dict-keys" / "tag2text_released.tsv"
FIXTURE_VOCAB = ROOT.parent / "shared" / "fixtures" / "parity" / "vocab.txt"
BERT_BASE_VOCAB = 30522  # bert-base-uncased; [DEC] and [ENC] make the released decoder's 30524
TAGS = "dog | grass | frisbee | park | tree | person | sky | play"


def write_vocab(path: Path) -> Path:
    tokens = FIXTURE_VOCAB.read_text().splitlines()
    tokens += [f"filler{i}" for i in range(BERT_BASE_VOCAB - len(tokens))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n")
    return path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="captions per measurement")
    parser.add_argument("--batch", type=int, default=1, help="images per generate_caption_ids call")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the images per path")
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch
    import transformers

    from fiftyone_ram.models.captioner import generate_caption_ids, load_tokenizer
    from fiftyone_ram.models.factory import load_model
    from fiftyone_ram.models.registry import get_variant

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = bench_dir()
    checkpoint = folder / "tag2text_random.pth"
    if not checkpoint.is_file():
        print(f"writing a random upstream-layout Tag2Text checkpoint to {checkpoint} ...", flush=True)
        make_checkpoint(checkpoint, KEYS)
    tokenizer = load_tokenizer(write_vocab(folder / "tag2text_vocab" / "vocab.txt"))
    variant = get_variant("tag2text_swin_14m")
    model = load_model(variant.architecture, checkpoint, variant.labels.num_classes)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

    from fiftyone_ram.images import preprocess

    pixels = preprocess(_images(args.images), variant.architecture.image_size)
    options = dict(num_beams=args.beams, max_length=30, min_length=10)
    with torch.inference_mode():
        start = time.perf_counter()
        embeds = [model.image_embeds(pixels[i:i + args.batch]) for i in range(0, args.images, args.batch)]
        swin = (time.perf_counter() - start) / args.images
        tags = [[TAGS] * len(e) for e in embeds]
        ids, seconds = {}, {}
        for use_cache in (False, True):  # first call of each path: memory-mapped weights read, kernels warmed
            generate_caption_ids(model, tokenizer, embeds[0], tags[0], use_cache=use_cache, **options)
        for use_cache in (False, True) * args.repeats:  # interleaved, so that a load change hits both
            start = time.perf_counter()
            got = [seq for e, t in zip(embeds, tags)
                   for seq in generate_caption_ids(model, tokenizer, e, t, use_cache=use_cache, **options)]
            seconds.setdefault(use_cache, []).append((time.perf_counter() - start) / args.images)
            ids.setdefault(use_cache, got)
    if ids[True] != ids[False]:
        raise SystemExit("the cached and uncached captions differ")
    lengths = sorted({len(seq) for seq in ids[True]})
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nTag2Text Swin-B 384, fp32, {args.beams} beams, {args.images} images in batches of {args.batch}, "
          f"caption lengths {lengths} tokens (ids equal on both paths)")
    print(f"image tokens (Swin-B): {swin:.3f} s/image")
    print(f"{'decoder':<16}{'s/caption (best)':>18}{'all passes':>28}")
    for use_cache, label in ((False, "without cache"), (True, "with cache")):
        runs = seconds[use_cache]
        print(f"{label:<16}{min(runs):>18.3f}{' '.join(f'{s:.3f}' for s in runs):>28}")
    print(f"speed-up: {min(seconds[False]) / min(seconds[True]):.1f}x")


if __name__ == "__main__":
    main()
