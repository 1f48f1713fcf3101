"""Santurkar et al.'s landscape probe over training: arrays in, ``go.Figure`` out, no Streamlit.

Every ``landscape_every`` steps the trainer steps along the gradient by a few step sizes and
records three numbers (``bnviz.landscape``): the loss range, the gradient predictiveness and
the effective beta-smoothness. The paper's Figure 4 draws each over training, with BN and
without; so does this figure, one panel per measure and one line per run, on log axes (the
runs differ by orders of magnitude).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from bnviz.style import NORM_LABELS, RUN_COLORS
from bnviz.views import RunView

MEASURES = ("loss range (nats)", "gradient predictiveness", "effective β-smoothness")  # Snapshot.landscape's columns
PANEL_GAP = 0.07  # between the three panels, as a fraction of the width


def has_landscape(views: list[RunView]) -> bool:
    return any(len(view.landscape_steps) for view in views)


def landscape(views: list[RunView], uirevision: str = "landscape") -> go.Figure:
    """Three panels side by side, one per measure; a line per run, coloured by its norm."""
    width = (1 - PANEL_GAP * (len(MEASURES) - 1)) / len(MEASURES)
    data, layout = [], dict(height=300, uirevision=uirevision, margin=dict(l=60, r=20, t=40, b=40),
                            font=dict(size=14), legend=dict(orientation="h", y=-0.25, x=0),
                            showlegend=len(views) > 1, annotations=[])
    last = max((view.last_step for view in views), default=1)
    for i, title in enumerate(MEASURES):
        suffix = "" if i == 0 else str(i + 1)
        left = i * (width + PANEL_GAP)
        layout[f"xaxis{suffix}"] = dict(domain=[left, min(left + width, 1.0)], anchor=f"y{suffix}",
                                        range=[0, last], title=dict(text="step"))
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", type="log")
        layout["annotations"].append(dict(text=title, showarrow=False, xref="paper", yref="paper",
                                          x=left + width / 2, y=1.08, xanchor="center"))
        for view in views:
            values = np.asarray(view.landscape, dtype=np.float64).reshape(-1, 3)[:, i]
            data.append(dict(type="scatter", mode="lines+markers", x=view.landscape_steps.astype(np.int32),
                             y=values.astype(np.float32), name=NORM_LABELS[view.norm], legendgroup=view.norm,
                             showlegend=i == 0, xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                             line=dict(color=RUN_COLORS[view.norm], width=2), marker=dict(size=4)))
    return go.Figure(data=data, layout=layout, skip_invalid=False)
