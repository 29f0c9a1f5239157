"""What each round of a pipeline did and whether it helped: one row per round, as a terminal table, a PNG figure
and plot traces for the App's Pipeline panel.

A row counts the round's tags, those its generation added (by event: parsed, generated, captioned...; some may
then be removed), those its review removed and kept (:mod:`~fiftyone_ram.pipeline.provenance`), its agreement
with the reference field when there is one (label precision, recall and F1: ``evaluate_tags``' OP, OR and OF1,
over the reference's tag names), and the validation mAP, CP and CR of the round's model (its evaluation,
``<prefix>_r<N>_eval``). Rows are kept in the pipeline's run record, so ``pipeline report`` reads them without
recomputing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fiftyone_ram.driver import runs
from fiftyone_ram.pipeline.provenance import count_events
from fiftyone_ram.pipeline.spec import Names, PipelineError

#: The columns of the table: (row key, header).
COLUMNS = (("round", "round"), ("tags", "tags"), ("added", "+added"), ("removed", "-removed"), ("kept", "kept"),
           ("precision", "label P"), ("recall", "label R"), ("f1", "label F1"), ("mAP", "val mAP"),
           ("CP", "val CP"), ("CR", "val CR"), ("model", "model"))
METRICS = ("precision", "recall", "f1", "mAP", "CP", "CR")


def round_row(dataset: Any, job: Any, record: runs.RunRecord, engine: Any, number: int) -> dict[str, Any]:
    """Round ``number``'s row, from its fields, its steps' entries and its evaluation."""
    names = Names(job.prefix, job.output_dir)
    steps = record.details.get("steps", {})
    labels = names.labels(number)
    row: dict[str, Any] = {"round": number, "tags": None, "added": None, "removed": None, "kept": None,
                           "added_by": {}}
    if dataset.get_field(labels) is not None:
        row["tags"] = int(engine.count(f"{labels}.classifications"))
        added = steps.get(f"r{number}:{'parse' if number == 0 else 'generate'}", {}).get("added") or {}
        row["added_by"], row["added"] = dict(added), sum(added.values())
    review = names.review(number)
    if number and dataset.get_field(review) is not None:
        events = count_events(engine, review)
        row["removed"] = events.get(f"r{number}:removed", 0)
        row["kept"] = events.get(f"r{number}:kept", 0)
    row.update(dict.fromkeys(METRICS))
    if job.reference_field and row["tags"] is not None:
        row.update(agreement(engine, labels, job.reference_field))
    validation = steps.get(f"r{number}:evaluate", {}).get("validation") or {}
    row.update({k: validation.get(k) for k in ("mAP", "CP", "CR")})
    row["model"] = _model_name(names, steps, number, job)
    return row


def agreement(samples: Any, labels: str, reference: str) -> dict[str, float | None]:
    """Label precision, recall and F1 of ``labels`` against ``reference`` on the samples that have a reference
    (``evaluate_tags``' OP, OR, OF1; nothing is recorded)."""
    from fiftyone_ram.evaluation.run import evaluate_tags

    scored = samples.exists(reference).exists(labels)
    if scored.count("id") == 0:
        return {"precision": None, "recall": None, "f1": None}
    summary = evaluate_tags(scored, pred_field=labels, gt_field=reference).summary
    return {"precision": _number(summary.get("OP")), "recall": _number(summary.get("OR")),
            "f1": _number(summary.get("OF1"))}


def _number(value: Any) -> float | None:
    import math

    return None if value is None or not math.isfinite(float(value)) else round(float(value), 4)


def _model_name(names: Names, steps: dict[str, Any], number: int, job: Any) -> str:
    """The round's model as the table shows it: its folder under the output folder, or the starting model."""
    for stage in ("finetune", "retrain", "train"):
        folder = steps.get(f"r{number}:{stage}", {}).get("model_folder")
        if folder:
            try:
                return str(Path(folder).relative_to(names.output_dir))
            except ValueError:
                return folder
    if number == 0:
        return "start"
    return "as round " + str(number - 1) if "generate" in job.stages else "start"


def rows_of(dataset: Any, prefix: str) -> list[dict[str, Any]]:
    """The report's rows of pipeline ``prefix`` (undone rounds say so)."""
    record = runs.load(dataset, "pipeline", prefix)
    if record is None:
        return []
    rows = list(runs.load_state(dataset, "pipeline", prefix).get("rows") or [])
    undone = set(record.details.get("undone") or [])
    for row in rows:
        row["undone"] = row["round"] in undone
    return rows


def merge(rows: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` with ``row`` in its round's place."""
    out = [r for r in rows if r["round"] != row["round"]] + [row]
    return sorted(out, key=lambda r: r["round"])


def report(dataset: Any, prefix: str) -> dict[str, Any]:
    """Pipeline ``prefix``'s report: its status, rows and figure."""
    if isinstance(dataset, str):
        import fiftyone as fo

        if not fo.dataset_exists(dataset):
            raise PipelineError(f"no FiftyOne dataset named {dataset!r}")
        dataset = fo.load_dataset(dataset)
    record = runs.load(dataset, "pipeline", prefix)
    if record is None:
        known = [r.target for r in runs.records(dataset, "pipeline")]
        raise PipelineError(f"dataset '{dataset.name}' has no pipeline '{prefix}'"
                            + (f" (its pipelines: {', '.join(known)})" if known else ""))
    return {"prefix": prefix, "status": record.status, "error": record.error,
            "published": record.details.get("published"), "current": record.details.get("current"),
            "rows": rows_of(dataset, prefix), "figure": record.figures[0] if record.figures else None}


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a terminal table."""
    from tabulate import tabulate

    body = []
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            value = row.get(key)
            if key == "round" and row.get("undone"):
                value = f"{value} (undone)"
            cells.append("-" if value is None else f"{value:.3f}" if isinstance(value, float) else value)
        body.append(cells)
    return tabulate(body, headers=[header for _, header in COLUMNS], tablefmt="github")


#: What the figure and the panel plot per round: (row key, label).
PLOTTED = (("f1", "label F1"), ("precision", "label precision"), ("recall", "label recall"),
           ("mAP", "validation mAP"), ("CP", "validation CP"), ("CR", "validation CR"))


def draw(rows: list[dict[str, Any]], path: Path) -> Path:
    """A PNG of the rows: the metrics per round (left) and the tags added and removed (right). Drawn with
    matplotlib's object API (no pyplot): the caller's process keeps its backend and figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    rounds = [row["round"] for row in rows]
    for key, label in PLOTTED:
        values = [row.get(key) for row in rows]
        if any(v is not None for v in values):
            left.plot(rounds, [float("nan") if v is None else v for v in values], marker="o", label=label,
                      linestyle="-" if key in ("f1", "mAP") else "--")
    left.set(xlabel="round", ylabel="score", ylim=(0, 1.02), title="Tags against the reference, model on validation")
    left.set_xticks(rounds)
    if left.lines:
        left.legend(fontsize=8, loc="lower right")
    added = [row.get("added") or 0 for row in rows]
    removed = [-(row.get("removed") or 0) for row in rows]
    right.bar(rounds, added, color="tab:green", label="added")
    right.bar(rounds, removed, color="tab:red", label="removed")
    right.axhline(0, color="black", linewidth=0.5)
    right.set(xlabel="round", ylabel="tags", title="Tags added and removed")
    right.set_xticks(rounds)
    right.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png")
    temporary.replace(path)
    return path


def traces(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plotly traces of the metrics per round (the App's Pipeline panel)."""
    rounds = [row["round"] for row in rows]
    out = []
    for key, label in PLOTTED:
        values = [row.get(key) for row in rows]
        if any(v is not None for v in values):
            out.append({"type": "scatter", "mode": "lines+markers", "name": label, "x": rounds, "y": values})
    return out
