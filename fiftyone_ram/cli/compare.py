"""``fiftyone-ram compare``: the RAM paper's table on one's own data (or on upstream's benchmark).

Imported when the CLI starts, so FiftyOne and torch are imported inside the command only.
"""

from __future__ import annotations

import json

import click

from fiftyone_ram.cli import settings
from fiftyone_ram.cli.options import collection
from fiftyone_ram.evaluation.compare_job import CompareJob


class ModelType(click.ParamType):
    """One ``--model`` value, ``KIND[=SOURCE][,KEY=VALUE...]`` (its commas separate its options, not models),
    checked as it is read; each occurrence is one model."""

    name = "model"

    def convert(self, value, param, ctx):
        from fiftyone_ram.comparators.choice import parse_choice
        from fiftyone_ram.errors import OptionError

        if isinstance(value, tuple):  # the default: every model of the paper's table
            return value
        try:
            return (str(parse_choice(value)),)
        except OptionError as exc:
            self.fail(str(exc), param, ctx)


@click.command("compare")
@click.option("--dataset", "dataset", default=None,
              help="FiftyOne dataset to compare on (its ground truth: --gt); or --benchmark.")
@click.option("--view", "saved_view", default=None, help="Compare on this saved view of the dataset.")
@settings.option(CompareJob, "models", type=ModelType(), show_default=", ".join(CompareJob.default("models")))
@settings.options(CompareJob, exclude=("models",))
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def compare(dataset, saved_view, as_json, **params):
    """Compare taggers (RAM, RAM++, Tag2Text, CLIP, SigLIP, BLIP, Grounding-DINO, a field) on one view: one
    evaluation run per model, one table (mAP, CP/CR/CF1, OP/OR, images/s, peak memory, the papers' figures) and a
    PR-curve figure."""
    from fiftyone_ram.evaluation.comparison import compare as run_comparison
    from fiftyone_ram.progress import ConsoleProgress

    job = settings.job_from(CompareJob, params)
    samples = collection(dataset, saved_view) if dataset else None
    progress = None if as_json else ConsoleProgress()
    try:
        comparison = run_comparison(samples, job=job, progress=progress)
    finally:
        if progress is not None:
            progress.newline()  # the progress line ends before the table, or before an error's line
    if as_json:
        click.echo(json.dumps(comparison.to_json_dict(), ensure_ascii=False))
    else:
        click.echo(comparison.table())
