"""The trainability map view: a preset's shipped maps, BN and no BN side by side; a click opens a cell.

Maps ship with the app in ``assets/maps/`` (``scripts/build_maps.py`` builds them), so a
class sees them without training anything; they are read once per server and shared by
every session (read-only arrays). Each map is drawn by ``bnviz.reproduce.map_figures`` with
its claims checked by ``bnviz.reproduce.map_claims``, the same code as ``bnviz map``'s report.
Clicking a cell puts that cell's exact config (its preset, its learning rate, its init
sigma or depth, its norm) into the sidebar and starts it, as Start would: the live view
then trains and shows that run with all its pictures.
"""

from __future__ import annotations

import logging

import streamlit as st

from bnviz.presets import PRESETS
from bnviz.reproduce.map_claims import check_map
from bnviz.reproduce.map_data import MapData, shipped_maps
from bnviz.reproduce.map_figures import label, map_figure, ticks
from ui import actions, charts
from ui import state as keys
from ui.controls import SETTINGS, Choice

VERDICT_ICONS = {"reproduced": "✓", "within noise": "≈"}  # "not reproduced": ✗ (markdown, not st.success: the
#                                                          live view's claim boxes are the reproduce view's)
PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}  # a click is the selection


@st.cache_resource(show_spinner=False)
def _shipped() -> tuple[tuple[MapData, ...], tuple[str, ...]]:
    """Every shipped map, and a line per file that could not be read (for the server log and the page)."""
    maps, problems = shipped_maps()
    for problem in problems:
        logging.getLogger("bnviz").warning(problem)
    return tuple(maps), tuple(problems)


@st.cache_resource(show_spinner=False)
def _figure(name: str):
    """One figure per map for the whole server, serialized once: the page sends it, never changes it."""
    return charts.serialized_once(map_figure(next(data for data in _shipped()[0] if data.spec.name == name),
                                             uirevision=name))


def maps_for(preset: str) -> tuple[MapData, ...]:
    return tuple(data for data in _shipped()[0] if data.spec.preset == preset)


def show(choice: Choice) -> None:
    """The preset's maps in an expander (nothing for a preset without one)."""
    maps = maps_for(choice.preset.name)
    if not maps:
        return
    cells = sum(data.spec.cell_count for data in maps)
    # Closed until asked for: in a class, thirty pages that each draw the map make a busy server's pages poll late.
    with st.container(key=keys.MAP_VIEW), st.expander(
            f"Trainability map: where this network trains, with and without BN ({cells} short runs, shipped with "
            "the app) — click a cell to open its run"):
        st.caption("Each cell is one run of the setting under it, paired across no BN and BN (same seed: the "
                   "same data order and initial weights). Colour: final held-out accuracy, one scale for both; "
                   "a red cross: the run diverged.")
        for data in maps:
            spec = data.spec
            st.markdown(f"**{spec.note or spec.name}** · {spec.base.steps:,} steps a cell · a cell trains at "
                        f"{spec.threshold:.0%} held-out accuracy or above")
            st.plotly_chart(_figure(spec.name), key=keys.MAP + spec.name, on_select=lambda name=spec.name: _open(name),
                            selection_mode="points", config=PLOTLY_CONFIG)
            st.markdown("\n".join(f"- {VERDICT_ICONS.get(claim.verdict, '✗')} {claim.line}" for claim in check_map(data)))
        for problem in _shipped()[1]:
            st.caption(f"A shipped map could not be read: {problem}")


def _open(name: str) -> None:
    """on_select of a map: the clicked cell's config replaces the settings and starts training."""
    state = st.session_state
    points = state[keys.MAP + name].selection.get("points", [])
    if not points or "customdata" not in points[0]:
        return
    cell = points[0]["customdata"]
    if isinstance(cell, dict):  # a typed array's row arrives keyed by position
        cell = [cell[key] for key in sorted(cell, key=int)]
    v, row, column = (int(i) for i in cell)
    open_cell(next(data for data in _shipped()[0] if data.spec.name == name), v, row, column)


def open_cell(data: MapData, v: int, row: int, column: int) -> None:
    """Train the map's cell (varied value ``v``, ``row``, ``column``) as this session's run."""
    spec, state = data.spec, st.session_state
    config = spec.config(spec.vary.values[v], spec.x.values[column], spec.rows[row])
    old: Choice = state[keys.CHOICE]
    preset = PRESETS.get(spec.preset, old.preset)
    choice = Choice(preset, config, False, old.hidden)
    state[keys.CHOICE] = choice
    for key in (*SETTINGS, keys.PRESET, keys.COMPARE):  # the sidebar's widgets re-seed from the new choice
        state.pop(key, None)
    actions.start(choice)
    where = f"{label(spec.x.name)} {ticks(spec.x)[column]}" + (f", {label(spec.y.name)} {ticks(spec.y)[row]}" if spec.y else "")
    state[keys.NOTICES] = [f"Opened the map's cell {where}, {spec.vary.name} {spec.vary.values[v]}: training it now."]
