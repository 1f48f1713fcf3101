"""Plotly figures of recorded runs: arrays in, ``go.Figure`` out, no Streamlit.

As fastai separates ``hist()`` from ``color_dim()``, the arrays come first
(``bnviz.views.run_view``); the figure functions here draw a list of views side by side (one
view: one run; several: a comparison with shared bin edges, colour scale and step axis).

The heatmaps follow fastai's "colorful dimension" (Deep Learning for Coders, ch. 13): x is
the step, y the activation value on a signed axis, colour log(1 + count). Colours are sent
as uint8 levels so Plotly ships them as a compact base64 typed array; layouts are plain
dicts because ``make_subplots`` is slow for a page that redraws several times a second.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from bnviz.saturation import DEAD_ACTIVATIONS, SATURATION_THRESHOLD
from bnviz.style import run_color, run_label
from bnviz.views import RunView

LEVELS = 255  # colour levels: one uint8 per cell
HEATMAP_ROW_PX = 120  # height of one layer's panel: readable on a projector
LINE_ROW_PX = 110
COLORSCALE = "Viridis"  # fastai's choice: perceptually even, dark where nothing is
HEATMAP_LINE = "rgba(255,255,255,0.85)"  # thresholds over the dark end of Viridis
FONT = dict(size=14)  # projector-readable


def heat_levels(hist: np.ndarray, count: np.ndarray, top: float) -> np.ndarray:
    """(bins, cols) uint8 colour levels: log(1 + values per step) scaled so ``top`` is LEVELS."""
    per_step = hist / np.maximum(count, 1)[:, None]  # (cols, bins): decimated columns compare fairly
    scaled = np.log1p(per_step) * (LEVELS / math.log1p(max(top, 1.0)))
    return np.clip(np.rint(scaled), 0, LEVELS).astype(np.uint8).T


def shared_top(views: list[RunView], kind: str = "pre") -> float:
    """The largest values-per-step of any cell in any view: one colour scale for a comparison."""
    tops = [float((v.columns[f"hist_{kind}"] / np.maximum(v.columns["count"], 1)[:, None, None]).max())
            for v in views if len(v.columns.get("steps", ()))]
    return max(tops, default=1.0)


def count_ticks(top: float) -> tuple[list[float], list[str]]:
    """Colour bar ticks at real counts 0, 1, 10, 100, ... placed on the uint8 scale."""
    values = [0.0] + [10.0 ** k for k in range(int(math.log10(max(top, 1.0))) + 1)]
    scale = LEVELS / math.log1p(max(top, 1.0))
    labels = [f"{value:,.0f}" for value in values]
    return [math.log1p(value) * scale for value in values], labels


def thresholds(activation: str, kind: str) -> tuple[float, ...]:
    """Where a unit saturates (sigmoid, tanh) or dies (ReLU family) on the drawn axis."""
    if activation in SATURATION_THRESHOLD:
        edge = SATURATION_THRESHOLD[activation]
        if kind == "post":
            return (0.05, 0.95) if activation == "sigmoid" else (-math.tanh(edge), math.tanh(edge))
        return (-edge, edge)
    return (0.0,) if activation in DEAD_ACTIVATIONS and kind == "pre" else ()


def same_edges(a: np.ndarray, b: np.ndarray) -> bool:
    """The same bins: equal, up to the rounding of a run read back from its file (``runfile.SIGNIFICANT_DIGITS``),
    as a finished run from the run cache is, beside a run of the same pair that trains again."""
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-12)


def heatmaps(views: list[RunView], kind: str = "pre", uirevision: str = "heatmaps") -> go.Figure:
    """One heatmap per hidden layer (rows) and run (columns), one shared colour scale."""
    edges_name = f"{kind}_edges"
    edges = getattr(views[0], edges_name)
    if any(not same_edges(getattr(v, edges_name), edges) for v in views):
        raise ValueError("runs compared side by side must share bin edges (same activation)")
    top = shared_top(views, kind)
    tickvals, ticktext = count_ticks(top)
    bins = dict(y0=float(edges[:2].mean()), dy=float(edges[1] - edges[0])) if len(edges) > 1 else {}  # uniform bins
    rows = max(len(v.layer_names) for v in views)
    grid = _Grid(rows, len(views), row_gap=0.025)
    data, shapes = [], []
    for c, view in enumerate(views):
        steps = view.columns.get("steps", np.zeros(0))
        bricks = column_bricks(steps)
        for r, name in enumerate(view.layer_names):
            x, y = grid.refs(r, c)
            if len(steps):
                z = heat_levels(view.columns[f"hist_{kind}"][:, r], view.columns["count"], top)
                data.append(dict(type="heatmap", z=z, **bricks, **bins, xaxis=x, yaxis=y, coloraxis="coloraxis",
                                 hovertemplate="step %{x:.0f}<br>value %{y:.2f}<extra></extra>"))
            shapes += [_hline(x, y, t, HEATMAP_LINE) for t in thresholds(view.activation, kind)]
            shapes += _lr_lines(view, x, y)
    layout = grid.layout(views, row_titles=[_layer_label(n) for n in views[0].layer_names],
                         y_axis=dict(range=[float(edges[0]), float(edges[-1])]) if len(edges) else None)
    layout.update(
        coloraxis=dict(colorscale=COLORSCALE, cmin=0, cmax=LEVELS,
                       colorbar=dict(title=dict(text="values<br>per step", side="top"), tickvals=tickvals,
                                     ticktext=ticktext, thickness=14, len=min(1.0, 300 / grid.height(HEATMAP_ROW_PX)))),
        shapes=shapes, height=grid.height(HEATMAP_ROW_PX), uirevision=uirevision)
    return _figure(data, layout)


def column_bricks(steps: np.ndarray) -> dict:
    """x0 and dx of evenly spaced heatmap columns, column i covering the steps up to steps[i].

    Recorded columns are evenly spaced (bnviz.history), except that a finished run's last
    column may hold fewer steps: it is drawn full width. Plotly draws an evenly spaced
    heatmap as one image, ~3x faster than one with an x array.
    """
    if not len(steps):
        return {}
    dx = float(steps[1] - steps[0]) if len(steps) > 1 else float(steps[0])
    return dict(x0=float(steps[0]) - dx / 2, dx=dx)


def saturation(views: list[RunView], uirevision: str = "saturation") -> go.Figure:
    """Fraction of units saturated (sigmoid, tanh) or dead (ReLU family) per layer over time."""
    activation = views[0].activation
    dead = activation in DEAD_ACTIVATIONS
    label = "dead (input ≤ 0), solid; near zero (≤ 0.05, fastai), dotted" if dead else "saturated fraction"
    note = "" if activation in SATURATION_THRESHOLD or dead else f"{activation} units do not saturate"
    return _per_run_lines(views, "saturation", label, uirevision, dict(range=[0, 1.02], tickformat=".0%"), note,
                          dotted="near_zero" if dead else None)


def grad_norms(views: list[RunView], uirevision: str = "grad-norms") -> go.Figure:
    """Norm of each layer's weight gradient over time, on a log axis."""
    norms = np.concatenate([v.lines.get("grad_norm", np.zeros(0)).ravel() for v in views])
    norms = norms[np.isfinite(norms) & (norms > 0)]
    axis = dict(type="log")
    if len(norms):  # the range of the data, and ticks at 1, 2, 5 only when they fit
        low, high = np.log10(norms.min()), np.log10(norms.max())
        axis.update(range=[low - 0.1, high + 0.1], dtick=1 if high - low > 2 else "D2")
    return _per_run_lines(views, "grad_norm", "gradient norm", uirevision, axis)


