"""``fiftyone-ram generate`` and ``fiftyone-ram clean``: the data engine on a FiftyOne dataset.

The options are the jobs' settings (:class:`~fiftyone_ram.engine.generation.GenerateJob`,
:class:`~fiftyone_ram.engine.cleaning.CleanJob`, :class:`~fiftyone_ram.engine.review.ReviewJob`); FiftyOne,
torch and transformers are imported inside the commands only.
"""

from __future__ import annotations

import json

import click

from fiftyone_ram.cli import settings
from fiftyone_ram.cli.options import CAPTIONER_CHOICES, collection, load_tagger_from, tagger_options
from fiftyone_ram.engine.cleaning import CleanJob
from fiftyone_ram.engine.generation import GenerateJob
from fiftyone_ram.engine.review import ReviewJob
from fiftyone_ram.progress import ConsoleProgress

_EXECUTOR = ("executor", "ray_address", "workers", "gpus_per_worker")


def _report(summary, as_json: bool) -> None:
    click.echo(json.dumps(summary.to_dict(), ensure_ascii=False) if as_json else str(summary))


@click.command("generate")
@click.argument("dataset_name")
@tagger_options
@click.option("--view", "saved_view", default=None, help="Work on this saved view of the dataset.")
@settings.options(GenerateJob, "out_field", "tag_fields", "caption_fields")
@click.option("--predict", is_flag=True, help="Add the tags the tagger (--model ...) predicts.")
@settings.options(GenerateJob, "threshold")
@click.option("--captioner", "captioner_model", type=click.Choice(CAPTIONER_CHOICES), default=None,
              help="Add tags parsed from Tag2Text captions: a released Tag2Text model, or 'tag2text' with "
                   "--captioner-config.")
@click.option("--captioner-checkpoint", type=click.Path(dir_okay=False), help="The captioner's weights.")
@click.option("--captioner-config", type=click.Path(exists=True, dir_okay=False),
              help="The captioner's architecture config.")
@click.option("--captioner-tag-list", type=click.Path(exists=True, dir_okay=False), help="The captioner's tag list.")
@settings.options(GenerateJob, "parser_tags", "overwrite", "batch_size", *_EXECUTOR)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def generate(dataset_name, saved_view, predict, captioner_model, captioner_checkpoint, captioner_config,
             captioner_tag_list, as_json, **params):
    """Merge existing, parsed, predicted and captioned tags of DATASET_NAME into --out-field, each tag with
    its sources (original, parsed, predicted, captioned) and its confidence when predicted."""
    job = settings.job_from(GenerateJob, params)
    samples = collection(dataset_name, saved_view)
    job.check(samples)  # what can be refused is refused before the models load
    tagger = load_tagger_from(params, batch_size=job.batch_size) if predict else None
    captioner = None
    if captioner_model:
        captioner = load_tagger_from({"model_name": captioner_model, "checkpoint": captioner_checkpoint,
                                      "config_path": captioner_config, "tag_list": captioner_tag_list,
                                      "device": params.get("device"), "precision": params.get("precision")},
                                     batch_size=job.batch_size)
    summary = job.run(samples, tagger, captioner, progress=None if as_json else ConsoleProgress())
    _report(summary, as_json)


@click.command("clean")
@click.argument("dataset_name")
@tagger_options
@click.option("--view", "saved_view", default=None, help="Work on this saved view of the dataset.")
@settings.options(CleanJob, "tag_field", "categories", "top", "regions_field", "detector", "box_threshold",
                  "text_threshold", "max_regions", "embedder", "clip_model", "region_check", "fraction", "rule",
                  "per_category", "seed", "categories_per_batch", "batch_size", "resume", "overwrite")
@click.option("--apply", "do_apply", is_flag=True,
              help="Instead of cleaning: remove the accepted tags from --tag-field (original kept).")
@settings.options(ReviewJob, "accept")
@click.option("--undo", "do_undo", is_flag=True, help="Instead of cleaning: restore --tag-field from its original.")
@settings.options(CleanJob, *_EXECUTOR)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def clean(dataset_name, saved_view, do_apply, accept, do_undo, as_json, **params):
    """Flag wrong tags of --tag-field in DATASET_NAME (regions, crop clusters, the tagger's opinion), for
    review in the App (saved view <tag-field>_flagged); --apply commits, --undo reverts."""
    if do_apply and do_undo:
        raise click.UsageError("--apply and --undo are two different steps")
    samples = collection(dataset_name, saved_view)
    if do_apply or do_undo:
        review = ReviewJob(tag_field=params["tag_field"], action="undo" if do_undo else "apply", accept=accept)
        result = review.run(samples)
        if do_apply:
            click.echo(json.dumps(result) if as_json else
                       f"removed {result['removed']} tag(s) from {result['samples']} sample(s) of "
                       f"'{review.tag_field}'" + (" (undo with --undo)" if result["removed"] else ""))
            return
        message = result.pop("message")
        click.echo(json.dumps(result) if as_json else message)
        if result["not_restored"]:
            # Part of what apply removed is not back (the user changed it since): not a full success.
            click.get_current_context().exit(1)
        return
    job = settings.job_from(CleanJob, params, device=params.get("device"))
    job.check(samples)  # before the models load
    tagger = load_tagger_from(params) if job.needs_tagger else None
    summary = job.run(samples, tagger, progress=None if as_json else ConsoleProgress())
    _report(summary, as_json)
