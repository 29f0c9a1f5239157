"""What the App shows of a tag evaluation: rounded summaries, per-class rows, PR-curve traces and the
multi-label confusion.

FiftyOne's Model Evaluation panel reads a tag run as a detection run, which misleads for tags in two ways:
its confusion matrix pairs every tag with "(none)" (a tag is either matched or missed; no tag is ever
*mistaken for* another in the run's matches), and its "Average Confidence" averages per-class means in
which a never-predicted class counts as 0. For tags the useful confusion is *which wrong tags were
predicted on the images where a tag was missed* (read here from the run's per-sample verdicts), and a
confidence is averaged over the tags actually predicted. The plugin's own panel and operators show these.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

#: Decimals of every figure shown in the App (16-digit floats help nobody).
DIGITS = 4
NOTHING = "(nothing)"
SUMMARY_LABELS = {
    "mAP": "mAP",
    "CP": "CP (mean per-class precision)",
    "CR": "CR (mean per-class recall)",
    "CF1": "CF1",
    "OP": "OP (overall precision)",
    "OR": "OR (overall recall)",
    "OF1": "OF1",
}


def tag_evaluation_keys(dataset: Any) -> list[str]:
    """The dataset's evaluation keys recorded by ``evaluate_tags`` (other runs cannot be shown or tuned), oldest
    first: the last is the latest run."""
    from fiftyone_ram.evaluation.keys import METHOD

    infos = {k: dataset.get_evaluation_info(k) for k in dataset.list_evaluations()}
    keys = [k for k, info in infos.items() if getattr(info.config, "method", None) == METHOD]
    return sorted(keys, key=lambda k: (infos[k].timestamp is None, infos[k].timestamp, k))  # oldest first


def rounded(x: Any, digits: int = DIGITS) -> float | None:
    """``x`` rounded for display; None for a missing or NaN value (shown as empty, not as 'nan')."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if np.isfinite(x) else None


def summary_figures(results: Any, digits: int = DIGITS) -> dict[str, float | int | None]:
    """The run's headline numbers, rounded, keyed as in ``results.summary``."""
    s = results.summary
    out: dict[str, float | int | None] = {k: rounded(s.get(k), digits) for k in SUMMARY_LABELS}
    for key in ("num_samples", "num_classes", "tp", "fp", "fn"):
        if s.get(key) is not None:
            out[key] = int(s[key])
    return out


def predicted_confidences(results: Any) -> dict[str, float | None]:
    """Per class, the mean confidence of the tags predicted for it; None for a class never predicted
    (so that it does not pull an average towards 0, as the built-in panel's 0.0 does)."""
    sums: Counter = Counter()
    counts: Counter = Counter()
    for pred, conf in zip(results.ypred, results.confs):
        if conf is not None and np.isfinite(conf):
            sums[pred] += float(conf)
            counts[pred] += 1
    return {c: (sums[c] / counts[c] if counts[c] else None) for c in results.classes.tolist()}


def class_rows(results: Any, digits: int = DIGITS, sort_by: str = "support") -> list[dict[str, Any]]:
    """One row per evaluated class: AP, precision, recall, F1, support, TP / FP / FN and the mean
    confidence of its predicted tags; sorted by ``sort_by`` (descending), then name."""
    per = results.per_class
    confidences = predicted_confidences(results)
    rows = []
    for i, name in enumerate(results.classes.tolist()):
        row: dict[str, Any] = {"class": name}
        for key in ("ap", "precision", "recall", "f1"):
            row[key] = rounded(per[key][i], digits) if per.get(key) is not None else None
        for key in ("support", "tp", "fp", "fn"):
            row[key] = int(per[key][i]) if per.get(key) is not None else None
        row["confidence"] = rounded(confidences.get(name), digits)
        rows.append(row)
    rows.sort(key=lambda r: (-(r.get(sort_by) if r.get(sort_by) is not None else -1), r["class"]))
    return rows


def average_confidence(results: Any, digits: int = DIGITS) -> float | None:
    """Mean confidence over every predicted tag of the evaluated classes (not over classes)."""
    confs = [float(c) for p, c in zip(results.ypred, results.confs)
             if c is not None and np.isfinite(c) and p in set(results.classes.tolist())]
    return rounded(np.mean(confs), digits) if confs else None


def sample_verdicts(samples: Any, results: Any) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """Per sample of ``samples`` (evaluated with ``results``' key): the true-positive, false-positive and
    missed (false-negative) tags, read from the fields the run wrote."""
    from fiftyone_ram.fields import read_predictions

    key = results.key
    pred = read_predictions(samples, results.config.pred_field, with_logits=False)
    missed = samples.values(f"{key}_missed")
    if pred.label_path is None:
        raise ValueError(f"'{pred.field}' holds no labels with verdicts")
    verdicts = samples.values(f"{pred.label_path}.{key}")
    if pred.kind == "single":
        verdicts = [[v] for v in verdicts]
    tps, fps = [], []
    for names, marks in zip(pred.names, verdicts):
        marks = list(marks or [])
        tps.append([n for n, m in zip(names, marks) if m == "tp"])
        fps.append([n for n, m in zip(names, marks) if m == "fp"])
    return tps, fps, [list(m or []) for m in missed]