def unit_percentiles(views: list[RunView], uirevision: str = "unit-percentiles") -> go.Figure:
    """The BN paper's Figure 1(b, c): 15/50/85th percentiles of one typical unit's input per layer."""
    rows = max(len(v.layer_names) for v in views)
    grid = _Grid(rows, len(views), row_gap=0.04)
    data, shapes = [], []
    for c, view in enumerate(views):
        steps = view.lines.get("steps", np.zeros(0)).astype(np.int32)
        for r in range(len(view.layer_names)):
            x, y = grid.refs(r, c)
            shapes += [_hline(x, y, t) for t in thresholds(view.activation, "pre")] + _lr_lines(view, x, y)
            if not len(steps):
                continue
            low, mid, high = (view.lines["unit_percentiles"][:, r, k].astype(np.float32) for k in range(3))
            common = dict(type="scatter", mode="lines", x=steps, xaxis=x, yaxis=y, showlegend=False)
            band = dict(x=np.concatenate([steps, steps[::-1]]), y=np.concatenate([high, low[::-1]]))  # one outline
            data += [dict(common, **band, line=dict(width=0), fill="toself", fillcolor=_fade(run_color(view.norm, view.dropout)),
                          name="15th-85th", hoverinfo="skip"),
                     dict(common, y=mid, line=dict(color=run_color(view.norm, view.dropout), width=2), name="median")]
    layout = grid.layout(views, row_titles=[_layer_label(n) for n in views[0].layer_names], share_y="row")
    layout.update(shapes=shapes, height=grid.height(LINE_ROW_PX), uirevision=uirevision, showlegend=False)
    return _figure(data, layout)


