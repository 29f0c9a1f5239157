"""The RAM paper's comparison on a user's data: several taggers scored on one view, evaluated the same way, in one
table (:func:`compare`; the settings are :class:`~fiftyone_ram.evaluation.compare_job.CompareJob`).

For each model (our taggers, CLIP, SigLIP, BLIP, Grounding-DINO: :mod:`fiftyone_ram.comparators`; or a field of
predictions the user already has):

1. its scores over the compared classes go into its own field ``<name>_<model>`` (FiftyOne's ``apply_model``
   with :class:`~fiftyone_ram.fiftyone.comparator.ComparatorModel`: a ``Classifications`` with the ``logits``),
   timed (images per second) and measured (peak memory: the GPU's peak allocation on CUDA, else the growth of
   this process's resident memory while the model loads and runs);
2. its thresholds are tuned on the validation samples the same way for every model (the RAM paper's
   comparability rule): per class, the F1-best threshold (a class without positives there takes the model's one
   threshold), or one threshold for all classes, the CF1-best; the field's tags are decided again with them;
3. it is evaluated on the other samples as a FiftyOne evaluation run ``<name>_<model>_eval``
   (:func:`~fiftyone_ram.evaluation.run.evaluate_tags`, with those thresholds): mAP (threshold-free), CP / CR /
   CF1 and OP / OR at the tuned thresholds.

A field of predictions enters as it is: its stored tags are its predictions and its confidences its scores (a
``Detections`` field's objects become image-level tags first, in the comparison's field ``<name>_<model>``).
The comparison is one record of the run store (kind ``compare``), which says per model what decided its scores;
a model already scored with the same scores' settings is not run again (``rerun`` asks for it), and one scored
with other settings is refused with a line naming what differs. The table puts the papers' figures beside
(:data:`fiftyone_ram.evaluation.benchmarks.BENCHMARKS`) when the view is one of their benchmarks; the figure
(:func:`fiftyone_ram.evaluation.plots.plot_comparison`) overlays each model's mean PR curve.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiftyone_ram.comparators.choice import FIELD, ModelChoice
from fiftyone_ram.driver import claims, runs
from fiftyone_ram.errors import UserError
from fiftyone_ram.evaluation.benchmarks import BENCHMARKS, PaperFigure, percent
from fiftyone_ram.evaluation.compare_job import ONE, PER_CLASS, CompareJob
from fiftyone_ram.progress import Progress

logger = logging.getLogger(__name__)

#: The run store's kind of a comparison.
KIND = "compare"
#: What decides a model's stored scores (compared on resume), and the setting that changes each.
SCORE_SETTINGS = {"model": "--model", "classes": "--classes", "samples": "the compared view",
                  "templates": "--templates", "text_encoder": "--text-encoder"}
#: The table's figures, in order: (key of the evaluation's summary, heading).
FIGURES = (("mAP", "mAP"), ("CP", "CP"), ("CR", "CR"), ("CF1", "CF1"), ("OP", "OP"), ("OR", "OR"))


class CompareError(UserError, ValueError):
    """A comparison that cannot run as asked (a field of another run in the way, nothing to compare on...)."""


class CompareMismatchError(CompareError):
    """A model this comparison already scored with other settings, and ``rerun`` not asked."""


@dataclass
class ModelResult:
    """One model of a comparison: where its predictions and evaluation are, and what the run measured."""

    choice: ModelChoice
    field: str
    eval_key: str
    entry: dict[str, Any]  # its record in the comparison (settings, speed, memory, thresholds)
    results: Any  # its TagEvaluationResults
    scored_now: bool = False

    @property
    def name(self) -> str:
        return self.choice.name

    @property
    def summary(self) -> dict[str, Any]:
        return self.results.summary


@dataclass
class Comparison:
    """What :func:`compare` returns: the models' results, and what they were compared on."""

    job: CompareJob
    dataset: str
    classes: list[str]
    evaluated: int
    tuned_on: str
    benchmark: str | None
    models: list[ModelResult] = field(default_factory=list)
    figure: Path | None = None
    figure_html: Path | None = None

    def paper(self, model: ModelResult) -> PaperFigure | None:
        """The published figure of the model's kind on this benchmark, if any."""
        if self.benchmark is None or model.choice.kind == FIELD:
            return None
        return BENCHMARKS[self.benchmark].paper.get(model.choice.kind)

    def rows(self) -> list[dict[str, Any]]:
        """One row per model: its figures (fractions), speed, memory and the papers' figures (fractions)."""
        out = []
        for model in self.models:
            entry = model.entry
            paper = self.paper(model)
            out.append({
                "model": model.name, "kind": model.choice.kind, "field": model.field, "eval_key": model.eval_key,
                **{key: _finite(model.summary.get(key)) for key, _ in FIGURES},
                "classes": model.summary.get("num_classes"), "unsupported": entry.get("unsupported") or [],
                "images_per_second": entry.get("images_per_second"), "peak_memory_mb": entry.get("peak_memory_mb"),
                "memory": entry.get("memory"), "device": entry.get("device"), "scored_now": model.scored_now,
                "thresholds": entry.get("thresholds"),
                "paper": ({**paper.as_fractions(), "source": paper.source} if paper else None),
            })
        return out

    def shown_rows(self) -> list[dict[str, Any]]:
        """The table's rows as numbers for an App table: figures in %, one decimal; speed and memory rounded."""
        out = []
        for r in self.rows():
            out.append({"model": r["model"], **{key: _rounded(r[key], 100, 1) for key, _ in FIGURES},
                        "images_per_second": _rounded(r["images_per_second"], 1, 1),
                        "peak_memory_mb": _rounded(r["peak_memory_mb"], 1, 0)})
        return out

    def to_json_dict(self) -> dict[str, Any]:
        return {"name": self.job.name, "dataset": self.dataset, "benchmark": self.benchmark,
                "classes": len(self.classes), "evaluated_samples": self.evaluated, "threshold_rule":
                self.job.threshold_rule, "tuned_on": self.tuned_on, "models": self.rows(),
                "figure": str(self.figure) if self.figure else None,
                "figure_html": str(self.figure_html) if self.figure_html else None}

    def table(self) -> str:
        """The table printed by ``fiftyone-ram compare``: figures in %, speed, memory, the papers' figures."""
        from tabulate import tabulate

        rows = self.rows()
        with_paper = any(r["paper"] for r in rows)
        headers = ["model", *(h for _, h in FIGURES), "img/s", "peak MB"]
        if with_paper:
            headers += ["paper mAP", "paper CP", "paper CR"]
        lines = []
        for r in rows:
            line = [r["model"], *(percent(r[key]) for key, _ in FIGURES), _number(r["images_per_second"], 1),
                    _number(r["peak_memory_mb"], 0)]
            if with_paper:
                paper = r["paper"] or {}
                line += [percent(paper.get("mAP")), percent(paper.get("CP")), percent(paper.get("CR"))]
            lines.append(line)
        rule = ("one threshold for all classes per model" if self.job.threshold_rule == ONE
                else "per-class thresholds")
        head = (f"comparison '{self.job.name}' on {self.dataset}: {self.evaluated} images evaluated, "
                f"{len(self.classes)} classes; {rule}, tuned on {self.tuned_on}")
        notes = []
        memory = sorted({r["memory"] for r in rows if r["memory"]})
        if memory:
            notes.append("peak MB: " + "; ".join(MEMORY_NOTES[m] for m in memory))
        for r in rows:
            if r["unsupported"]:
                notes.append(f"{r['model']}: {len(r['unsupported'])} classes it cannot score, left out of its "
                             f"figures ({', '.join(r['unsupported'][:5])}{' ...' if len(r['unsupported']) > 5 else ''})")
        for r in rows:
            if r["paper"]:
                notes.append(f"paper {r['model']}: {r['paper']['source']} (the whole benchmark)")
        if self.figure:
            notes.append(f"figure: {self.figure} (interactive: {self.figure_html})")
        table = tabulate(lines, headers=headers, tablefmt="simple", disable_numparse=True)
        return "\n".join([head, "", table, "", *notes])