def confusions(samples: Any, results: Any, top: int | None = 50) -> list[dict[str, Any]]:
    """The multi-label confusion as a list: on how many images a tag was missed while another tag was
    wrongly predicted (``NOTHING`` when no wrong tag was predicted there), most frequent first."""
    _, fps, missed = sample_verdicts(samples, results)
    pairs: Counter = Counter()
    for wrong, lost in zip(fps, missed):
        for m in set(lost):
            for w in set(wrong) or {NOTHING}:
                pairs[(m, w)] += 1
    rows = [{"missed": m, "predicted_instead": w, "images": n} for (m, w), n in pairs.items()]
    rows.sort(key=lambda r: (-r["images"], r["missed"], r["predicted_instead"]))
    return rows[:top] if top is not None else rows


def confusion_matrix(samples: Any, results: Any, classes: Sequence[str] | None = None,
                     max_classes: int = 20) -> tuple[np.ndarray, list[str], list[str]]:
    """Ground truth × prediction co-occurrence: cell (x, y) counts the images whose ground truth has ``x``
    and whose predictions have ``y``; the diagonal counts the images where ``x`` was found. The last
    column, ``NOTHING``, counts images where ``x`` was missed and nothing wrong was predicted; the last row,
    ``NOTHING``, wrong predictions on images without missed tags. Default classes: the most frequent."""
    tps, fps, missed = sample_verdicts(samples, results)
    if classes is None:
        rows = class_rows(results, sort_by="support")
        classes = [r["class"] for r in rows[:max_classes]]
    names = list(classes)
    index = {c: i for i, c in enumerate(names)}
    n = len(names)
    matrix = np.zeros((n + 1, n + 1), dtype=np.int64)
    for tp, fp, fn in zip(tps, fps, missed):
        truth = {index[c] for c in set(tp) | set(fn) if c in index}
        predicted = {index[c] for c in set(tp) | set(fp) if c in index}
        for x in truth:
            for y in predicted:
                matrix[x, y] += 1
        wrong = {index[c] for c in set(fp) if c in index}
        for x in {index[c] for c in set(fn) if c in index}:
            if not wrong:
                matrix[x, n] += 1
        if not fn:
            for y in wrong:
                matrix[n, y] += 1
    labels = names + [NOTHING]
    return matrix, labels, labels


def pr_traces(results: Any, classes: Sequence[str] | None = None, points: int = 101,
              digits: int = DIGITS) -> list[dict[str, Any]]:
    """Plotly line traces (plain dicts, JSON-ready for an App view) of the interpolated PR curves of
    ``classes`` (default: the three with the highest AP), each named with its AP."""
    names = results.classes.tolist()
    ap = np.nan_to_num(np.asarray(results.per_class["ap"], dtype=float), nan=-1.0)
    if not classes:
        classes = [names[i] for i in np.argsort(-ap, kind="stable")[:3]]
    recall = np.linspace(0.0, 1.0, points)
    traces = []
    for c in classes:
        _, precision = results.pr_curve(c).interpolated(recall)
        value = rounded(ap[names.index(c)], 3)
        traces.append({"type": "scatter", "mode": "lines", "name": f"{c} (AP {value})",
                       "x": [round(float(r), digits) for r in recall],
                       "y": [round(float(p), digits) for p in precision]})
    return traces


PR_LAYOUT = {"xaxis": {"title": {"text": "Recall"}, "range": [0, 1.02]},
             "yaxis": {"title": {"text": "Precision"}, "range": [0, 1.02]},
             "showlegend": True, "legend": {"x": 0.02, "y": 0.02}, "height": 360, "margin": {"l": 50, "r": 10, "t": 10, "b": 40}}


def summary_notes(results: Any) -> list[str]:
    """What the figures leave out and how ground-truth names were mapped, one note per line (the panel shows
    what the command line prints)."""
    from fiftyone_ram.evaluation.report import format_left_out, format_mapping

    return [line for text in (format_left_out(results), format_mapping(results)) for line in text.splitlines() if line]


def mean_pr_curve(results: Any, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """One PR curve for a whole evaluation: at each of ``points`` recall levels, the mean over the classes with
    positives of their interpolated precision (COCO-style envelope); its area is close to the mAP, so that
    models compare on one plot as they do in the table."""
    from fiftyone_ram.evaluation.metrics import pr_curve

    recall = np.linspace(0.0, 1.0, points)
    ranked = results.ranked
    curves = [pr_curve(ranked, k).interpolated(recall)[1] for k in np.flatnonzero(ranked.support > 0)]
    return recall, (np.mean(curves, axis=0) if curves else np.zeros_like(recall))


def comparison_traces(results_by_name: dict[str, Any], digits: int = DIGITS) -> list[dict[str, Any]]:
    """Plotly line traces (plain dicts) of each evaluation's mean PR curve, named with its mAP."""
    traces = []
    for name, results in results_by_name.items():
        recall, precision = mean_pr_curve(results)
        traces.append({"type": "scatter", "mode": "lines", "name": f"{name} (mAP {rounded(results.mAP(), 3)})",
                       "x": [round(float(r), digits) for r in recall],
                       "y": [round(float(p), digits) for p in precision]})
    return traces


def comparison_rows(results_by_name: dict[str, Any], digits: int = DIGITS) -> list[dict[str, Any]]:
    """Side by side: one row per evaluation, its prediction field and headline figures, rounded."""
    return [{"run": name, "pred_field": results.config.pred_field, **summary_figures(results, digits)}
            for name, results in results_by_name.items()]
