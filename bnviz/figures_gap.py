"""Figures of BatchNorm's train/eval gap: arrays of ``bnviz.views.RunView`` in, ``go.Figure`` out.

Left, held-out accuracy as a deployed model sees it (evaluation mode: BN's running averages,
solid) against the same images normalized with batch statistics as in training (dashed);
a diamond marks each re-estimation of the running statistics (accuracy before -> after).
Middle, per hidden layer, how far the latest training batch's mean is from BN's running mean,
in running standard deviations; right, its variance over the running variance (1: they
agree), both from ``bnviz.evaluation.running_vs_batch``. Only
runs with BatchNorm have either; the per-example norms evaluate as they train.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from bnviz.figures import _figure, _Grid, _layer_label, layer_colors
from bnviz.style import run_color, run_label
from bnviz.views import RunView

MEAN_GAP, VAR_RATIO = 4, 5  # bnviz.evaluation.RUNNING_FIELDS.index("mean_gap"), ("var_ratio")
DASHES = ("solid", "dash", "dot", "dashdot")  # per run in the gap panel; colour is the layer


def has_gap(views: list[RunView]) -> bool:
    """Whether any run has running statistics to compare (a net with BatchNorm)."""
    return any(len(v.batch_accuracy) or len(v.running_steps) for v in views)


def train_eval(views: list[RunView], uirevision: str = "train-eval") -> go.Figure:
    """Held-out accuracy in both of BN's modes (left) and each layer's running-vs-batch mean gap (right)."""
    grid = _Grid(1, 3, col_gap=0.08)
    data = []
    for index, view in enumerate(v for v in views if len(v.batch_accuracy) or len(v.running_steps)):
        steps = view.accuracy_steps.astype(np.int32)
        title, color = run_label(view.norm, view.dropout), run_color(view.norm, view.dropout)
        line = dict(color=color, width=2)
        data.append(dict(type="scatter", mode="lines+markers", x=steps, y=view.accuracy.astype(np.float32),
                         name=f"{title}: evaluation mode (running averages)", line=line, xaxis="x", yaxis="y"))
        data.append(dict(type="scatter", mode="lines", x=steps[:len(view.batch_accuracy)],
                         y=view.batch_accuracy.astype(np.float32), name=f"{title}: batch statistics",
                         line=dict(line, dash="dash"), xaxis="x", yaxis="y"))
        if view.reestimates:
            events = np.array(view.reestimates, dtype=np.float64)  # (k, 3): step, before, after
            data.append(dict(type="scatter", mode="markers+text", x=events[:, 0], y=events[:, 2],
                             text=[f"re-estimated: {b:.1%} → {a:.1%}" for _, b, a in view.reestimates],
                             textposition="bottom right", marker=dict(symbol="diamond", size=11, color=color),
                             name=f"{title}: re-estimated", xaxis="x", yaxis="y"))
        colors = layer_colors(len(view.layer_names))
        running_steps = view.running_steps.astype(np.int32)
        for layer, name in enumerate(view.layer_names if len(running_steps) else ()):
            gap = view.running_stats[:, layer, MEAN_GAP].astype(np.float32)
            if not np.isfinite(gap).any():
                continue
            line = dict(color=colors[layer], width=2, dash=DASHES[index % len(DASHES)])
            data.append(dict(type="scatter", mode="lines", x=running_steps, y=gap, xaxis="x2", yaxis="y2",
                             name=f"{title}: {_layer_label(name)}", legendgroup=f"{title}{name}", line=line))
            data.append(dict(type="scatter", mode="lines", x=running_steps, xaxis="x3", yaxis="y3",
                             y=view.running_stats[:, layer, VAR_RATIO].astype(np.float32), showlegend=False,
                             name=f"{title}: {_layer_label(name)}", legendgroup=f"{title}{name}", line=line))
    layout = grid.layout(views, titles=["held-out accuracy:<br>running averages vs batch statistics",
                                        "batch mean - running mean<br>(in running stds)",
                                        "batch variance /<br>running variance"], share_y="")  # a third of a page wide
    layout["yaxis"]["tickformat"] = ".0%"
    layout["yaxis2"]["rangemode"] = "tozero"
    layout["yaxis3"]["type"] = "log"
    layout.update(height=320, uirevision=uirevision, legend=dict(orientation="h", y=-0.3, x=0))
    return _figure(data, layout)