#: What the peak memory column measures, by where the model ran.
MEMORY_NOTES = {"cuda": "the GPU's peak allocation while the model loaded and ran",
                "rss": "growth of this process's resident memory while the model loaded and ran (CPU)"}


def compare(samples: Any = None, *, job: CompareJob | None = None, progress: Progress | None = None,
            **settings: Any) -> Comparison:
    """Compare taggers on ``samples`` (a dataset or view with ground truth; None with ``benchmark=``): score each
    model into its own field, tune its thresholds, record an evaluation run per model and the comparison in the
    run store, and draw the PR-curve figure. ``settings``: :class:`CompareJob`'s (``models``, ``gt_field``,
    ``name``, ``threshold_rule``, ``val_tag``...), or ``job`` itself; ``progress(fraction, label)``.

    Everything that would be refused is refused before anything is written: fields of the wrong type, an empty
    view or split, a field or evaluation of this comparison's names that it did not write, a model already
    scored with other settings (unless ``rerun``)."""
    if job is None:
        job = CompareJob(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in settings.items()})
    elif settings:
        raise TypeError("give the comparison job or its settings, not both")
    report = progress or (lambda fraction, label: None)
    view = _collection(samples, job)
    dataset = view._root_dataset
    choices = job.choices()
    _check_data(view, job, choices)
    classes = _classes(view, job)
    val_view, eval_view, tuned_on = _split(view, job)
    benchmark = _benchmark_of(view, job, classes)
    with claims.Holder() as holder, contextlib.ExitStack() as held:
        try:  # one run of a comparison at a time: a second one is refused at once
            held.enter_context(claims.dataset_lock(f"{dataset.name}/compare/{job.name}", holder, timeout=2.0))
        except claims.LockTimeoutError:
            raise CompareError(f"comparison '{job.name}' of dataset '{dataset.name}' is running in another process: "
                               f"wait for it to finish, or choose another --name") from None
        return _run(view, val_view, eval_view, tuned_on, dataset, job, choices, classes, benchmark, holder, report)


