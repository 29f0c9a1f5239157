"""``fiftyone-ram evaluate`` and ``fiftyone-ram benchmark``.

Imported when the CLI starts, so FiftyOne and torch are imported inside the commands only.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fiftyone_ram.cli.options import (THRESHOLD, CommandError, checkpoint_option, config_option, device_option,
                                      load_tagger_from_options, model_option, tag_list_option, thresholds_option)
from fiftyone_ram.evaluation.benchmarks import BENCHMARKS
from fiftyone_ram.evaluation.metrics import EMPTY_CLASSES, TIES


def _top_k(value: str) -> list[int]:
    try:
        return [int(k) for k in value.replace(" ", "").split(",") if k]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _classes(value: str | None) -> list[str] | None:
    if not value:
        return None
    if value.startswith("@"):
        from fiftyone_ram.tag_files import read_tag_list

        return read_tag_list(Path(value[1:]))
    return [c.strip() for c in value.split(",") if c.strip()]


@click.command("evaluate")
@click.option("--dataset", "dataset_name", required=True, help="FiftyOne dataset name.")
@click.option("--pred", "pred_field", required=True, help="Classifications field of predicted tags.")
@click.option("--gt", "gt_field", required=True,
              help="Ground truth: Classifications, Classification, Detections, Polylines or a string list (tags).")
@click.option("--eval-key", default=None, help="Record the run under this key (fields <key>_tp, ...).")
@click.option("--view", "saved_view", default=None, help="Evaluate this saved view of the dataset.")
@click.option("--model-tags", type=click.Path(exists=True, dir_okay=False),
              help="The model's tag list (reads logits; reports classes the model lacks).")
@click.option("--threshold", type=THRESHOLD, default=None,
              help="Re-decide tags at this threshold (default: stored tags).")
@click.option("--thresholds", "thresholds_file", type=click.Path(exists=True, dir_okay=False),
              help="Per-class thresholds aligned with --model-tags (upstream's format).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False),
              help="Vocabulary mapping: JSON object or CSV / TSV rows gt_name,model_name.")
@click.option("--classes", default=None, help="Ground-truth classes to evaluate: a,b,c or @file.")
@click.option("--top-k", "top_k", default="1,3", show_default=True, help="k values of the top-k variants.")
@click.option("--ties", type=click.Choice(TIES), default="pessimistic", show_default=True)
@click.option("--empty-classes", type=click.Choice(EMPTY_CLASSES), default="exclude", show_default=True,
              help="Classes without positives: left out of mAP / CP / CR, or counted as 0 (upstream).")
@click.option("--tune-thresholds", "tune_out", type=click.Path(dir_okay=False),
              help="Write per-class thresholds tuned on this view (upstream's format) to this file.")
@click.option("--target-precision", type=THRESHOLD, default=None,
              help="With --tune-thresholds: lowest threshold reaching this precision instead of best F1.")
@click.option("--base-thresholds", type=click.Path(exists=True, dir_okay=False),
              help="With --tune-thresholds: values for classes the view cannot tune (default: --thresholds).")
@click.option("--min-positives", type=int, default=1, show_default=True,
              help="With --tune-thresholds: classes with fewer positives keep their threshold.")
@click.option("--top", type=int, default=None, help="Rows of the per-class table (best AP first).")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def evaluate(dataset_name, pred_field, gt_field, eval_key, saved_view, model_tags, threshold, thresholds_file,
             mapping, classes, top_k, ties, empty_classes, tune_out, target_precision, base_thresholds,
             min_positives, top, as_json):
    """Measure tag quality (mAP, CP/CR/CF1, OP/OR/OF1, top-k) of a dataset's predicted tags."""
    import fiftyone as fo

    from fiftyone_ram.evaluation.run import evaluate_tags

    if threshold is not None and thresholds_file is not None:
        raise click.UsageError("give either --threshold or --thresholds, not both")
    if not fo.dataset_exists(dataset_name):
        raise click.UsageError(f"no FiftyOne dataset named {dataset_name!r}")
    dataset = fo.load_dataset(dataset_name)
    samples = dataset.load_saved_view(saved_view) if saved_view else dataset
    try:
        results = evaluate_tags(
            samples, pred_field, gt_field, eval_key=eval_key, model_tags=model_tags,
            threshold=thresholds_file if thresholds_file else threshold, mapping=mapping,
            classes=_classes(classes), ties=ties, empty_classes=empty_classes, top_k=_top_k(top_k),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    tuning = None
    if tune_out:
        try:
            tuning = results.tune_thresholds(target_precision=target_precision, min_positives=min_positives,
                                             base_thresholds=base_thresholds)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
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
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--threshold", type=THRESHOLD, default=None,
              help="One threshold for all classes (paper P/R: 0.86 for RAM, 0.68 for Tag2Text).")
@click.option("--taglist", type=click.Path(exists=True, dir_okay=False),
              help="Benchmark tag list (default: upstream's, downloaded once).")
@click.option("--annots", type=click.Path(exists=True, dir_okay=False),
              help="Benchmark annotations (default: upstream's, downloaded once).")
@click.option("--images-dir", type=click.Path(exists=True, file_okay=False),
              help="Folder with the Open Images test images (<dir>/test/<id>.jpg or <dir>/<id>.jpg); "
                   "default: FiftyOne's Open Images V6 zoo dataset.")
@click.option("--descriptions", type=click.Path(exists=True, dir_okay=False),
              help="RAM++ open set: LLM descriptions of the benchmark's tags (default: upstream's, for rare).")
@click.option("--text-encoder", default=None,
              help="CLIP text encoder for tags outside the model's list (hub name or folder; default ViT-B/16).")
@click.option("--max-samples", type=int, default=None, help="Only the first N images of the benchmark.")
@click.option("--dataset-name", default=None, help="FiftyOne dataset to build or reuse.")
@click.option("--eval-key", default="benchmark", show_default=True)
@click.option("--label-field", default=None, help="Field for the predictions (default: the model family).")
@click.option("--reuse-scores", is_flag=True,
              help="Use the logits already stored in the label field instead of running the model again.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def benchmark(name, model_name, checkpoint, config_path, tag_list, thresholds, device, batch_size, threshold,
              taglist, annots, images_dir, descriptions, text_encoder, max_samples, dataset_name, eval_key,
              label_field, reuse_scores, as_json):
    """Build upstream's OpenImages benchmark, tag it, and print mAP and P/R beside the papers' figures."""
    from fiftyone_ram.evaluation.benchmarks import format_benchmark, run_benchmark

    tagger = load_tagger_from_options(model_name, checkpoint, config_path, tag_list, None, thresholds, device,
                                      batch_size=batch_size)

    def progress(done: int, total: int) -> None:
        if not as_json:
            click.echo(f"\rtagged {done}/{total}", nl=done >= total, err=True)

    try:
        report = run_benchmark(name, tagger, taglist=taglist, annots=annots, images_dir=images_dir,
                               max_samples=max_samples, dataset_name=dataset_name, threshold=threshold,
                               batch_size=batch_size, eval_key=eval_key, label_field=label_field,
                               reuse_scores=reuse_scores, descriptions=descriptions, text_encoder=text_encoder,
                               progress=progress)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.to_json_dict(), ensure_ascii=False))
    else:
        click.echo(format_benchmark(report))

