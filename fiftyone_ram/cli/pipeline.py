"""``fiftyone-ram pipeline``: the RAM paradigm on a dataset as one recorded pipeline (``run``, ``report``,
``undo``).

The options are the pipeline spec's settings (:class:`~fiftyone_ram.pipeline.spec.PipelineJob`); given ones
replace the spec file's values, so a file holds the stages' settings and the command line what changes from run
to run. FiftyOne and torch are imported inside the commands only.
"""

from __future__ import annotations

import json

import click

from fiftyone_ram.cli import settings
from fiftyone_ram.cli.options import TAGGER_PARAMS, tagger_options, tagger_spec_from
from fiftyone_ram.pipeline.spec import PipelineJob


@click.group("pipeline")
def pipeline() -> None:
    """Captions → tags → a first model → generate and clean → review → retrain → fine-tune → evaluate, round
    after round, every stage recorded (docs/pipeline.md)."""


@pipeline.command("run")
@click.argument("spec_file", metavar="SPEC", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--dataset", "dataset_name", default=None, help="The FiftyOne dataset (default: the spec's).")
@settings.options(PipelineJob, given_only=True, exclude=("resume",), output_dir={"required": False})
@tagger_options
@settings.options(PipelineJob, "resume", given_only=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def run_command(spec_file, dataset_name, as_json, **params):
    """Run the pipeline SPEC (a YAML or JSON file of the spec's settings; the options replace its values).
    With --resume, continue the pipeline of the spec's prefix where it stopped."""
    from fiftyone_ram.pipeline.run import run

    changes = settings.values_for(PipelineJob, params)
    changes.pop("resume", None)
    ctx = click.get_current_context()
    given = [name for name in TAGGER_PARAMS
             if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
    if given:  # the tagger options name the starting model instead of the spec's
        changes["model"] = tagger_spec_from(params).to_dict()
    result = run(spec_file, resume=params.get("resume") or None, progress=not as_json, dataset=dataset_name,
                 **changes)
    click.echo(json.dumps(result.to_dict(), ensure_ascii=False, default=str) if as_json else str(result))


@pipeline.command("report")
@click.argument("dataset_name", metavar="DATASET")
@settings.options(PipelineJob, "prefix")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="Also draw the report's figure (PNG) to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def report_command(dataset_name, prefix, figure, as_json):
    """The per-round report of DATASET's pipeline: tags added and removed, agreement with the reference, the
    validation mAP, CP and CR of each round's model."""
    from pathlib import Path

    from fiftyone_ram.pipeline.report import draw, report, table

    found = report(dataset_name, prefix)
    if figure:
        found["figure"] = str(draw(found["rows"], Path(figure)))
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, default=str))
        return
    click.echo(table(found["rows"]) if found["rows"] else "no round published yet")
    state = f"pipeline '{prefix}': {found['status']}"
    if found["error"]:
        state += f" ({found['error']})"
    click.echo(state + (f"; figure: {found['figure']}" if found["figure"] else ""))


@pipeline.command("undo")
@click.argument("dataset_name", metavar="DATASET")
@settings.options(PipelineJob, "prefix")
@click.option("--round", "number", type=click.IntRange(min=0), default=None,
              help="The round to undo (default: the last one published; only that one can be).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def undo_command(dataset_name, prefix, number, as_json):
    """Put the current tags (the field named PREFIX) back to the round before: nothing is deleted, the undone
    round's fields and model folders stay."""
    from fiftyone_ram.pipeline.run import undo

    result = undo(dataset_name, prefix, number)
    click.echo(json.dumps(result) if as_json else
               f"round {result['undone']} undone: '{result['current']}' holds round {result['undone'] - 1}'s tags "
               f"again (from '{result['restored_from']}')")