def _run(view, val_view, eval_view, tuned_on, dataset, job, choices, classes, benchmark, holder, report
         ) -> Comparison:
    state = runs.load_state(dataset, KIND, job.name) if runs.load(dataset, KIND, job.name) is not None else {}
    entries: dict[str, Any] = dict(state.get("models") or {})
    keys = {c.name: _score_settings(c, classes, view, job) for c in choices}
    fields = {c.name: _prediction_field(view, job, c) for c in choices}
    plans = {c.name: _plan(dataset, job, c, entries.get(c.name), keys[c.name], fields[c.name])
             for c in choices}  # every refusal before anything is written
    record = runs.RunRecord(KIND, job.name, settings=job.to_dict(),
                            outputs={"fields": [fields[c.name] for c in choices if fields[c.name] != c.source],
                                     "evaluations": [job.eval_key_of(c) for c in choices]})
    _save(dataset, holder, record, entries, classes)
    comparison = Comparison(job, dataset.name, classes, eval_view.count("id"), tuned_on, benchmark)
    try:
        for i, choice in enumerate(choices):
            def step(fraction: float, label: str, i=i) -> None:
                report((i + fraction) / (len(choices) + 0.2), f"{choice.name}: {label}")

            entry = entries.get(choice.name) or {}
            if plans[choice.name] == "score":
                entry = _score(view, job, choice, classes, keys[choice.name], step)
                entries[choice.name] = entry
                _save(dataset, holder, record, entries, classes)
            evaluation = _evaluation_settings(job, classes, val_view, eval_view, choice)
            key = job.eval_key_of(choice)
            if (plans[choice.name] == "evaluate" and entry.get("evaluated") == evaluation
                    and key in dataset.list_evaluations()):
                results = dataset.load_evaluation_results(key)  # scored and evaluated as asked: nothing to do
            else:
                results = _evaluate(view, val_view, eval_view, job, choice, classes, entry, fields[choice.name], step)
            entry.update(status=runs.COMPLETED, evaluated=evaluation)
            entries[choice.name] = entry
            _save(dataset, holder, record, entries, classes)
            comparison.models.append(ModelResult(choice, fields[choice.name], job.eval_key_of(choice), entry,
                                                 results, scored_now=plans[choice.name] == "score"))
        report(len(choices) / (len(choices) + 0.2), "drawing the figure")
        comparison.figure, comparison.figure_html = _draw(comparison, dataset)
        record.outputs["figure"] = str(comparison.figure)
        _save(dataset, holder, record.ended(runs.COMPLETED), entries, classes)
    except BaseException as exc:
        stopped = runs.INTERRUPTED if isinstance(exc, (KeyboardInterrupt, SystemExit)) else runs.FAILED
        _save(dataset, holder, record.ended(stopped, exc), entries, classes)
        raise
    report(1.0, "done")
    return comparison


