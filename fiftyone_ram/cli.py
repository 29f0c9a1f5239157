"""The ``fiftyone-ram`` command line: tag images, manage models, evaluate and clean tags."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fiftyone-ram")
def main() -> None:
    """Recognize Anything (RAM, RAM++, Tag2Text) image tagging for FiftyOne."""


def tagger_options(command):
    """Options that choose and configure a tagger; shared by every command that loads one."""
    options = [
        click.option("--model", "model_name", default="ram_plus_swin_large_14m", show_default=True,
                     help="Released model (ram_plus_swin_large_14m, ram_swin_large_14m, tag2text_swin_14m) or a "
                          "family (ram, ram_plus, tag2text) with --config."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), help="Upstream checkpoint (.pth)."),
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                     help="JSON architecture config (may name the family)."),
        click.option("--tag-list", type=click.Path(exists=True, dir_okay=False), help="One tag per line."),
        click.option("--tag-list-chinese", type=click.Path(exists=True, dir_okay=False)),
        click.option("--thresholds", type=click.Path(exists=True, dir_okay=False),
                     help="Per-class thresholds, one per line (upstream's format)."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def load_tagger_from_options(model_name: str, checkpoint: str | None, config_path: str | None,
                             tag_list: str | None, tag_list_chinese: str | None, thresholds: str | None,
                             device: str | None, batch_size: int = 4):
    from fiftyone_ram import load_tagger
    from fiftyone_ram.models.config import FAMILIES

    family = model_name if model_name in FAMILIES else None
    return load_tagger(config_path or model_name, checkpoint, family=family, tag_list=tag_list,
                       tag_list_chinese=tag_list_chinese, thresholds=thresholds, device=device,
                       batch_size=batch_size)


def iter_images(inputs: tuple[str, ...]) -> Iterator[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@tagger_options
@click.option("--threshold", type=float, default=None, help="One threshold for all tags instead of per-class ones.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.option("--caption/--no-caption", default=None, help="Tag2Text: also print a caption (default: on).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def tag(inputs, model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds, device, threshold,
        lang, caption, as_json):
    """Tag images (files or folders) and print each tag with its probability."""
    from fiftyone_ram.images import ImageError, load_image

    tagger = load_tagger_from_options(model_name, checkpoint, config_path, tag_list, tag_list_chinese,
                                      thresholds, device)
    with_caption = tagger.family == "tag2text" if caption is None else caption
    failed = 0
    for path in iter_images(inputs):
        try:
            image = load_image(path)
        except ImageError as exc:
            failed += 1
            _emit({"image": str(path), "error": str(exc)}, as_json, err=True)
            continue
        tags = tagger.predict([image], threshold=threshold, language=lang)[0]
        record = {"image": str(path), "tags": [{"tag": name, "probability": round(p, 6)} for name, p in tags]}
        if with_caption:
            record["caption"] = tagger.caption([image])[0]
        _emit(record, as_json)
    if failed:
        click.echo(f"{failed} file(s) could not be read", err=True)
        raise SystemExit(1)


def _emit(record: dict, as_json: bool, err: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False), err=err)
    elif "error" in record:
        click.echo(f"{record['image']}: error: {record['error']}", err=True)
    else:
        line = " | ".join(f"{t['tag']} ({t['probability']:.2f})" for t in record["tags"])
        click.echo(f"{record['image']}: {line}")
        if "caption" in record:
            click.echo(f"  caption: {record['caption']}")


def _register_subcommands() -> None:
    """Commands that live next to the code they drive."""


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
