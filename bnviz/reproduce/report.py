"""A reproduction's report: one self-contained HTML file that works offline.

It holds the published claim in a sentence, each claim line and its definition, our measured
numbers, the figures (Plotly, its JavaScript inlined once), how our setup differs from the
source, the exact configs and the bnviz version. Figures are built from the run files'
content (``bnviz.runfile.read_run``), so ``figures(name, runs)`` redraws a report from saved
runs. Every piece of text goes through ``html.escape``.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bnviz import __version__
from bnviz.reproduce.claims import COLOR_DIM_LAYER, LANDSCAPE_METRICS, nonzero_fraction
from bnviz.reproduce.registry import get_reproduction
from bnviz.reproduce.result import Result
from bnviz.snapshot import final_accuracy
from bnviz.style import NORM_LABELS, RUN_COLORS  # the app's names and colours

PERCENTILE_DASH = {"p15": "dot", "p50": "solid", "p85": "dash"}
FIGURE_HEIGHT = 380  # px: one row of panels, readable on a laptop and in the README's PNG
FONT = dict(size=13)
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
.yes { color: #1b7a1b; font-weight: bold; } .no { color: #b3261e; font-weight: bold; } .noise { color: #8a6d00; font-weight: bold; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; font-size: 12px; }
.published { font-size: 1.1em; border-left: 4px solid #1f6fd1; padding-left: 0.8em; }
"""


def write_report(result: Result, path, data_dir: str | None = None) -> None:
    Path(path).write_text(render(result, data_dir), encoding="utf-8")