# -- what to do per model ------------------------------------------------------------------------------------


def _score_settings(choice: ModelChoice, classes: list[str], view: Any, job: CompareJob) -> dict[str, Any]:
    """What decides the model's stored scores (``{"value": shown, "key": compared}`` per setting)."""
    ids = sorted(view.values("id"))
    templates = _file_digest(job.templates) if job.templates else "upstream's"
    return {
        "model": {"value": str(choice), "key": choice.identity()},
        "classes": {"value": f"{len(classes)} classes", "key": _digest(classes)},
        "samples": {"value": f"{len(ids)} samples", "key": _digest(ids)},
        "templates": {"value": job.templates or "upstream's", "key": templates},
        "text_encoder": {"value": job.text_encoder, "key": str(job.text_encoder)},
    }


def _evaluation_settings(job: CompareJob, classes: list[str], val_view: Any, eval_view: Any,
                         choice: ModelChoice) -> str:
    """What decides a model's evaluation once its scores are stored (the same: its recorded run serves); for a
    field of predictions, also the field's labels and confidences (the user may have changed them)."""
    given = None
    if choice.kind == FIELD:
        document = eval_view.get_field(choice.source).document_type
        path = f"{choice.source}.{document._LABEL_LIST_FIELD}" if hasattr(document, "_LABEL_LIST_FIELD") \
            else choice.source
        given = eval_view.values([f"{path}.label", f"{path}.confidence"])
    return _digest([job.gt_field, job.threshold_rule, job.ties, classes, sorted(val_view.values("id")),
                    sorted(eval_view.values("id")), given])


