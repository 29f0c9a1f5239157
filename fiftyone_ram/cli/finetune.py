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

from fiftyone_ram.cli.options import tagger_options
from fiftyone_ram.errors import UserError
from fiftyone_ram.models.config import FAMILIES
from fiftyone_ram.training.settings import PARTS, PRECISIONS, SCHEDULES


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
@click.option("--output", "-o", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Model folder to write (checkpoint, config, tag list, thresholds, log).")
@_model_options
@click.option("--view", "train_view", default=None, help="Train on this saved view of DATASET (default: all).")
@click.option("--train-tag", default=None, help="Train on the samples with this sample tag.")
@click.option("--validation-view", default=None, help="Validate on this saved view after every epoch.")
@click.option("--validation-tag", default=None, help="Validate on the samples with this sample tag.")
@click.option("--tag-field", default=None,
              help="Ground-truth tags: Classifications, Classification, Detections, Polylines or 'tags'.")
@click.option("--caption-field", default=None, help="Captions: a string or list-of-strings field.")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False),
              help="Vocabulary mapping of --tag-field's names (JSON object or CSV rows gt_name,model_name).")
@click.option("--tags", "vocab_tags", type=click.Path(exists=True, dir_okay=False),
              help="Fine-tune this vocabulary (one tag per line): the model's own tags are selected, new ones "
                   "get CLIP queries (frozen) and are learnt.")
@click.option("--descriptions", type=click.Path(exists=True, dir_okay=False),
              help="RAM++: descriptions of new tags (upstream's JSON format).")
@click.option("--keep-builtin", is_flag=True, help="With --tags/--descriptions: the model's own tags plus those.")
@click.option("--new-tag-threshold", type=float, default=None, help="Threshold of new tags before tuning.")
@click.option("--text-encoder", default=None, help="CLIP text model (hub name or folder) for new tags.")
@click.option("--templates", type=click.Path(exists=True, dir_okay=False),
              help="Prompt templates of new tags, one per line ({} the tag; default: upstream's).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default 2 (upstream).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per step and process "
              "(default 26, upstream's).")
@click.option("--grad-accumulation", type=click.IntRange(min=1), default=None, help="Micro-batches per step.")
@click.option("--lr", type=float, default=None, help="Default 5e-6 (upstream).")
@click.option("--head-lr", type=float, default=None, help="A separate lr for the tagging head.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None, help="Default cosine-epoch (upstream).")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None)
@click.option("--freeze", multiple=True, type=click.Choice(PARTS), help="Leave this part as it is (repeatable).")
@click.option("--gamma-neg", type=float, default=None, help="ASL's negative exponent (default 7, upstream).")
@click.option("--grad-checkpointing", is_flag=True, default=None, help="Recompute activations: less memory.")
@click.option("--train-precision", type=click.Choice(PRECISIONS), default=None,
              help="Autocast while training: fp32 (default), bf16, or auto (bf16 on GPUs that run it); the "
                   "weights stay fp32.")
@click.option("--seed", type=int, default=None)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps.")
@click.option("--early-stop", type=click.IntRange(min=1), default=None,
              help="Stop after this many epochs without a better validation mAP.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=None,
              help="Steps between resumable states (default 500; 0: at epoch ends only).")
@click.option("--num-workers", type=click.IntRange(min=0), default=None, help="Image decoding processes.")
@click.option("--teacher", default=None, help="CLIP teacher (hub name or folder; default "
              "openai/clip-vit-base-patch16) for distillation and RAM++ alignment.")
@click.option("--no-teacher", is_flag=True, help="No CLIP teacher: distillation and alignment off.")
@click.option("--weak-start", is_flag=True, help="A recipe that learns from a weak (random or far-off) start "
              "instead of upstream's; other options still override it. See docs/training.md.")
@click.option("--set", "extra", multiple=True, metavar="KEY=VALUE", callback=_settings,
              help="Any other setting of FinetuneSettings (value as JSON, e.g. --set crop_scale=[0.5,1]).")
@click.option("--resume", "resume_run", is_flag=True, help="Continue the interrupted run in --output.")
@click.option("--overwrite", is_flag=True, help="Replace a previous run's files in a non-empty --output (your "
              "other files stay).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def finetune(dataset_name, output_dir, model_name, checkpoint, config_path, tag_list, tag_list_chinese, thresholds,
             device, train_view, train_tag, validation_view, validation_tag, tag_field, caption_field, mapping,
             vocab_tags, descriptions, keep_builtin, new_tag_threshold, text_encoder, templates, epochs, batch_size,
             grad_accumulation, lr, head_lr, schedule, warmup_steps, freeze, gamma_neg, grad_checkpointing,
             train_precision, seed, max_steps, early_stop, checkpoint_every, num_workers, teacher, no_teacher,
             weak_start, extra, resume_run, overwrite, as_json):
    """Fine-tune RAM, RAM++ or Tag2Text on DATASET's tags and/or captions."""
    import fiftyone as fo

    from fiftyone_ram.training import WEAK_START
    from fiftyone_ram.training import finetune as run_finetune

    if teacher is not None and no_teacher:
        raise FinetuneUsageError("give --teacher or --no-teacher, not both")
    if not fo.dataset_exists(dataset_name):
        raise FinetuneUsageError(f"no FiftyOne dataset named {dataset_name!r}")
    dataset = fo.load_dataset(dataset_name)
    samples = _view(dataset, train_view, train_tag, "--view", "--train-tag") or dataset
    validation = _view(dataset, validation_view, validation_tag, "--validation-view", "--validation-tag")
    options: dict[str, Any] = dict(WEAK_START) if weak_start else {}
    given = dict(epochs=epochs, batch_size=batch_size, grad_accumulation=grad_accumulation, lr=lr, head_lr=head_lr,
                 schedule=schedule, warmup_steps=warmup_steps, gamma_neg=gamma_neg,
                 grad_checkpointing=grad_checkpointing, train_precision=train_precision, seed=seed,
                 max_steps=max_steps, early_stop=early_stop, checkpoint_every=checkpoint_every,
                 num_workers=num_workers)
    options.update({k: v for k, v in given.items() if v is not None})
    if freeze:
        options["freeze"] = tuple(freeze)
    if teacher is not None or no_teacher:
        options["teacher"] = None if no_teacher else teacher
    options.update(extra)
    model = config_path or model_name
    family = model_name if model_name in FAMILIES else None
    result = run_finetune(samples, output_dir, model=model, checkpoint=checkpoint, family=family, tag_list=tag_list,
                          tag_list_chinese=tag_list_chinese, thresholds=thresholds, tags=vocab_tags,
                          descriptions=descriptions, keep_builtin=keep_builtin, new_tag_threshold=new_tag_threshold,
                          text_encoder=text_encoder, templates=_lines(templates), tag_field=tag_field,
                          caption_field=caption_field,
                          validation=validation, mapping=mapping, resume_run=resume_run, overwrite=overwrite,
                          device=device, progress=not as_json, **options)
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


def _lines(path: str | None) -> list[str] | None:
    if path is None:
        return None
    from pathlib import Path

    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


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
