"""``fiftyone-ram finetune DATASET``: fine-tune a tagger on a FiftyOne dataset (or a view of it) and write a model
folder that every other command loads with ``--checkpoint FOLDER``.

A thin layer over :func:`fiftyone_ram.training.finetune`: the options name its settings (upstream's recipe by
default, ``--weak-start`` for a random or far-off start); ``--set KEY=VALUE`` reaches the rest. Errors of the
user's making are :class:`~fiftyone_ram.errors.UserError`\\ s, which ``main`` prints as one line. The options are
only translated here; every check is the library's (settings, data, output folder).
"""

from __future__ import annotations

import json
from typing import Any

import click

from fiftyone_ram.cli import settings
from fiftyone_ram.cli.options import tagger_options, tagger_spec_from
from fiftyone_ram.errors import UserError
from fiftyone_ram.training.job import FinetuneJob
from fiftyone_ram.training.settings import FinetuneSettings
from fiftyone_ram.vocabulary.spec import VocabularySpec

#: The recipe's settings that have their own option (the rest: --set KEY=VALUE).
_RECIPE = tuple(f.name for f in settings.settings_of(FinetuneSettings) if settings.flag_of(FinetuneSettings, f.name))


class FinetuneUsageError(UserError, ValueError):
    """Options of ``finetune`` that do not go together."""


def _setting(value: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON (``5e-6``, ``true``, ``[0.5, 1]``, ``null``), else as a string."""
    if "=" not in value:
        raise click.BadParameter(f"expected KEY=VALUE, got {value!r}")
    key, raw = value.split("=", 1)
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = raw  # a bare string (a hub name, a folder)
    return key.strip().replace("-", "_"), parsed


def _settings(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    return dict(_setting(value) for value in values)


def _model_options(command):
    """The shared tagger options but the inference ``--precision``: training keeps fp32 weights, and its
    autocast is ``--train-precision`` (one name per meaning)."""
    command = tagger_options(command)
    command.__click_params__ = [p for p in command.__click_params__ if p.name != "precision"]
    return command


@click.command("finetune")
@click.argument("dataset_name", metavar="DATASET")
@settings.options(FinetuneJob, "output_dir")
@_model_options
@click.option("--view", "train_view", default=None, help="Train on this saved view of DATASET (default: all).")
@click.option("--train-tag", default=None, help="Train on the samples with this sample tag.")
@click.option("--validation-view", default=None, help="Validate on this saved view after every epoch.")
@click.option("--validation-tag", default=None, help="Validate on the samples with this sample tag.")
@settings.options(FinetuneJob, "tag_field", "caption_field", "validation_field", "parser_tags", "mapping")
@settings.options(VocabularySpec, "tags", "descriptions", "keep_builtin", "new_tag_threshold", "text_encoder",
                  "templates")
@settings.options(FinetuneSettings, *_RECIPE, given_only=True)
@click.option("--no-teacher", is_flag=True, help="No CLIP teacher: distillation and alignment off.")
@settings.options(FinetuneJob, "weak_start")
@click.option("--set", "extra", multiple=True, metavar="KEY=VALUE", callback=_settings,
              help="Any other setting of the recipe (value as JSON, e.g. --set crop_scale=[0.5,1]).")
@settings.options(FinetuneJob, "resume", "overwrite")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def finetune(dataset_name, train_view, train_tag, validation_view, validation_tag, no_teacher, extra, as_json,
             **params):
    """Fine-tune RAM, RAM++ or Tag2Text on DATASET's tags and/or captions."""
    import fiftyone as fo

    if params.get("teacher") is not None and no_teacher:
        raise FinetuneUsageError("give --teacher or --no-teacher, not both")
    changes = {**settings.values_for(FinetuneSettings, params), **extra}
    if no_teacher:
        changes["teacher"] = None
    job = settings.job_from(FinetuneJob, params, changes=changes)
    if not fo.dataset_exists(dataset_name):
        raise FinetuneUsageError(f"no FiftyOne dataset named {dataset_name!r}")
    dataset = fo.load_dataset(dataset_name)
    samples = _view(dataset, train_view, train_tag, "--view", "--train-tag") or dataset
    validation = _view(dataset, validation_view, validation_tag, "--validation-view", "--validation-tag")
    model = tagger_spec_from(params, vocabulary=settings.job_from(VocabularySpec, params))
    result = job.run(samples, model, validation=validation, progress=not as_json)
    summary = {"output": str(result.output_dir), "steps": result.steps, "epochs": result.epochs,
               "best_epoch": result.best_epoch, "best": result.best, "history": result.history}
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    best = "" if result.best is None else f"; best validation mAP {result.best.get('mAP')} (epoch " \
                                          f"{result.best_epoch + 1})"
    if result.best is None and result.history and result.model_epoch is not None:
        best = f"; validation gave no score to pick an epoch by: the folder holds epoch {result.model_epoch + 1}'s"
    click.echo(f"fine-tuned {result.steps} step(s) over {result.epochs} epoch(s){best}; model folder: "
               f"{result.output_dir} (use it as --checkpoint {result.output_dir})")


def _view(dataset, saved_view: str | None, sample_tag: str | None, view_option: str, tag_option: str):
    if saved_view is not None and sample_tag is not None:
        raise FinetuneUsageError(f"give {view_option} or {tag_option}, not both")
    if saved_view is not None:
        if saved_view not in dataset.list_saved_views():
            raise FinetuneUsageError(f"dataset {dataset.name!r} has no saved view {saved_view!r} ({view_option})")
        return dataset.load_saved_view(saved_view)
    if sample_tag is not None:
        view = dataset.match_tags(sample_tag)
        if not view.count():
            raise FinetuneUsageError(f"no sample of {dataset.name!r} has the tag {sample_tag!r} ({tag_option})")
        return view
    return None
