"""Full-size agreement with upstream: RAM Swin-L 384 on the random released-layout checkpoint of
``tagging_cpu.py``, upstream's ``generate_tag`` (run from a checkout with an interpreter that runs it) versus
``load_tagger("ram_swin_large_14m", ...)``: max |Δ| of image embeddings and logits, and equal tag strings.

Usage: ``python benchmarks/full_size_parity.py --upstream DIR --upstream-python PY``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tagging_cpu import KEYS, ROOT, bench_dir, make_checkpoint  # noqa: E402

IMAGES = [ROOT.parent / "shared" / "fixtures" / "parity" / f"{n}.png" for n in ("chelsea", "camera", "coffee")]


def upstream_outputs(upstream: str, checkpoint: Path, out: Path) -> None:
    """Runs in the upstream interpreter: capture the image projection and fc outputs of generate_tag."""
    sys.path.insert(0, upstream)
    from PIL import Image
    from ram import get_transform
    from ram.models import ram

    model = ram(pretrained=str(checkpoint), image_size=384, vit="swin_l",
                text_encoder_type=str(ROOT.parent / "shared" / "fixtures" / "parity")).eval()
    captured = {}
    model.fc.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o.squeeze(-1)))
    model.image_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("image_embeds", o))
    transform = get_transform(image_size=384)
    pixels = torch.stack([transform(Image.open(p).convert("RGB")) for p in IMAGES])
    with torch.no_grad():
        tags, _ = model.generate_tag(pixels)
    torch.save({**captured, "tags": tags}, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--upstream-python", default=sys.executable)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    checkpoint = bench_dir() / "ram_random.pth"
    if args.child_out:
        return upstream_outputs(args.upstream, checkpoint, Path(args.child_out))
    if not checkpoint.is_file():
        make_checkpoint(checkpoint, KEYS)
    data = Path(args.upstream) / "ram" / "data"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "upstream.pt"
        subprocess.run([args.upstream_python, __file__, "--upstream", args.upstream, "--child-out", str(out)],
                       check=True, capture_output=True)
        expected = torch.load(out, weights_only=True)
    from fiftyone_ram import load_tagger

    tagger = load_tagger("ram_swin_large_14m", checkpoint, tag_list=data / "ram_tag_list.txt",
                         thresholds=data / "ram_tag_list_threshold.txt", device="cpu")
    with torch.inference_mode():
        embeds = tagger.model.image_embeds(tagger.preprocess([str(p) for p in IMAGES]))
        logits = tagger.model.logits(embeds)
    ours = [" | ".join(name for name, _ in row) for row in tagger.predict([str(p) for p in IMAGES])]
    print(f"image_embeds max |diff|: {(embeds - expected['image_embeds']).abs().max().item():.2e}")
    print(f"logits       max |diff|: {(logits - expected['logits']).abs().max().item():.2e}")
    print(f"tag strings equal: {ours == list(expected['tags'])} ({len(IMAGES)} images)")


if __name__ == "__main__":
    main()
