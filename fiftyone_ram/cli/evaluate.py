"""``fiftyone-ram evaluate`` and ``fiftyone-ram benchmark``.

Imported when the CLI starts, so FiftyOne and torch are imported inside the commands only.
"""

from __future__ import annotations

import json

import click

from fiftyone_ram.cli import settings
from fiftyone_ram.cli.options import (THRESHOLD_TYPE, checkpoint_option, collection, config_option, device_option,
                                      load_tagger_from, model_option, precision_option, tag_list_option,
                                      thresholds_option)
from fiftyone_ram.evaluation.benchmarks import BENCHMARKS, BenchmarkJob
from fiftyone_ram.evaluation.job import EvaluateJob


@click.command("evaluate")
@click.option("--dataset", "dataset_name", required=True, help="FiftyOne dataset name.")
@settings.options(EvaluateJob, "pred_field", "gt_field", "eval_key")
@click.option("--view", "saved_view", default=None, help="Evaluate this saved view of the dataset.")
@settings.options(EvaluateJob, "model_tags", "threshold", "thresholds", "mapping", "classes", "top_k", "ties",
                  "empty_classes")
@click.option("--tune-thresholds", "tune_out", type=click.Path(dir_okay=False),
              help="Write per-class thresholds tuned on this view (upstream's format) to this file.")
@click.option("--target-precision", type=THRESHOLD_TYPE, default=None,
              help="With --tune-thresholds: lowest threshold reaching this precision instead of best F1.")
@click.option("--base-thresholds", type=click.Path(exists=True, dir_okay=False),
              help="With --tune-thresholds: values for classes the view cannot tune (default: --thresholds).")
@click.option("--min-positives", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --tune-thresholds: classes with fewer positives keep their threshold.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Rows of the per-class table (best AP first).")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def evaluate(dataset_name, saved_view, tune_out, target_precision, base_thresholds, min_positives, top, as_json,
             **params):
    """Measure tag quality (mAP, CP/CR/CF1, OP/OR/OF1, top-k) of a dataset's predicted tags."""
    from fiftyone_ram.evaluation.run import evaluate_tags

    job = settings.job_from(EvaluateJob, params)
    results = evaluate_tags(collection(dataset_name, saved_view), job=job)
    tuning = None
    if tune_out:
        tuning = results.tune_thresholds(target_precision=target_precision, min_positives=min_positives,
                                         base_thresholds=base_thresholds)
        tuning.write(tune_out)
    if as_json:
        out = results.to_json_dict()
        if tuning is not None:
            out["tuned_thresholds"] = {"file": str(tune_out), "classes": tuning.table}
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    results.print_report(top=top)
    if tuning is not None:
        tuned = tuning.tuned()
        click.echo(f"\n{len(tuned)} of {len(tuning.table)} classes tuned; thresholds written to {tune_out}")


@click.command("benchmark")
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)))
@model_option
@checkpoint_option
@config_option
@tag_list_option
@thresholds_option
@device_option
@precision_option
@settings.options(BenchmarkJob)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def benchmark(name, as_json, **params):
    """Build upstream's OpenImages benchmark, tag it, and print mAP and P/R beside the papers' figures."""
    from fiftyone_ram.evaluation.benchmarks import format_benchmark

    job = settings.job_from(BenchmarkJob, params, name=name)
    tagger = load_tagger_from(params, batch_size=job.batch_size)

    def progress(done: int, total: int) -> None:
        if not as_json:
            click.echo(f"\rtagged {done}/{total}", nl=done >= total, err=True)

    report = job.run(tagger, progress)
    if as_json:
        click.echo(json.dumps(report.to_json_dict(), ensure_ascii=False))
    else:
        click.echo(format_benchmark(report))