def loss_accuracy(views: list[RunView], published: dict[str, float] | None = None,
                  uirevision: str = "loss-accuracy") -> go.Figure:
    """Training loss (left) and held-out accuracy (right, solid; the training batches' accuracy dotted)
    of every run; published results dashed."""
    grid = _Grid(1, 2, col_gap=0.1)
    data, shapes = [], []
    for view in views:
        line = dict(color=run_color(view.norm, view.dropout), width=2)
        steps = view.lines.get("steps", np.zeros(0)).astype(np.int32)
        loss = view.lines.get("loss", np.zeros(0)).astype(np.float32)
        data.append(dict(type="scatter", mode="lines", x=steps, y=loss, name=run_label(view.norm, view.dropout), line=line,
                         legendgroup=run_label(view.norm, view.dropout), xaxis="x", yaxis="y"))
        data.append(dict(type="scatter", mode="lines+markers", x=view.accuracy_steps.astype(np.int32),
                         y=view.accuracy.astype(np.float32), name=run_label(view.norm, view.dropout), line=line, legendgroup=run_label(view.norm, view.dropout),
                         showlegend=False, xaxis="x2", yaxis="y2"))
        if len(view.train_accuracy):  # the generalization gap: training batches' accuracy, dotted
            data.append(dict(type="scatter", mode="lines", x=view.accuracy_steps.astype(np.int32),
                             y=view.train_accuracy.astype(np.float32), name=f"{run_label(view.norm, view.dropout)} (training batches)",
                             line=dict(line, dash="dot"), legendgroup=run_label(view.norm, view.dropout), showlegend=False, xaxis="x2",
                             yaxis="y2"))
        shapes += _lr_lines(view, "x", "y", label=True) + _lr_lines(view, "x2", "y2")
    for name, value in (published or {}).items():
        shapes.append(_hline("x2", "y2", value, "#2e7d32", label=f"published {name}: {value:.4g}"))
    layout = grid.layout(views, titles=["training loss", "test accuracy (dotted: training)"], share_y="")
    layout["yaxis"]["rangemode"] = "tozero"
    layout["yaxis2"]["tickformat"] = ".0%"  # autorange: BN and no BN often differ by a point or two near the top
    layout.update(shapes=shapes, height=300, uirevision=uirevision,
                  legend=dict(orientation="h", y=-0.25, x=0), showlegend=len(views) > 1)
    return _figure(data, layout)


def _per_run_lines(views: list[RunView], key: str, y_title: str, uirevision: str, y_axis: dict,
                   note: str = "", dotted: str | None = None) -> go.Figure:
    """One panel per run, one line per layer, coloured from the first layer (light) to the last (dark);
    ``dotted``: a second statistic drawn beside it, dotted, in the same colours (where a run has it)."""
    grid = _Grid(1, len(views), col_gap=0.05)
    data, shapes = [], []
    for c, view in enumerate(views):
        x, y = grid.refs(0, c)
        steps = view.lines.get("steps", np.zeros(0)).astype(np.int32)
        colors = layer_colors(len(view.layer_names))
        for r, name in enumerate(view.layer_names if len(steps) else ()):
            data.append(dict(type="scatter", mode="lines", x=steps, y=view.lines[key][:, r].astype(np.float32),
                             name=_layer_label(name), legendgroup=name, showlegend=c == 0, xaxis=x, yaxis=y,
                             line=dict(color=colors[r], width=2)))
            if dotted in view.lines:
                data.append(dict(type="scatter", mode="lines", x=steps, y=view.lines[dotted][:, r].astype(np.float32),
                                 name=f"{_layer_label(name)} near zero", legendgroup=name, showlegend=False,
                                 xaxis=x, yaxis=y, line=dict(color=colors[r], width=1.5, dash="dot")))
        shapes += _lr_lines(view, x, y)
    layout = grid.layout(views, y_axis=y_axis)
    layout["yaxis"]["title"] = dict(text=y_title)
    if note:
        layout["annotations"].append(dict(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5))
    layout.update(shapes=shapes, height=300, uirevision=uirevision, legend=dict(orientation="h", y=-0.3, x=0))
    return _figure(data, layout)


def layer_colors(count: int) -> list[str]:
    """Light to dark along the depth: the eye reads 'deeper' without a legend."""
    from plotly.colors import sample_colorscale
    return sample_colorscale("Plasma", [0.75 * (1 - i / max(count - 1, 1)) for i in range(count)])