def render(result: Result, data_dir: str | None = None) -> str:
    """The whole HTML document."""
    reproduction = get_reproduction(result.name)
    preset = reproduction.preset
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        f"<html lang='en'><head><meta charset='utf-8'><title>bnviz reproduction: {e(result.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Reproduction: {e(result.name)}</h1>",
        f"<p>{e(preset.summary)}</p>",
        f"<p class='published'><b>Published:</b> {e(preset.published)} <i>({e(preset.source)})</i></p>",
        "<h2>Claims, checked on our runs</h2>",
        _claims_table(result),
        "<h2>Measured</h2>",
        _runs_table(result),
        "<h2>Figures</h2>",
    ]
    parts.append(f"<p>Figures: the first seed's runs (seed {_seed(result.runs)}).</p>")
    for index, (caption, figure) in enumerate(figures(result.name, result.runs)):
        parts.append(f"<h3>{e(caption)}</h3>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0, div_id=f"figure-{index}",
                                    config={"displaylogo": False}))
    differences = [*result.differences, *(f"not stated in the source, our choice: {a}" for a in preset.assumed)]
    parts += ["<h2>How our setup differs from the source</h2>", "<ul>",
              *(f"<li>{e(text)}</li>" for text in differences), "</ul>"]
    parts += ["<h2>Exact configs</h2>"]
    if len(result.seeds) > 1:
        seeds = ", ".join(str(_seed(pair)) for pair in result.seeds)
        parts.append(f"<p>The first seed's; the other seeds' differ only in <code>seed</code> (seeds {e(seeds)}).</p>")
    for norm, run in result.runs.items():
        config = json.dumps(run["config"], indent=2, sort_keys=True)
        parts.append(f"<p>{e(NORM_LABELS[norm])} (run file <code>{e(result.run_files[0][norm].name)}</code>):</p>"
                     f"<pre>{e(config)}</pre>")
    if data_dir:
        parts.append(f"<p>Data read from <code>{e(str(data_dir))}</code>.</p>")
    mode = "separate processes" if result.parallel == "process" else "threads of one process"
    parts.append(f"<p>Written by bnviz {e(__version__)}; runs trained {result.workers} at a time in {mode}, "
                 f"{result.train_seconds:.1f} s wall time in all.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _seed(runs: dict[str, dict]) -> int:
    return next(iter(runs.values()))["config"]["seed"]


VERDICT_CLASS = {"reproduced": "yes", "within noise": "noise", "not reproduced": "no"}


def _claims_table(result: Result) -> str:
    e = html.escape
    rows = ["<table><tr><th>result</th><th>our numbers</th><th>definition</th></tr>"]
    for claim in result.claims:
        verdict = f"<span class='{VERDICT_CLASS[claim.verdict]}'>{e(claim.verdict)}</span>"
        rows.append(f"<tr><td>{verdict}</td><td>{e(claim.line)}</td><td>{e(claim.definition)}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _runs_table(result: Result) -> str:
    e = html.escape
    header = ("run", "seed", "status", "steps", "final test accuracy", "final loss", "last-layer saturated/dead fraction",
              "wall time", "CPU time")
    rows = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for pair, wall, cpu_times in zip(result.seeds, result.run_seconds, result.run_cpu_seconds):
        for norm, run in pair.items():
            rows.append(_run_row(norm, run, wall.get(norm, math.nan), cpu_times.get(norm, math.nan)))
    rows.append("</table>")
    return "\n".join(rows)


def _run_row(norm: str, run: dict, seconds: float, cpu: float) -> str:
    """One run's row; its final accuracy is its last evaluation, as everywhere (the claims average the last ones)."""
    loss = run["loss"]
    saturation = run["layers"][-1]["saturation"] if run["layers"] else np.zeros(0)
    cells = (NORM_LABELS[norm], str(run["config"]["seed"]), f"{run['status']}: {run['message']}", f"{run['config']['steps']:,}",
             _fmt(final_accuracy(run["status"], run["test_accuracy"]["values"]), ".4f"), _fmt(loss[-1] if len(loss) else math.nan, ".4g"),
             _fmt(saturation[-1] if len(saturation) else math.nan, ".3f"), _fmt(seconds, ".1f") + " s",
             _fmt(cpu, ".1f") + " s" if math.isfinite(cpu) else "n/a (threads share one process)")
    return "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"


def _fmt(value: float, spec: str) -> str:
    return format(float(value), spec) if math.isfinite(value) else "n/a"


# --- figures: run file content in, go.Figure out ------------------------------------------------

def figures(name: str, runs: dict[str, dict]) -> list[tuple[str, go.Figure]]:
    """(caption, figure) pairs for a reproduction's report."""
    if name == "ioffe-fig1":
        return [("Figure 1 of the BN paper: (a) test accuracy; (b), (c) the 15th, 50th and 85th percentiles of "
                 "the input to one typical sigmoid of the last hidden layer", ioffe_figure(runs))]
    if name == "fastai-collapse":
        return [("The 'colorful dimension' of the second-to-last conv layer (pre-activations)", color_dim_figure(runs)),
                ("Fraction of zero (dead) ReLU outputs of that layer", dead_fraction_figure(runs)),
                ("Test accuracy", accuracy_figure(runs))]
    if name == "landscape":
        return [("Loss landscape along the gradient (Santurkar et al., Figure 4)", landscape_figure(runs)),
                ("Test accuracy", accuracy_figure(runs))]
    return [("Test accuracy", accuracy_figure(runs))]


def _layout(figure: go.Figure, height: int = FIGURE_HEIGHT) -> go.Figure:
    figure.update_layout(height=height, font=FONT, template="plotly_white", margin=dict(l=60, r=20, t=50, b=50),
                         legend=dict(orientation="h", y=-0.2))
    return figure


def _accuracy_traces(runs: dict[str, dict]) -> list[go.Scatter]:
    return [go.Scatter(x=run["test_accuracy"]["steps"], y=run["test_accuracy"]["values"], mode="lines",
                       name=NORM_LABELS[norm], line=dict(color=RUN_COLORS[norm], width=2))
            for norm, run in runs.items()]


def accuracy_figure(runs: dict[str, dict]) -> go.Figure:
    figure = go.Figure(_accuracy_traces(runs))
    figure.update_xaxes(title="step")
    figure.update_yaxes(title="test accuracy")
    return _layout(figure)


def ioffe_figure(runs: dict[str, dict]) -> go.Figure:
    """Three panels as in the paper: (a) accuracy of both runs, (b) without BN, (c) with BN."""
    unit_name = runs["none"]["layers"][-1]["name"]
    figure = make_subplots(rows=1, cols=3, horizontal_spacing=0.07, subplot_titles=(
        "(a) test accuracy", f"(b) without BN: {unit_name} sigmoid input", f"(c) with BN: {unit_name} sigmoid input"))
    for trace in _accuracy_traces(runs):
        figure.add_trace(trace, row=1, col=1)
    for col, norm in ((2, "none"), (3, "batchnorm")):
        run = runs[norm]
        unit = run["layers"][-1]["unit_percentiles"]
        for key in ("p85", "p50", "p15"):
            figure.add_trace(go.Scatter(x=run["steps"], y=unit[key], mode="lines", name=f"{key[1:]}th percentile",
                                        legendgroup=key, showlegend=col == 2,
                                        line=dict(color=RUN_COLORS[norm], width=1.5, dash=PERCENTILE_DASH[key])),
                             row=1, col=col)
    values = np.concatenate([runs[norm]["layers"][-1]["unit_percentiles"][key]
                             for norm in ("none", "batchnorm") for key in ("p15", "p85")])
    values = values[np.isfinite(values)]
    if len(values):  # (b) and (c) on one scale, so their drift compares at a glance
        pad = 0.05 * (values.max() - values.min() + 1e-9)
        figure.update_yaxes(range=[values.min() - pad, values.max() + pad], row=1, col=2)
        figure.update_yaxes(range=[values.min() - pad, values.max() + pad], row=1, col=3)
    figure.update_xaxes(title="step")
    figure.update_yaxes(title="test accuracy", row=1, col=1)
    figure.update_yaxes(title="sigmoid input", row=1, col=2)
    return _layout(figure)


def color_dim_figure(runs: dict[str, dict]) -> go.Figure:
    """fastai's colorful dimension: per step a histogram, stacked left to right, colour log(1 + count)."""
    pairs = [(norm, run) for norm, run in runs.items() if norm in ("none", "batchnorm")]
    layer_name = pairs[0][1]["layers"][COLOR_DIM_LAYER]["name"]
    figure = make_subplots(rows=1, cols=len(pairs), shared_yaxes=True, horizontal_spacing=0.04,
                           subplot_titles=[f"{NORM_LABELS[norm]}: {layer_name}" for norm, _ in pairs])
    for col, (norm, run) in enumerate(pairs, start=1):
        layer = run["layers"][COLOR_DIM_LAYER]
        edges = layer["bin_edges"]
        per_step = layer["hist"] / np.maximum(run["count"], 1)[:, None]  # (columns, bins)
        figure.add_trace(go.Heatmap(x=run["steps"], y=(edges[:-1] + edges[1:]) / 2, z=np.log1p(per_step).T,
                                    colorscale="Viridis", showscale=col == len(pairs),
                                    colorbar=dict(title="log(1+count)")), row=1, col=col)
        figure.update_xaxes(title="step", row=1, col=col)
    figure.update_yaxes(title="pre-activation (ReLU input)", row=1, col=1)
    return _layout(figure, height=FIGURE_HEIGHT + 40)


def dead_fraction_figure(runs: dict[str, dict]) -> go.Figure:
    figure = go.Figure([go.Scatter(x=run["steps"], y=1 - nonzero_fraction(run), mode="lines", name=NORM_LABELS[norm],
                                   line=dict(color=RUN_COLORS[norm], width=2)) for norm, run in runs.items()])
    figure.update_xaxes(title="step")
    figure.update_yaxes(title="fraction of ReLU outputs = 0", range=[0, 1])
    return _layout(figure)


def landscape_figure(runs: dict[str, dict]) -> go.Figure:
    figure = make_subplots(rows=1, cols=3, horizontal_spacing=0.08, subplot_titles=[label for _, label in LANDSCAPE_METRICS])
    for col, (key, _) in enumerate(LANDSCAPE_METRICS, start=1):
        for norm, run in runs.items():
            figure.add_trace(go.Scatter(x=run["landscape"]["steps"], y=run["landscape"][key], mode="lines",
                                        name=NORM_LABELS[norm], legendgroup=norm, showlegend=col == 1,
                                        line=dict(color=RUN_COLORS[norm], width=1.5)), row=1, col=col)
        figure.update_xaxes(title="step", row=1, col=col)
    figure.update_yaxes(type="log", dtick=1)  # a tick per decade: the metrics span several
    return _layout(figure)