def _plan(dataset: Any, job: CompareJob, choice: ModelChoice, entry: dict[str, Any] | None,
          settings: dict[str, Any], target: str) -> str:
    """``"score"`` (run the model) or ``"evaluate"`` (its stored scores serve: tune and evaluate again), or the
    refusal, before anything is written. ``target``: where its predictions are (or go)."""
    key = job.eval_key_of(choice)
    has_field = target != choice.source and dataset.get_field(target) is not None
    has_eval = key in dataset.list_evaluations()
    if choice.kind == FIELD:
        taken = [f"field '{target}'"] * has_field + [f"evaluation '{key}'"] * has_eval
        if entry is None and taken and not job.rerun:
            raise CompareError(f"{' and '.join(taken)} exist but comparison '{job.name}' did not write them: pass "
                               f"rerun (CLI: --rerun) to replace them, or choose another --name")
        return "evaluate"
    if entry is None:
        taken = [f"field '{target}'"] * has_field + [f"evaluation '{key}'"] * has_eval
        if taken and not job.rerun:
            raise CompareError(f"{' and '.join(taken)} exist but comparison '{job.name}' did not write them: pass "
                               f"rerun (CLI: --rerun) to replace them, or choose another --name")
        return "score"
    if job.rerun or entry.get("status") != runs.COMPLETED or not has_field:
        return "score"
    changed = _differences(entry.get("scores") or {}, settings)
    if changed:
        raise CompareMismatchError(f"'{choice.name}' was scored in '{target}' with other settings "
                                   f"({'; '.join(changed)}): pass rerun (CLI: --rerun) to score it again, or choose "
                                   f"another --name")
    return "evaluate"


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    out = []
    for name, option in SCORE_SETTINGS.items():
        old, new = recorded.get(name) or {}, current.get(name) or {}
        if old.get("key") != new.get("key"):
            then, now = old.get("value"), new.get("value")
            if then == now:
                then, now = f"{then} (other content)", f"{now} (now)"
            out.append(f"{name}: {then} then, {now} now ({option})")
    return out


# -- scoring -------------------------------------------------------------------------------------------------


def _score(view: Any, job: CompareJob, choice: ModelChoice, classes: list[str], settings: dict[str, Any],
           step: Progress) -> dict[str, Any]:
    """Load the model, score the view into its field (logits kept), and say how fast and how big it was."""
    from fiftyone_ram.comparators import load_scorer
    from fiftyone_ram.fiftyone.comparator import comparator_model

    target = job.field_of(choice)
    _clear(view, target)
    step(0.0, "loading")
    with _PeakMemory(job.device) as memory:
        scorer = load_scorer(choice, classes, device=job.device, templates=job.templates,
                             text_encoder=job.text_encoder, batch_size=job.batch_size)
        model = comparator_model(choice, classes, scorer=scorer, device=job.device, batch_size=job.batch_size)
        step(0.1, f"scoring {len(classes)} classes")
        start = time.perf_counter()
        view.apply_model(model, label_field=target, store_logits=True, batch_size=job.batch_size,
                         num_workers=job.num_workers, skip_failures=True,
                         progress=lambda bar: step(0.1 + 0.6 * _fraction(bar), "scoring"))
        seconds = time.perf_counter() - start
    count = view.count("id")
    entry = {"kind": choice.kind, "choice": str(choice), "field": target, "eval_key": job.eval_key_of(choice),
             "scores": settings, "status": runs.RUNNING, "description": scorer.description,
             "device": str(scorer.device), "classes_scored": list(scorer.classes),
             "unsupported": list(getattr(scorer, "unsupported", [])), "images": count,
             "seconds": round(seconds, 3), "images_per_second": round(count / seconds, 3) if seconds > 0 else None,
             "peak_memory_mb": round(memory.peak / 2**20, 1), "memory": memory.kind}
    del model, scorer
    _release(job.device)
    return entry


def _clear(view: Any, target: str) -> None:
    """Empty the model's field (and its error field) on the view before it is scored again: a sample that now
    fails must not keep the last run's labels."""
    from fiftyone_ram.driver.tagging import error_field

    for name in (target, error_field(target)):
        if view.get_field(name) is not None:
            view.set_values(name, [None] * view.count("id"))


