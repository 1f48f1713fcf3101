"""Figures of a trainability map, built from ``MapData`` arrays (no runs, no Streamlit).

``map_figure`` draws one panel per varied value (no BN, BN) side by side on one colour
scale, final held-out accuracy from 0 to 1, diverged cells marked with a cross and failed
ones with a "!". Every cell also carries an invisible, clickable marker whose
``customdata`` is ``[varied index, row, column]``: the app opens that cell's run when one
is clicked (a Plotly heatmap sends no click events, a scatter point does).
``gradient_figure`` draws the depth maps' gradient ratio at initialization against depth.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz.reproduce.map import Axis
from bnviz.reproduce.map_data import MapData
from bnviz.style import NORM_LABELS, RUN_COLORS

COLORSCALE = "Viridis"  # perceptually even, readable in grey: 0 dark, 1 bright
DIVERGED_MARK = dict(symbol="x-thin", size=11, color="#ff3030", line=dict(width=2.5, color="#ff3030"))
ERROR_MARK = dict(symbol="diamond-open", size=10, color="#ff3030", line=dict(width=2))
PANEL_HEIGHT = 430  # px: 9 rows of cells about 40 px each, plus titles and axes
LABELS = {"lr": "learning rate", "init_sigma": "init σ", "depth": "hidden layers", "batch_size": "batch size",
          "width": "units per layer", "seed": "seed"}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def ticks(axis: Axis | None) -> list[str]:
    if axis is None:
        return [""]
    return [f"{v:.3g}" if isinstance(v, float) else str(v) for v in axis.values]


def title(name: str, value) -> str:
    return NORM_LABELS.get(value, str(value)) if name == "norm" else f"{label(name)} {value}"


def hover_lines(data: MapData, v: int) -> np.ndarray:
    """(rows, columns) of hover text for panel ``v``."""
    spec = data.spec
    xs, ys = ticks(spec.x), ticks(spec.y)
    text = np.empty(spec.shape[1:], dtype=object)
    for r in range(spec.shape[1]):
        for c in range(spec.shape[2]):
            where = f"{label(spec.x.name)} {xs[c]}" + (f", {label(spec.y.name)} {ys[r]}" if spec.y else "")
            if data.error[v, r, c]:
                outcome = "the run failed"
            elif data.diverged[v, r, c]:
                outcome = f"diverged at step {int(data.diverged_step[v, r, c])}"
            else:
                reached = data.steps_to[v, r, c]
                outcome = (f"test accuracy {data.accuracy[v, r, c]:.3f}; "
                           + (f"reached {spec.threshold:.0%} at step {int(reached)}" if math.isfinite(reached)
                              else f"never reached {spec.threshold:.0%}"))
                saturation = data.saturation[v, r, c]
                if math.isfinite(saturation):
                    outcome += f"; saturated/dead at the end {saturation:.2f}"
            text[r, c] = f"{where}<br>{outcome}<br><i>click to open this run</i>"
    return text


def map_figure(data: MapData, uirevision: str = "map") -> go.Figure:
    """Panels side by side, one per varied value, on one colour scale (accuracy 0 to 1)."""
    spec = data.spec
    panels, rows, cols = spec.shape
    figure = make_subplots(rows=1, cols=panels, shared_yaxes=True, horizontal_spacing=0.04,
                           subplot_titles=[title(spec.vary.name, value) for value in spec.vary.values])
    x, y = np.arange(cols), np.arange(rows)
    for v in range(panels):
        col = v + 1
        figure.add_trace(go.Heatmap(x=x, y=y, z=data.accuracy[v], coloraxis="coloraxis", hoverinfo="skip",
                                    xgap=1, ygap=1), row=1, col=col)
        rr, cc = np.meshgrid(y, x, indexing="ij")
        text = hover_lines(data, v)
        figure.add_trace(go.Scatter(  # the clickable layer: one transparent square per cell
            x=cc.ravel(), y=rr.ravel(), mode="markers", showlegend=False, name="cells",
            marker=dict(symbol="square", size=max(12, min(36, 320 // max(rows, cols))), color="rgba(0,0,0,0)"),
            customdata=np.stack([np.full(rr.size, v), rr.ravel(), cc.ravel()], axis=1).tolist(),  # a list: a
            #   typed array reaches the page's selection as {"0": v, "1": row, "2": column}
            hovertext=text.ravel(), hoverinfo="text"), row=1, col=col)
        for mask, mark, name in ((data.diverged[v] & ~data.error[v], DIVERGED_MARK, "diverged"),
                                 (data.error[v], ERROR_MARK, "failed")):
            r, c = np.nonzero(mask)
            figure.add_trace(go.Scatter(x=c, y=r, mode="markers", marker=mark, name=name, legendgroup=name,
                                        showlegend=bool(v == 0 and mask.any()), hoverinfo="skip"), row=1, col=col)
        figure.update_xaxes(title=label(spec.x.name), tickvals=list(x), ticktext=ticks(spec.x), row=1, col=col)
    figure.update_yaxes(title=label(spec.y.name) if spec.y else "", tickvals=list(y), ticktext=ticks(spec.y),
                        row=1, col=1)
    figure.update_layout(height=PANEL_HEIGHT if rows > 1 else 260, template="plotly_white", uirevision=uirevision,
                         coloraxis=dict(colorscale=COLORSCALE, cmin=0, cmax=1,
                                        colorbar=dict(title="final test<br>accuracy")),
                         margin=dict(l=70, r=20, t=50, b=60), legend=dict(orientation="h", y=-0.25),
                         hovermode="closest", clickmode="event+select", dragmode=False)
    return figure


def gradient_figure(data: MapData) -> go.Figure:
    """Depth maps: first/last hidden layer gradient norm at initialization against depth, per varied value
    (the median over learning rates: they share initial weights and first batch)."""
    spec = data.spec
    figure = go.Figure()
    for v, value in enumerate(spec.vary.values):
        figure.add_trace(go.Scatter(x=list(spec.y.values), y=np.nanmedian(data.grad_ratio[v], axis=1),
                                    mode="lines+markers", name=title(spec.vary.name, value),
                                    line=dict(color=RUN_COLORS.get(value))))
    figure.update_xaxes(title=label(spec.y.name))
    figure.update_yaxes(title="first / last layer gradient norm at step 1", type="log")
    figure.update_layout(height=340, template="plotly_white", margin=dict(l=70, r=20, t=30, b=50))
    return figure
