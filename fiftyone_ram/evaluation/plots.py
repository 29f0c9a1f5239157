"""PR curves and a per-class chart for tag evaluations, drawn with FiftyOne's plotting.

PR curves go through ``fiftyone.core.plots.plot_pr_curves`` (plotly or matplotlib, notebook-aware), fed
with the COCO-style interpolated precision at 101 recall points, computed from the stored positives'
ranks. FiftyOne has no bar chart for arrays, so the per-class chart is a plotly bar figure given
FiftyOne's default layout and notebook wrapper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

import fiftyone.core.context as focx
import fiftyone.core.plots as fop

CLASS_METRICS = ("ap", "precision", "recall", "f1", "support")


def plot_pr_curves(results: Any, classes: Sequence[str] | None = None, backend: str = "plotly", **kwargs: Any) -> Any:
    """Per-class PR curves; by default the three classes with the highest AP (as FiftyOne does)."""
    names = results.classes.tolist()
    if classes is None:
        ap = np.nan_to_num(np.asarray(results.per_class["ap"], dtype=float), nan=-1.0)
        classes = [names[i] for i in np.argsort(-ap, kind="stable")[:3]]
    recall = np.linspace(0.0, 1.0, 101)
    precisions = np.array([results.pr_curve(c).interpolated(recall)[1] for c in classes])
    return fop.plot_pr_curves(precisions, recall, list(classes), backend=backend, **kwargs)


def plot_class_metrics(
    results: Any,
    metric: str = "ap",
    classes: Sequence[str] | None = None,
    *,
    sort: bool = True,
    max_classes: int | None = 50,
    title: str | None = None,
) -> Any:
    """A bar per class of ``metric`` (``ap``, ``precision``, ``recall``, ``f1`` or ``support``)."""
    import plotly.graph_objects as go
    from fiftyone.core.plots.plotly import _DEFAULT_LAYOUT, PlotlyNotebookPlot

    if metric not in CLASS_METRICS:
        raise ValueError(f"metric must be one of {', '.join(CLASS_METRICS)}; got {metric!r}")
    names = results.classes.tolist()
    values = np.asarray(results.per_class[metric], dtype=float)
    idx = [names.index(c) for c in classes] if classes is not None else list(range(len(names)))
    if sort:
        idx.sort(key=lambda i: -np.nan_to_num(values[i], nan=-1.0))
    if max_classes is not None:
        idx = idx[:max_classes]
    support = np.asarray(results.per_class["support"])
    figure = go.Figure(go.Bar(
        x=[names[i] for i in idx],
        y=[values[i] for i in idx],
        customdata=[int(support[i]) for i in idx],
        hovertemplate="<b>%{x}</b><br>" + metric + ": %{y:.3f}<br>support: %{customdata}<extra></extra>",
    ))
    figure.update_layout(title=title or f"{metric} per class ({results.key or 'tags'})",
                         xaxis_title="class", yaxis_title=metric)
    figure.update_layout(**_DEFAULT_LAYOUT)
    if focx.is_jupyter_context():
        return PlotlyNotebookPlot(figure)
    return figure


def plot_comparison(results_by_name: dict[str, Any], path: str | Path, *, title: str | None = None
                    ) -> tuple[Path, Path]:
    """Every evaluation's mean PR curve (``tables.mean_pr_curve``) on one plot: a PNG at ``path`` (matplotlib's
    Agg canvas, so that no process-wide backend is changed) and an interactive HTML beside it (plotly, its
    script included: it opens offline). Returns both paths."""
    import plotly.graph_objects as go
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fiftyone_ram.evaluation.tables import PR_LAYOUT, comparison_traces

    png = Path(path).expanduser()
    if png.suffix.lower() != ".png":
        png = png.with_suffix(".png")
    html = png.with_suffix(".html")
    png.parent.mkdir(parents=True, exist_ok=True)
    traces = comparison_traces(results_by_name)
    figure = Figure(figsize=(6.4, 5.2), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for trace in traces:
        axes.plot(trace["x"], trace["y"], label=trace["name"], linewidth=1.6)
    axes.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision (mean over classes)",
             title=title or "Precision-recall")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(png)
    interactive = go.Figure([go.Scatter(x=t["x"], y=t["y"], mode="lines", name=t["name"]) for t in traces])
    interactive.update_layout(**{**PR_LAYOUT, "height": 520}, title=title or "Precision-recall",
                              yaxis_title="Precision (mean over classes)")
    interactive.write_html(str(html), include_plotlyjs=True)
    return png, html
