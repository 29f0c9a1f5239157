"""PR curves and a per-class chart for tag evaluations, drawn with FiftyOne's plotting.

PR curves go through ``fiftyone.core.plots.plot_pr_curves`` (plotly or matplotlib, notebook-aware), fed
with the COCO-style interpolated precision at 101 recall points, computed from the stored positives'
ranks. FiftyOne has no bar chart for arrays, so the per-class chart is a plotly bar figure given
FiftyOne's default layout and notebook wrapper.
"""

from __future__ import annotations

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
