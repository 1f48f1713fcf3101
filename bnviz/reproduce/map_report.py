"""A trainability map's report: one self-contained HTML file, like the reproductions'.

It holds the map's note, each claim line and its definition, the maps side by side on one
colour scale (diverged cells marked), the gradient figure for depth maps, a table of the
numbers per panel, the exact base config and what the cells cost. Everything is drawn from
``MapData`` (so a report can be redrawn from ``map.json``) and escaped with ``html.escape``.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from bnviz import __version__
from bnviz.reproduce.map_claims import REPRODUCED, WITHIN_NOISE, MapClaim
from bnviz.reproduce.map_data import MapData
from bnviz.reproduce.map_figures import gradient_figure, map_figure, title
from bnviz.reproduce.report import STYLE

VERDICT_CLASS = {REPRODUCED: "yes", WITHIN_NOISE: "noise"}  # anything else: "no"
EXTRA_STYLE = ".noise { color: #8a6d00; font-weight: bold; }"


def write_report(data: MapData, claims: list[MapClaim], path, seconds: float = math.nan,
                 cell_seconds: list[float] | None = None) -> None:
    Path(path).write_text(render(data, claims, seconds, cell_seconds), encoding="utf-8")


def render(data: MapData, claims: list[MapClaim], seconds: float = math.nan,
           cell_seconds: list[float] | None = None) -> str:
    spec, e = data.spec, html.escape
    parts = [
        "<!DOCTYPE html>",
        f"<html lang='en'><head><meta charset='utf-8'><title>bnviz map: {e(spec.name)}</title>",
        f"<style>{STYLE}{EXTRA_STYLE}</style></head><body>",
        f"<h1>Trainability map: {e(spec.name)}</h1>",
        f"<p>{e(spec.note)}</p>" if spec.note else "",
        f"<p>{spec.cell_count} cells of {spec.base.steps:,} steps each: {e(_grid_words(data))}. Each cell is paired "
        f"across {e(spec.vary.name)} (the same seed {spec.base.seed}: the same data order and initial weights). "
        f"A cell <b>trains</b> if it ends at or above {spec.threshold:.0%} held-out accuracy without diverging.</p>",
        "<p class='published'><b>The claim:</b> Batch Normalization allows much higher learning rates and makes a "
        "network far less sensitive to its initialization <i>(Ioffe &amp; Szegedy 2015, arXiv:1502.03167; "
        "Bjorck et al. 2018, arXiv:1806.02375)</i>; very deep BN nets have exploding gradients at initialization "
        "<i>(Yang et al. 2019, ICLR)</i>.</p>",
        "<h2>Claims, checked on this map</h2>",
        _claims_table(claims),
        "<h2>Maps</h2>",
        "<p>Colour: final held-out accuracy (one scale for every panel); a red cross: the run diverged (its loss "
        "became NaN or infinite; counted at chance, 0.1). Hover a cell for its numbers.</p>",
        map_figure(data).to_html(full_html=False, include_plotlyjs=True, div_id="map", config={"displaylogo": False}),
    ]
    if spec.y is not None and spec.y.name == "depth":
        parts += ["<h3>Gradient at initialization: first hidden layer over last, against depth</h3>",
                  gradient_figure(data).to_html(full_html=False, include_plotlyjs=False, div_id="gradients",
                                                config={"displaylogo": False})]
    parts += ["<h2>Measured</h2>", _numbers_table(data)]
    parts += ["<h2>Base config</h2>", f"<pre>{e(json.dumps(spec.base.to_dict(), indent=2, sort_keys=True))}</pre>"]
    cost = ""
    finite = [s for s in (cell_seconds or []) if math.isfinite(s)]
    if finite:
        cost = f" A cell trained in {np.median(finite):.2f} s (median, in its worker)."
    if math.isfinite(seconds):
        cost = f" This map took {seconds:.1f} s of wall time (cells read from disk take none).{cost}"
    parts.append(f"<p>Written by bnviz {e(__version__)}.{e(cost)}</p></body></html>")
    return "\n".join(part for part in parts if part)


def _grid_words(data: MapData) -> str:
    spec = data.spec

    def words(axis) -> str:
        values = axis.values
        return f"{axis.name} {values[0]:g} to {values[-1]:g} ({len(values)} values{', log-spaced' if axis.log else ''})" \
            if not isinstance(values[0], str) else f"{axis.name} {', '.join(values)}"

    return " x ".join(words(axis) for axis in (spec.x, spec.y) if axis is not None)


def _claims_table(claims: list[MapClaim]) -> str:
    e = html.escape
    if not claims:
        return "<p>This map does not compare BN with no BN, so it has no claims to check.</p>"
    rows = ["<table><tr><th>result</th><th>our numbers</th><th>definition</th></tr>"]
    for claim in claims:
        css = VERDICT_CLASS.get(claim.verdict, "no")
        rows.append(f"<tr><td><span class='{css}'>{e(claim.verdict)}</span></td><td>{e(claim.line)}</td>"
                    f"<td>{e(claim.definition)}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _numbers_table(data: MapData) -> str:
    spec = data.spec
    header = ("panel", "cells that train", "diverged", "failed", "best accuracy", "median steps to threshold",
              "median end saturation (trained cells)")
    rows = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for v, value in enumerate(spec.vary.values):
        trains = data.trains[v]
        steps = data.steps_to[v][np.isfinite(data.steps_to[v])]
        saturation = data.saturation[v][trains & np.isfinite(data.saturation[v])]
        cells = (title(spec.vary.name, value), f"{int(trains.sum())} of {trains.size}", str(int(data.diverged[v].sum())),
                 str(int(data.error[v].sum())), f"{np.nanmax(data.accuracy[v]):.4f}",
                 f"{np.median(steps):,.0f}" if len(steps) else "never",
                 f"{np.median(saturation):.3f}" if len(saturation) else "n/a")
        rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)
