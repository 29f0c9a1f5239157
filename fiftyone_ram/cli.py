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
                             device: str | None, batch_size: int = 4, **vocabulary):
    """``vocabulary``: ``load_tagger``'s vocabulary options (tags, descriptions, keep_builtin, ...)."""
    from fiftyone_ram import load_tagger
    from fiftyone_ram.models.config import FAMILIES

    family = model_name if model_name in FAMILIES else None
    return load_tagger(config_path or model_name, checkpoint, family=family, tag_list=tag_list,
                       tag_list_chinese=tag_list_chinese, thresholds=thresholds, device=device,
                       batch_size=batch_size, **vocabulary)


def iter_images(inputs: tuple[str, ...]) -> Iterator[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


@main.command()
@click.argument("inputs", nargs=-1, required=False, type=click.Path())
@tagger_options
@click.option("--threshold", type=float, default=None, help="One threshold for all tags instead of per-class ones.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.option("--caption/--no-caption", default=None, help="Tag2Text: also print a caption (default: on).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option("--dataset", "dataset_name", default=None,
              help="Tag into this FiftyOne dataset (created from INPUTS if missing; INPUTS are added to it) "
                   "instead of printing.")
@click.option("--field", default="ram", show_default=True, help="With --dataset: the label field.")
@click.option("--resume", is_flag=True, help="With --dataset: tag only the samples without labels in --field.")
@click.option("--overwrite", is_flag=True, help="With --dataset: replace existing labels in --field.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=None,
              help="With --dataset: image loading processes (default: FiftyOne's choice).")
@click.option("--sample-tags", is_flag=True, help="With --dataset: also add the tags to each sample's tags.")
@click.option("--tags", "vocab_tags", type=click.Path(exists=True, dir_okay=False),
              help="Answer only these tags (one per line): the model's own are selected, new ones are embedded "
                   "with CLIP (RAM: upstream's prompt templates; RAM++: --descriptions or the templates).")
@click.option("--descriptions", type=click.Path(exists=True, dir_okay=False),
              help="RAM++: tag descriptions in upstream's JSON format ([{tag: [description, ...]}, ...]); "
                   "without --tags, the described tags are the vocabulary.")
@click.option("--keep-builtin", is_flag=True, help="With --tags/--descriptions: the model's own tags plus those.")
@click.option("--new-tag-threshold", type=float, default=None,
              help="Threshold of new (embedded) tags; default 0.5 as upstream's open set.")
@click.option("--text-encoder", default=None,
              help="CLIP text model (hub name or folder) for new tags; default openai/clip-vit-base-patch16.")
def tag(inputs, model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds, device, threshold,
        lang, caption, as_json, dataset_name, field, resume, overwrite, batch_size, num_workers, sample_tags,
        vocab_tags, descriptions, keep_builtin, new_tag_threshold, text_encoder):
    """Tag images (files or folders) and print each tag with its probability, or store them in a dataset."""
    from fiftyone_ram.images import ImageError, load_image

    if not inputs and not dataset_name:
        raise click.UsageError("give image files or folders, or --dataset NAME")
    vocabulary = dict(tags=vocab_tags, descriptions=descriptions, keep_builtin=keep_builtin,
                      new_tag_threshold=new_tag_threshold, text_encoder=text_encoder)
    tagger = load_tagger_from_options(model_name, checkpoint, config_path, tag_list, tag_list_chinese,
                                      thresholds, device, batch_size=batch_size, **vocabulary)
    with_caption = tagger.family == "tag2text" if caption is None else caption
    if dataset_name:
        from fiftyone_ram.fiftyone.dataset_cli import tag_dataset

        raise SystemExit(tag_dataset(
            tagger, dataset_name=dataset_name, paths=iter_images(inputs), field=field, resume=resume,
            overwrite=overwrite, batch_size=batch_size, num_workers=num_workers, threshold=threshold,
            language=lang, caption=with_caption, sample_tags=sample_tags, as_json=as_json, checkpoint=checkpoint,
            tag_list=tag_list, tag_list_chinese=tag_list_chinese, thresholds=thresholds, device=device,
            vocabulary=vocabulary))
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
    from fiftyone_ram.evaluation.commands import benchmark, evaluate

    main.add_command(evaluate)
    main.add_command(benchmark)
    from fiftyone_ram.models_cli import models

    main.add_command(models)
    from fiftyone_ram.labels.commands import parse_captions

    main.add_command(parse_captions)
    from fiftyone_ram.engine.commands import clean, generate

    main.add_command(generate)
    main.add_command(clean)


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
