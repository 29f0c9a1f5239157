"""``fiftyone-ram generate`` and ``fiftyone-ram clean``: the data engine on a FiftyOne dataset.

Imported when the CLI starts, so FiftyOne, torch and transformers are imported inside the commands only.
"""

from __future__ import annotations

import json

import click

from fiftyone_ram.cli.options import (CAPTIONER_CHOICES, THRESHOLD, CommandError, engine_options,
                                      load_tagger_from_options, ray_options_from, tagger_options)


def _collection(dataset_name: str, saved_view: str | None):
    import fiftyone as fo

    if not fo.dataset_exists(dataset_name):
        raise CommandError(f"no FiftyOne dataset named {dataset_name!r}")
    dataset = fo.load_dataset(dataset_name)
    return dataset.load_saved_view(saved_view) if saved_view else dataset


def _report(summary, as_json: bool) -> None:
    click.echo(json.dumps(summary.to_dict(), ensure_ascii=False) if as_json else str(summary))


def _progress(fraction: float, label: str) -> None:
    click.echo(f"[{fraction:4.0%}] {label}", err=True)


def _tagger_or_none(wanted: bool, model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds,
                    device, batch_size, precision=None):
    if not wanted:
        return None
    return load_tagger_from_options(model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds,
                                    device, batch_size=batch_size, precision=precision)


@click.command("generate")
@click.argument("dataset_name")
@tagger_options
@click.option("--view", "saved_view", default=None, help="Work on this saved view of the dataset.")
@click.option("--out-field", default="generated", show_default=True, help="Classifications field to write.")
@click.option("--tag-field", "tag_fields", multiple=True,
              help="Existing tags (repeatable): Classifications, Classification, Detections, Polylines or a string "
                   "list such as 'tags'.")
@click.option("--caption-field", "caption_fields", multiple=True, help="Caption field to parse (repeatable).")
@click.option("--predict", is_flag=True, help="Add the tags the tagger (--model ...) predicts.")
@click.option("--threshold", type=THRESHOLD, default=None, help="With --predict: one threshold for all tags.")
@click.option("--captioner", "captioner_model", type=click.Choice(CAPTIONER_CHOICES), default=None,
              help="Add tags parsed from Tag2Text captions: a released Tag2Text model, or 'tag2text' with "
                   "--captioner-config.")
@click.option("--captioner-checkpoint", type=click.Path(dir_okay=False))
@click.option("--captioner-config", type=click.Path(exists=True, dir_okay=False))
@click.option("--captioner-tag-list", type=click.Path(exists=True, dir_okay=False))
@click.option("--parser-tags", type=click.Path(exists=True, dir_okay=False),
              help="Tag list or saved label system for parsing captions (default: RAM's 4,585 tags).")
@click.option("--overwrite", is_flag=True, help="Replace --out-field if it exists.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def generate(dataset_name, model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds, device,
             precision, saved_view, out_field, tag_fields, caption_fields, predict, threshold, captioner_model,
             captioner_checkpoint, captioner_config, captioner_tag_list, parser_tags, overwrite, batch_size,
             engine, ray_address, workers, gpus_per_worker, as_json):
    """Merge existing, parsed, predicted and captioned tags of DATASET_NAME into --out-field, each tag with
    its sources (original, parsed, predicted, captioned) and its confidence when predicted."""
    from fiftyone_ram.engine.generation import check_generation, generate_tags

    ray_options = ray_options_from(engine, ray_address, workers, gpus_per_worker)  # Ray missing: one line
    samples = _collection(dataset_name, saved_view)
    try:  # what can be refused is refused before the models load
        check_generation(samples, out_field, tag_fields=tag_fields, caption_fields=caption_fields,
                         overwrite=overwrite)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    tagger = _tagger_or_none(predict, model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds,
                             device, batch_size, precision)
    captioner = None
    if captioner_model:
        captioner = load_tagger_from_options(captioner_model, captioner_checkpoint, captioner_config,
                                             captioner_tag_list, None, None, device, batch_size=batch_size,
                                             precision=precision)
    try:
        summary = generate_tags(samples, out_field, tag_fields=tag_fields, caption_fields=caption_fields,
                                tagger=tagger, captioner=captioner, tag_list=parser_tags, threshold=threshold,
                                batch_size=batch_size, overwrite=overwrite, progress=_progress, engine=engine,
                                ray_options=ray_options)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    _report(summary, as_json)


@click.command("clean")
@click.argument("dataset_name")
@tagger_options
@click.option("--view", "saved_view", default=None, help="Work on this saved view of the dataset.")
@click.option("--tag-field", required=True, help="The tags to clean (never modified until --apply).")
@click.option("--categories", default=None, help="Only these tags: a,b,c (default: all).")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the N most frequent tags.")
@click.option("--regions-field", default=None, help="Take regions from this Detections field instead of a detector.")
@click.option("--detector", default=None, help="Grounding-DINO hub id or folder (default IDEA-Research/"
                                                 "grounding-dino-tiny).")
