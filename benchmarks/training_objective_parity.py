"""The training objective against upstream's on held-out batches: every loss and the gradient of upstream's
total, for the tiny parity checkpoints of RAM, RAM++ and Tag2Text, in eval mode (deterministic).

The batches are made here from a seed (the parity images flipped and reordered, random captions over the tiny
vocabulary, random tag targets, CLIP stand-ins), so they are not the training fixture's. Upstream's models are
built at the tiny sizes by a child process in an interpreter that runs upstream (transformers 4.40, timm 0.4.12),
from a checkout at commit 7cb804a; both sides get the same batch file.

Usage: ``python benchmarks/training_objective_parity.py --upstream DIR --upstream-python PY [--seeds 1 2 3]``.
Prints, per family and batch, each loss's relative difference and the largest relative difference of a
parameter gradient (over the parameters both sides name alike: everything but most of the Swin, whose keys
timm lays out differently).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARITY = SHARED / "fixtures" / "parity"
UPSTREAM_LISTS = SHARED / "upstream"
FAMILIES = ("ram", "ram_plus", "tag2text")
NAMES = {"ram": ("caption", "tag", "distillation"), "ram_plus": ("tag", "distillation", "alignment"),
         "tag2text": ("caption", "tag")}


def make_batch(seed: int, pixel_values: torch.Tensor, words: list[str], classes: dict[str, int]) -> dict:
    """A held-out batch: 2-4 of the parity images, some flipped; captions of 2-45 words (one beyond the 40-token
    limit now and then); 0-30 parsed tags per image (long tag strings hit the 40-token limit too)."""
    g = torch.Generator().manual_seed(seed)
    size = int(torch.randint(2, 5, (1,), generator=g))
    order = torch.randperm(len(pixel_values), generator=g)[:size]
    pixels = pixel_values[order].clone()
    flip = torch.rand(size, generator=g) < 0.5
    pixels[flip] = pixels[flip].flip(-1)
    captions = []
    for _ in range(size):
        length = int(torch.randint(2, 46 if torch.rand(1, generator=g) < 0.3 else 15, (1,), generator=g))
        captions.append("a picture of " + " ".join(words[int(i)] for i in torch.randint(len(words), (length,),
                                                                                           generator=g)))
    batch = {"pixel_values": pixels, "captions": captions,
             "clip_image_features": torch.randn(size, 512, generator=g),
             "caption_text_embeds": torch.nn.functional.normalize(torch.randn(size, 512, generator=g), dim=-1)}
    for family, count in classes.items():
        tags = (torch.rand(size, count, generator=g) < 0.003).long()
        parsed = torch.zeros(size, count, dtype=torch.long)
        for row in range(size):
            parsed[row, torch.randperm(count, generator=g)[:int(torch.randint(0, 31, (1,), generator=g))]] = 1
        batch[family] = {"tag_targets": tags, "parse_targets": parsed}
    return batch


def upstream_total(family: str, losses: dict[str, torch.Tensor]) -> torch.Tensor:
    if family == "ram_plus":
        return losses["tag"] + losses["distillation"] + losses["alignment"]
    total = losses["caption"] + losses["tag"] / (losses["tag"] / losses["caption"]).detach()
    return total + losses["distillation"] if family == "ram" else total


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters(remove_duplicate=False)
            if p.grad is not None}


# -- the upstream side (runs in the upstream interpreter) ----------------------------------------------------

def _build_upstream(family: str, upstream: str):
    import importlib

    sys.path.insert(0, upstream)
    from transformers import BertConfig

    # ram.models re-exports factory functions named like its submodules: take the modules themselves
    ram_module, ram_plus_module, tag2text_module = (importlib.import_module(f"ram.models.{name}")
                                                    for name in ("ram", "ram_plus", "tag2text"))

    fixtures = json.loads((PARITY / "fixtures_tiny.json").read_text())
    arch = fixtures["config"]
    swin = arch["swin"]
    vision = {"image_res": arch["image_size"], "vision_width": swin["embed_dim"] * 2 ** (len(swin["depths"]) - 1),
              **swin}
    for module in (ram_module, ram_plus_module, tag2text_module):
        module.read_json = lambda path: dict(vision)  # the Swin config files name the released sizes
    read = BertConfig.from_json_file.__func__

    def tiny(cls, path):
        config = read(cls, path)
        size = arch["q2l"] if "q2l" in str(path) else arch["bert"]
        for key, value in size.items():
            setattr(config, key, value)
        config.encoder_width = size["hidden_size"]  # the text decoder's cross-attention width (others set it)
        if "q2l" not in str(path):
            config.vocab_size = fixtures["tokenizer"]["length"]
        return config

    BertConfig.from_json_file = classmethod(tiny)
    common = dict(image_size=arch["image_size"], text_encoder_type=str(PARITY))
    if family == "tag2text":
        model = tag2text_module.Tag2Text(vit="swin_b", tag_list=str(UPSTREAM_LISTS / "tag2text_ori_tag_list.txt"),
                                         **common)
    else:
        cls = ram_module.RAM if family == "ram" else ram_plus_module.RAM_plus
        model = cls(vit="swin_l", tag_list=str(UPSTREAM_LISTS / "ram_tag_list.txt"),
                    tag_list_chinese=str(UPSTREAM_LISTS / "ram_tag_list_chinese.txt"), **common)
    state = torch.load(PARITY / f"{family}_tiny.pth", map_location="cpu")["model"]
    state = {k: v for k, v in state.items() if "relative_position_index" not in k and "attn_mask" not in k}
    if family == "ram_plus":  # the tiny file has 3 descriptions per tag, the constructor assumes 51
        model.label_embed = torch.nn.Parameter(torch.zeros_like(state["label_embed"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    stray = [k for k in missing if "relative_position_index" not in k and "attn_mask" not in k
             and not k.endswith("position_ids")]
    if stray or unexpected:
        raise RuntimeError(f"upstream {family}: missing {stray[:5]}, unexpected {unexpected[:5]}")
    model.label_embed.requires_grad = False  # as finetune.py
    return model.eval()


def upstream_child(upstream: str, batches_path: Path, out: Path) -> None:
    batches = torch.load(batches_path)
    results = {}
    for family in FAMILIES:
        model = _build_upstream(family, upstream)
        rows = []
        for batch in batches:
            model.zero_grad(set_to_none=True)
            targets = batch[family]
            if family == "ram":
                values = model(batch["pixel_values"], batch["captions"], targets["tag_targets"],
                               targets["parse_targets"], batch["clip_image_features"])
            elif family == "ram_plus":
                values = model(batch["pixel_values"], batch["captions"], targets["tag_targets"],
                               batch["clip_image_features"], batch["caption_text_embeds"])
            else:
                values = model(batch["pixel_values"], batch["captions"], targets["parse_targets"])
            losses = dict(zip(NAMES[family], values))
            upstream_total(family, losses).backward()
            rows.append({"losses": {k: v.item() for k, v in losses.items()}, "grads": _grads(model)})
        results[family] = rows
    torch.save(results, out)


# -- our side -------------------------------------------------------------------------------------------------

def our_results(batches: list[dict]) -> dict:
    from fiftyone_ram import load_tagger
    from fiftyone_ram.training import training_losses

    results = {}
    for family in FAMILIES:
        lists = ({"tag_list": UPSTREAM_LISTS / "tag2text_ori_tag_list.txt"} if family == "tag2text" else
                 {"tag_list": UPSTREAM_LISTS / "ram_tag_list.txt",
                  "thresholds": UPSTREAM_LISTS / "ram_tag_list_threshold.txt"})
        tagger = load_tagger(PARITY / "fixtures_tiny.json", PARITY / f"{family}_tiny.pth", family=family,
                             device="cpu", caption_branch=True, **lists)
        tagger.model.label_embed.requires_grad_(False) if family != "tag2text" else None
        rows = []
        for batch in batches:
            tagger.model.zero_grad(set_to_none=True)
            targets = batch[family]
            inputs = {"ram": dict(captions=batch["captions"], tag_targets=targets["tag_targets"],
                                  parse_targets=targets["parse_targets"],
                                  clip_image_features=batch["clip_image_features"]),
                      "ram_plus": dict(tag_targets=targets["tag_targets"],
                                       clip_image_features=batch["clip_image_features"],
                                       caption_text_embeds=batch["caption_text_embeds"]),
                      "tag2text": dict(captions=batch["captions"], tag_targets=targets["parse_targets"])}[family]
            losses = training_losses(tagger, batch["pixel_values"], **inputs)
            upstream_total(family, losses).backward()
            rows.append({"losses": {k: v.item() for k, v in losses.items()}, "grads": _grads(tagger.model)})
        results[family] = rows
    return results


def compare(ours: dict, theirs: dict) -> list[str]:
    lines = [f"{'family':9} {'batch':>5} {'loss':13} {'ours':>14} {'upstream':>14} {'rel. diff':>10}"]
    for family in FAMILIES:
        for i, (mine, ref) in enumerate(zip(ours[family], theirs[family])):
            for name, want in ref["losses"].items():
                got = mine["losses"][name]
                lines.append(f"{family:9} {i:>5} {name:13} {got:14.6f} {want:14.6f} "
                             f"{abs(got - want) / max(abs(want), 1e-12):10.2e}")
            # timm moves each Swin downsample to the next stage: same names, other tensors
            shared = sorted(n for n in set(mine["grads"]) & set(ref["grads"]) if ".downsample." not in n)
            # A gradient that is zero in exact arithmetic (cross-attention key biases: they shift every score
            # of a query alike) is rounding noise on both sides: relative differences are taken only where a
            # tensor's gradient is not negligible against the largest one.
            scale = max(ref["grads"][n].norm().item() for n in shared)
            worst, where, skipped = 0.0, "", 0
            for name in shared:
                a, b = mine["grads"][name], ref["grads"][name]
                if b.norm().item() <= 1e-6 * scale:
                    skipped += 1
                    worst_abs = (a - b).norm().item() / scale
                    if worst_abs > 1e-5:
                        lines.append(f"  {name}: |diff| {worst_abs:.2e} of the largest gradient")
                    continue
                rel = ((a - b).norm() / b.norm()).item()
                if rel > worst:
                    worst, where = rel, name
            only_theirs = sorted(set(ref["grads"]) - set(mine["grads"]))
            lines.append(f"{family:9} {i:>5} gradients: {len(shared) - skipped} tensors compared, largest relative "
                         f"difference {worst:.2e} ({where}); {skipped} zero in exact arithmetic; names only "
                         f"upstream has: {len(only_theirs)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="checkout of recognize-anything at 7cb804a")
    parser.add_argument("--upstream-python", required=True, help="interpreter that runs upstream")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return upstream_child(args.upstream, Path(args.child[0]), Path(args.child[1]))
    torch.manual_seed(0)
    fixtures = json.loads((PARITY / "fixtures_tiny.json").read_text())
    words = [w for w in (PARITY / "vocab.txt").read_text().split("\n") if w and not w.startswith("[")]
    pixel_values = torch.load(PARITY / "ram_tiny_expected.pt", weights_only=True)["pixel_values"]
    classes = {f: fixtures["models"][f]["num_classes"] for f in FAMILIES}
    batches = [make_batch(seed, pixel_values, words, classes) for seed in args.seeds]
    with tempfile.TemporaryDirectory() as tmp:
        batch_file, out = Path(tmp) / "batches.pt", Path(tmp) / "upstream.pt"
        torch.save(batches, batch_file)
        done = subprocess.run([args.upstream_python, __file__, "--upstream", args.upstream, "--upstream-python",
                               args.upstream_python, "--child", str(batch_file), str(out)],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"upstream failed:\n{done.stderr[-3000:]}")
        theirs = torch.load(out, weights_only=True)
    print("\n".join(compare(our_results(batches), theirs)))


if __name__ == "__main__":
    main()