class _Grid:
    """Subplot domains and axes as plain dicts: rows x cols panels sharing one step axis."""

    def __init__(self, rows: int, cols: int, row_gap: float = 0.03, col_gap: float = 0.03):
        self.rows, self.cols, self.row_gap, self.col_gap = rows, cols, row_gap, col_gap

    def refs(self, row: int, col: int) -> tuple[str, str]:
        number = row * self.cols + col + 1
        suffix = "" if number == 1 else str(number)
        return f"x{suffix}", f"y{suffix}"

    def height(self, row_px: int) -> int:
        return 90 + row_px * self.rows

    def layout(self, views: list[RunView], titles=None, row_titles=(), share_y="all", y_axis=None) -> dict:
        """Column titles default to the runs' (when more than one); the step axis spans the longest run.

        share_y: "all" panels one y axis, "row" one per row (runs side by side), "" none.
        """
        titles = titles if titles is not None else [run_label(v.norm, v.dropout) for v in views] if len(views) > 1 else []
        x_end = max(v.last_step for v in views)
        width = (1 - self.col_gap * (self.cols - 1)) / self.cols
        height = (1 - self.row_gap * (self.rows - 1)) / self.rows
        layout = dict(margin=dict(l=70, r=20, t=40 if titles else 20, b=50), font=FONT,
                      annotations=[], hovermode="closest")
        for row in range(self.rows):
            top = 1 - row * (height + self.row_gap)
            for col in range(self.cols):
                x, y = self.refs(row, col)
                left = col * (width + self.col_gap)
                xaxis = dict(domain=_unit(left, left + width), anchor=y, showticklabels=row == self.rows - 1)
                yaxis = dict(domain=_unit(top - height, top), anchor=x, showticklabels=col == 0 or not share_y)
                first = self.refs(0 if share_y == "all" else row, 0)[1]
                if x != "x":
                    xaxis["matches"] = "x"
                if share_y and y != first:
                    yaxis["matches"] = first
                if row == self.rows - 1:
                    xaxis["title"] = dict(text="step")
                if col == 0 and row < len(row_titles):
                    yaxis["title"] = dict(text=row_titles[row])
                yaxis.update(y_axis or {})
                if "range" not in yaxis:
                    yaxis["autorange"] = True  # plotly.js leaves a matched axis at [-1, 4] unless told
                layout["xaxis" + x[1:]], layout["yaxis" + y[1:]] = xaxis, yaxis
        if x_end:
            layout["xaxis"]["range"] = [0, x_end]
        for col, title in enumerate(titles):
            left = col * (width + self.col_gap)
            layout["annotations"].append(dict(text=f"<b>{title}</b>", x=left + width / 2, y=1, xref="paper",
                                              yref="paper", yanchor="bottom", showarrow=False))
        return layout


def _figure(data: list[dict], layout: dict) -> go.Figure:
    """A Figure without Plotly's property validation (~20 ms per figure); tests validate instead."""
    return go.Figure(data=data, layout=layout, _validate=False)


def _unit(low: float, high: float) -> list[float]:
    """A domain inside [0, 1] despite rounding (Plotly rejects -1e-17)."""
    return [min(max(low, 0.0), 1.0), min(max(high, 0.0), 1.0)]


def _hline(x: str, y: str, value: float, color: str = "#777", label: str = "") -> dict:
    shape = dict(type="line", xref=f"{x} domain", yref=y, x0=0, x1=1, y0=value, y1=value,
                 line=dict(color=color, width=1.5, dash="dash"))
    if label:
        shape["label"] = dict(text=label, textposition="start", yanchor="bottom", font=dict(size=12))
    return shape


def _lr_lines(view: RunView, x: str, y: str, label: bool = False) -> list[dict]:
    """A dotted vertical line at each live learning-rate change, and a dashed one where a private run forked."""
    lines = []
    if view.forked_at is not None:
        fork = dict(type="line", xref=x, yref=f"{y} domain", x0=view.forked_at, x1=view.forked_at, y0=0, y1=1,
                    line=dict(color="#6a1b9a", width=2, dash="dash"))
        if label:
            fork["label"] = dict(text="your copy from here", textposition="start", font=dict(size=12, color="#6a1b9a"))
        lines.append(fork)
    for step, lr in view.lr_events[-50:]:  # the newest 50: more would hide the data
        line = dict(type="line", xref=x, yref=f"{y} domain", x0=step, x1=step, y0=0, y1=1,
                    line=dict(color="#d81b60", width=2, dash="dot"))
        if label:
            line["label"] = dict(text=f"lr {lr:g}", textposition="end", font=dict(size=12, color="#d81b60"))
        lines.append(line)
    return lines


def _layer_label(name: str) -> str:
    """'linear3' or 'conv2d3' -> 'layer 3' (the engine numbers layers from 1 at the end of the name)."""
    number = name[len(name.rstrip("0123456789")):]
    return f"layer {number}" if number else name


def _fade(color: str, alpha: float = 0.25) -> str:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"
