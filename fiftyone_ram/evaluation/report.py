"""The printed tag-quality report: summary, per-class table, and what the vocabulary mapping left out.

FiftyOne's own ``print_report`` is scikit-learn's single-label classification report; a tagging audit
also needs mAP, the macro / micro multi-label figures and the classes that could not be evaluated.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from tabulate import tabulate  # a FiftyOne dependency, used by its own reports

SUMMARY_KEYS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")


def format_summary(summary: dict[str, Any], top_k: dict[str, Any] | None = None, digits: int = 3,
                   paper: dict[str, Any] | None = None) -> str:
    """One table: rows = mAP and the P/R/F1 figures, columns = at thresholds, top-k, (paper)."""
    header = ["metric", "at thresholds"] + [f"top-{k}" for k in (top_k or {})]
    if paper:
        header.append(paper.get("label", "paper"))
    rows = []
    for key in SUMMARY_KEYS:
        row = [key, _fmt(summary.get(key), digits)]
        for k, s in (top_k or {}).items():
            row.append("" if key == "mAP" else _fmt(s.get(key), digits))
        if paper:
            row.append(_fmt(paper.get(key), digits))
        rows.append(row)
    return tabulate(rows, headers=header, tablefmt="simple")


def format_report(
    results: Any, *, classes: Sequence[str] | None = None, digits: int = 3, top: int | None = None
) -> str:
    """The full report of a ``TagEvaluationResults``."""
    s = results.summary
    lines = [
        f"Tag evaluation '{results.key}': {results.config.pred_field} vs {results.config.gt_field}",
        f"  {s.get('num_samples', 0)} samples, {s.get('num_classes', 0)} classes "
        f"({s.get('num_classes_with_positives', 0)} with positives), {s.get('num_positives', 0)} ground-truth "
        f"tags, {s.get('num_predicted', 0)} predicted; scores from {s.get('score_source')}; "
        f"ties {results.config.ties}, classes without positives: {results.config.empty_classes}",
        "",
        format_summary(s, results.top_k, digits),
        "",
        format_class_table(results, classes=classes, digits=digits, top=top),
    ]
    notes = [line for line in (format_left_out(results), format_mapping(results)) if line]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def format_left_out(results: Any) -> str:
    """The samples and predictions the figures leave out, and why (every door prints this)."""
    left = results.left_out
    lines = []
    if left.get("unreadable"):
        files = ", ".join(left.get("unreadable_files") or [])
        lines.append(f"{left['unreadable']} sample(s) left out: their image could not be read by the tagger "
                     f"(reason in '{results.config.pred_field}_error'){': ' + files if files else ''}")
    if left.get("untagged"):
        lines.append(f"{left['untagged']} sample(s) left out: never tagged into '{results.config.pred_field}'")
    other = results.summary.get("num_unevaluated_predictions", 0)
    if other:
        lines.append(f"OP / OR leave out {other} predicted tag(s) of classes absent from the ground truth")
    return "\n".join(lines)


def format_class_table(
    results: Any, *, classes: Sequence[str] | None = None, digits: int = 3, top: int | None = None
) -> str:
    """Per-class AP, precision, recall, F1, support and threshold, best AP first."""
    pc = results.per_class
    names = results.classes.tolist()
    wanted = set(classes) if classes is not None else None
    rows = []
    for i, c in enumerate(names):
        if wanted is not None and c not in wanted:
            continue
        thr = pc.get("threshold")
        rows.append([c, pc["ap"][i], pc["precision"][i], pc["recall"][i], pc["f1"][i], pc["support"][i],
                     pc["tp"][i], pc["fp"][i], pc["fn"][i], thr[i] if thr else None])
    rows.sort(key=lambda r: (-(r[1] if r[1] is not None and not math.isnan(r[1]) else -1.0), r[0]))
    if top is not None:
        rows = rows[:top]
    header = ["class", "AP", "precision", "recall", "F1", "support", "TP", "FP", "FN", "threshold"]
    if not any(r[-1] is not None for r in rows):
        header, rows = header[:-1], [r[:-1] for r in rows]
    shown = [[r[0]] + [_fmt(v, digits) if isinstance(v, float) or v is None else v for v in r[1:]] for r in rows]
    return tabulate(shown, headers=header, tablefmt="simple")


def format_mapping(results: Any, limit: int = 30) -> str:
    """Ground-truth names left out (absent from the model, or ignored by the mapping) and merges."""
    v = results.mapping
    if v is None:
        return ""
    lines = []
    unmapped = v.unmapped()
    if unmapped:
        lines.append(f"{len(unmapped)} ground-truth classes are not in the model's vocabulary and were left out "
                     f"({sum(v.counts.get(n, 0) for n in unmapped)} tags): " + _listing(unmapped, v.counts, limit))
    ignored = v.ignored()
    if ignored:
        lines.append(f"{len(ignored)} ground-truth classes ignored by the mapping: "
                     + _listing(ignored, v.counts, limit))
    merged = v.merged()
    if merged:
        lines.append("ground-truth classes merged into one tag: " + "; ".join(
            f"{t} <- {', '.join(ns)}" for t, ns in list(merged.items())[:limit]))
    renamed = {n: r.tag for n, r in v.resolutions.items() if r.tag is not None and r.tag != n}
    if renamed:
        lines.append(f"{len(renamed)} ground-truth classes renamed: " + ", ".join(
            f"{n} -> {t}" for n, t in list(sorted(renamed.items()))[:limit]) + (" ..." if len(renamed) > limit else ""))
    if not v.model_vocabulary_known:
        lines.append("the model's tag list was not given: ground-truth classes the model never predicted are "
                     "counted as misses, not reported as absent (pass model_tags= to tell them apart)")
    return "\n".join(lines)


def _listing(names: list[str], counts: dict[str, int], limit: int) -> str:
    names = sorted(names, key=lambda n: (-counts.get(n, 0), n))
    shown = ", ".join(f"{n} ({counts.get(n, 0)})" for n in names[:limit])
    return shown + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"