@click.option("--box-threshold", type=THRESHOLD, default=0.35, show_default=True)
@click.option("--text-threshold", type=THRESHOLD, default=0.25, show_default=True)
@click.option("--max-regions", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--embedder", type=click.Choice(["ram", "clip"]), default="ram", show_default=True,
              help="Crop embeddings: the tagger's image encoder or CLIP's.")
@click.option("--clip-model", default=None, help="With --embedder clip: hub id or folder "
                                                  "(default openai/clip-vit-base-patch16).")
@click.option("--no-check", is_flag=True, help="Skip the test 'the tagger predicts the category on its region' "
                                               "(with --embedder clip, no tagger is loaded).")
@click.option("--fraction", type=float, default=0.1, show_default=True, help="Expected share of wrong tags.")
@click.option("--rule", type=click.Choice(["adaptive", "quota"]), default="adaptive", show_default=True,
              help="adaptive: flag what stands out (up to 2x --fraction); quota: the top --fraction of each tag.")
@click.option("--per-category", is_flag=True,
              help="Judge each tag's crops alone, without comparing with other tags' modes (for overlapping tags "
                   "such as 'animal' and 'dog').")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--categories-per-batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted cleaning of --tag-field.")
@click.option("--overwrite", is_flag=True, help="Start the cleaning of --tag-field again.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Instead of cleaning: remove the accepted tags from --tag-field (original kept).")
@click.option("--accept", type=click.Choice(["flagged", "marked"]), default="flagged", show_default=True,
              help="With --apply: flagged tags not label-tagged 'keep' (and those tagged 'remove'), or only "
                   "those tagged 'remove'.")
@click.option("--undo", "do_undo", is_flag=True, help="Instead of cleaning: restore --tag-field from its original.")
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def clean(dataset_name, model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds, device,
          precision, saved_view, tag_field, categories, top, regions_field, detector, box_threshold, text_threshold,
          max_regions, embedder, clip_model, no_check, fraction, rule, per_category, seed, categories_per_batch,
          batch_size, resume, overwrite, do_apply, accept, do_undo, engine, ray_address, workers, gpus_per_worker,
          as_json):
    """Flag wrong tags of --tag-field in DATASET_NAME (regions, crop clusters, the tagger's opinion), for
    review in the App (saved view <tag-field>_flagged); --apply commits, --undo reverts."""
    from fiftyone_ram.engine.cleaning import check_cleaning, clean_tags
    from fiftyone_ram.engine.crops import make_encoder
    from fiftyone_ram.engine.regions import make_regions
    from fiftyone_ram.engine.review import apply_cleaning, undo_cleaning

    ray_options = ray_options_from(engine, ray_address, workers, gpus_per_worker)  # Ray missing: one line
    samples = _collection(dataset_name, saved_view)
    if do_apply and do_undo:
        raise click.UsageError("--apply and --undo are two different steps")
    try:
        if do_apply:
            result = apply_cleaning(samples, tag_field, accept=accept)
            click.echo(json.dumps(result) if as_json else
                       f"removed {result['removed']} tag(s) from {result['samples']} sample(s) of '{tag_field}'"
                       + (" (undo with --undo)" if result["removed"] else ""))
            return
        if do_undo:
            result = undo_cleaning(samples, tag_field)
            message = result.pop("message")
            click.echo(json.dumps(result) if as_json else message)
            if result["not_restored"]:
                # Part of what apply removed is not back (the user changed it since): not a full success.
                click.get_current_context().exit(1)
            return
        if categories and top:
            raise click.UsageError("give --categories or --top, not both")
        wanted = [c.strip() for c in categories.split(",") if c.strip()] if categories else top
        if resume and overwrite:
            raise click.UsageError("give --resume or --overwrite, not both")
        check_cleaning(samples, tag_field, resume=resume, overwrite=overwrite)  # before the models load
        tagger = _tagger_or_none(embedder == "ram" or not no_check, model_name, checkpoint, config_path, tag_list,
                                 tag_list_chinese, thresholds, device, batch_size, precision)
        encoder = make_encoder(embedder, tagger=tagger, clip_model=clip_model, device=device, check=not no_check)
        regions = make_regions(samples, field=regions_field, detector=detector, box_threshold=box_threshold,
                               text_threshold=text_threshold, max_regions=max_regions, device=device)
        summary = clean_tags(samples, tag_field, regions=regions, encoder=encoder, categories=wanted,
                             fraction=fraction,
                             outlier_options={"rule": rule, "seed": seed, "cross_category": not per_category},
                             categories_per_batch=categories_per_batch, batch_size=batch_size, resume=resume,
                             overwrite=overwrite, progress=_progress, engine=engine, ray_options=ray_options)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    _report(summary, as_json)