class _PeakMemory:
    """The peak memory of the ``with`` block: CUDA's peak allocation when the device is a GPU, else the highest
    resident memory of this process (sampled every 10 ms) above what it held at the start."""

    def __init__(self, device: str | None) -> None:
        import torch

        from fiftyone_ram.hardware import resolve_device

        self.device = resolve_device(device)
        self.kind = "cuda" if self.device.type == "cuda" and torch.cuda.is_available() else "rss"
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakMemory:
        if self.kind == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        process = psutil.Process()
        self._base = process.memory_info().rss
        self._highest = self._base

        def sample() -> None:
            while not self._stop.wait(0.01):
                self._highest = max(self._highest, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, name="fiftyone-ram-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.kind == "cuda":
            import torch

            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        import psutil

        self._stop.set()
        self._thread.join()
        self._highest = max(self._highest, psutil.Process().memory_info().rss)
        self.peak = max(self._highest - self._base, 0)


def _release(device: str | None) -> None:
    """Give the last model's memory back before the next one is measured."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:  # glibc keeps freed memory for reuse; given back, the next model's growth is its own
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # another C library: the next model's figure may be lower
        pass


# -- thresholds and evaluation -------------------------------------------------------------------------------


def _evaluate(view: Any, val_view: Any, eval_view: Any, job: CompareJob, choice: ModelChoice, classes: list[str],
              entry: dict[str, Any], target: str, step: Progress) -> Any:
    """Tune the model's thresholds on the validation samples, decide its tags again with them, and record its
    evaluation run on the evaluated samples."""
    from fiftyone_ram.evaluation.run import evaluate_tags

    key = job.eval_key_of(choice)
    if choice.kind == FIELD:  # as it is: its stored tags are its predictions
        if target != choice.source:
            _detections_as_tags(view, choice.source, target)
        step(0.8, "evaluating")
        entry.update(kind=FIELD, choice=str(choice), field=target, eval_key=key, unsupported=[],
                     thresholds={"rule": "the field's own tags"})
        return evaluate_tags(eval_view, target, job.gt_field, eval_key=key, classes=classes, ties=job.ties,
                             replace=True)
    scored = list(entry["classes_scored"])
    step(0.75, "tuning thresholds")
    thresholds, chosen = _tune(val_view, target, job, scored)
    entry["thresholds"] = chosen
    _decide_again(view, target, scored, thresholds)
    step(0.85, "evaluating")
    return evaluate_tags(eval_view, target, job.gt_field, eval_key=key, model_tags=scored, threshold=thresholds,
                         classes=scored, ties=job.ties, replace=True)


def _tune(val_view: Any, target: str, job: CompareJob, scored: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Thresholds aligned with ``scored``, and what was chosen (recorded with the result)."""
    from fiftyone_ram.evaluation.run import evaluate_tags, evaluated_view, evaluation_arrays
    from fiftyone_ram.evaluation.thresholds import tune_class_thresholds, tune_global_threshold

    val_view, _ = evaluated_view(val_view, target)  # unreadable images have no scores to tune on
    evaluated, scores, targets = evaluation_arrays(val_view, target, job.gt_field, model_tags=scored, classes=scored)
    one = tune_global_threshold(scores, targets)
    base = one["threshold"] if one["threshold"] is not None else 0.5
    thresholds = np.full(len(scored), base, dtype=np.float32)
    chosen: dict[str, Any] = {"rule": job.threshold_rule, "one": base, "CF1_on_tuning_samples": one["CF1"]}
    if job.threshold_rule == PER_CLASS:
        results = evaluate_tags(val_view, target, job.gt_field, model_tags=scored, classes=scored)
        rows = tune_class_thresholds(results.ranked)
        position = {t: i for i, t in enumerate(scored)}
        per_class = {}
        for name, row in zip(results.classes.tolist(), rows):
            if row["status"] == "tuned":
                thresholds[position[name]] = row["threshold"]
                per_class[name] = row["threshold"]
        chosen["per_class"] = per_class
        chosen["untuned_take_one"] = len(scored) - len(per_class)
    return thresholds, chosen


def _prediction_field(view: Any, job: CompareJob, choice: ModelChoice) -> str:
    """Where a model's predictions are for the evaluation: its own field, a ``Classifications`` field as it is,
    or, for a ``Detections`` field, the comparison's field of its objects' labels as tags."""
    import fiftyone.core.labels as fol

    if choice.kind != FIELD:
        return job.field_of(choice)
    schema = view.get_field(choice.source)
    if issubclass(getattr(schema, "document_type", type(None)), fol.Detections):
        return f"{job.name}_{choice.name}"
    return choice.source


def _detections_as_tags(view: Any, source: str, target: str) -> None:
    """Each sample's objects as image-level tags: one per label, with the highest confidence of its objects (an
    object without one counts as certain)."""
    import fiftyone as fo

    labels, confidences = view.values([f"{source}.detections.label", f"{source}.detections.confidence"])
    out = []
    for names, scores in zip(labels, confidences):
        if names is None:
            out.append(None)
            continue
        best: dict[str, float] = {}
        for name, score in zip(names, scores or [None] * len(names)):
            if name:
                best[name] = max(best.get(name, -np.inf), 1.0 if score is None else float(score))
        out.append(fo.Classifications(classifications=[fo.Classification(label=n, confidence=v)
                                                       for n, v in best.items()]))
    view.set_values(target, out)


def _decide_again(view: Any, target: str, scored: list[str], thresholds: np.ndarray) -> None:
    """The field's tags decided with the tuned thresholds (its logits kept), so that what it shows is what was
    evaluated."""
    from fiftyone_ram.fiftyone.outputs import decide_outputs

    logits = view.values(f"{target}.logits")
    labels = []
    for row in logits:
        if row is None:
            labels.append(None)
            continue
        row = np.asarray(row, dtype=np.float32)[None, :]
        with np.errstate(over="ignore"):
            probs = (1.0 / (1.0 + np.exp(-row.astype(np.float64)))).astype(np.float32)
        (output,) = decide_outputs(probs, np.arange(len(scored)), thresholds, scored,
                                   np.zeros(len(scored), dtype=bool), logits=row)
        labels.append(output.to_label())
    present = [label is not None for label in labels]
    if any(present):
        kept = view.select([i for i, p in zip(view.values("id"), present) if p], ordered=True)
        kept.set_values(target, [label for label in labels if label is not None])


# -- the samples, the classes, the split -------------------------------------------------------------------


def _collection(samples: Any, job: CompareJob) -> Any:
    if job.benchmark is not None:
        if samples is not None:
            raise CompareError("give samples or a benchmark (CLI: --dataset or --benchmark), not both")
        from fiftyone_ram.evaluation.benchmarks import build_dataset

        return build_dataset(job.benchmark, taglist=job.taglist, annots=job.annots, images_dir=job.images_dir,
                             max_samples=job.max_samples, dataset_name=job.dataset_name)
    if samples is None:
        raise CompareError("nothing to compare on: give a dataset (CLI: --dataset) or a benchmark (--benchmark)")
    return samples


def _check_data(view: Any, job: CompareJob, choices: Sequence[ModelChoice]) -> None:
    import fiftyone.core.labels as fol

    from fiftyone_ram.fields import PREDICTION_LABEL_TYPES, TAG_LABEL_TYPES, check_output_field, field_kind

    if view.media_type != "image":
        raise CompareError(f"a comparison needs images; this collection holds {view.media_type!r} media")
    if view.count("id") == 0:
        raise CompareError("nothing to compare on: the view has no samples")
    field_kind(view, job.gt_field, TAG_LABEL_TYPES, "ground-truth", allow_strings=True)
    for choice in choices:
        if choice.kind == FIELD:
            _, kind = field_kind(view, choice.source, (*PREDICTION_LABEL_TYPES, fol.Detections), "prediction",
                                 allow_strings=False)
            if choice.source == job.gt_field:
                raise CompareError(f"'{choice.source}' is both a model's predictions and the ground truth")
            if kind is fol.Detections:
                check_output_field(view, f"{job.name}_{choice.name}", fol.Classifications,
                                   option=f"the field of the tags of {choice.source}'s objects")
        else:
            check_output_field(view, job.field_of(choice), fol.Classifications,
                               option=f"the field of model {choice.name}")


def _classes(view: Any, job: CompareJob) -> list[str]:
    """The compared classes: the file's, else the benchmark's, else the ground truth's names in the view."""
    from fiftyone_ram.fields import read_tags
    from fiftyone_ram.tag_files import read_tag_list

    if job.classes:
        names = read_tag_list(Path(job.classes))
    elif (view._root_dataset.info.get("benchmark") or {}).get("classes"):
        names = list(view._root_dataset.info["benchmark"]["classes"])
    else:
        names = sorted({name for row in read_tags(view, job.gt_field, role="ground-truth").names
                        for name in row if name})
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise CompareError(f"no class to compare: '{job.gt_field}' holds no label in the view, and no classes file "
                           f"was given (CLI: --classes)")
    return names


def _split(view: Any, job: CompareJob) -> tuple[Any, Any, str]:
    """(the samples that tune, the samples evaluated, how to say which)."""
    if job.val_tag is None:
        return view, view, f"the {view.count('id')} evaluated images (optimistic)"
    tuning, evaluated = view.match_tags(job.val_tag), view.match_tags(job.val_tag, bool=False)
    for part, what in ((tuning, f"has the tag '{job.val_tag}'"), (evaluated, f"lacks the tag '{job.val_tag}'")):
        if part.count("id") == 0:
            raise CompareError(f"no sample {what}: val_tag (CLI: --val-tag) splits the view into samples that tune "
                               f"the thresholds (tagged) and samples evaluated (the others)")
    return tuning, evaluated, f"the {tuning.count('id')} images tagged '{job.val_tag}'"


def _benchmark_of(view: Any, job: CompareJob, classes: list[str]) -> str | None:
    """The benchmark the view is (its published figures apply) when its classes are the benchmark's."""
    info = view._root_dataset.info.get("benchmark") or {}
    name = job.benchmark or info.get("name")
    if name in BENCHMARKS and list(info.get("classes") or []) == classes:
        return name
    return None


# -- the record and the figure -------------------------------------------------------------------------------


def _save(dataset: Any, holder: Any, record: Any, entries: dict[str, Any], classes: list[str]) -> None:
    with claims.dataset_lock(dataset.name, holder):
        dataset.reload()
        runs.save(dataset, record)
        runs.save_state(dataset, KIND, record.target, models=entries, classes=classes)


def _draw(comparison: Comparison, dataset: Any) -> tuple[Path, Path]:
    from fiftyone_ram.evaluation.plots import plot_comparison

    path = Path(comparison.job.figure).expanduser() if comparison.job.figure else _default_figure(dataset.name,
                                                                                                  comparison.job.name)
    return plot_comparison({m.name: m.results for m in comparison.models}, path,
                           title=f"{comparison.dataset}: comparison '{comparison.job.name}'")


def _default_figure(dataset: str, name: str) -> Path:
    from fiftyone_ram.assets import ram_home

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return ram_home() / "comparisons" / f"{safe}_{name}.png"


def load_comparison(dataset: Any, name: str = "cmp") -> dict[str, Any]:
    """A recorded comparison: its record's settings and status, and per model its entry (field, evaluation key,
    speed, memory, thresholds)."""
    record = runs.load(dataset, KIND, name)
    if record is None:
        raise CompareError(f"dataset '{dataset.name}' has no comparison '{name}'")
    return {"record": record, **runs.load_state(dataset, KIND, name)}


# -- small helpers -------------------------------------------------------------------------------------------


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()[:16]


def _fraction(bar: Any) -> float:
    """How far FiftyOne's progress bar is (a property or a method, by version)."""
    value = bar.progress() if callable(bar.progress) else bar.progress
    return float(value or 0.0)


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _rounded(x: float | None, scale: float, digits: int) -> float | None:
    return None if x is None or x != x else round(scale * x, digits)


def _number(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
