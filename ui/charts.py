"""Live Plotly charts that do not flash white at every refresh.

Streamlit 1.67 gives a ``plotly_chart`` an element id that hashes its figure, so a changed
figure is a new element: the browser removes the old chart and draws the new one from
scratch, and the chart is blank in between, a white flash twice a second on a projector
(and a zoom does not survive an update). So a live chart has two slots stacked in one
place. A new figure goes into the older slot; the other slot keeps its figure, so
Streamlit sends only a reference and the browser leaves it alone; a CSS rule hides it
once the new one has drawn. Paused or finished charts need one slot.

Streamlit serializes every chart at every rerun, also a figure it has sent before (it then
sends only a reference): the figure's ``to_dict`` (a deep copy and a base64 pass over its
arrays), then its JSON. A live refresh draws ten charts (five in two slots) of which two or
three are new; ``serialized_once`` makes the others cost next to nothing.
"""

from __future__ import annotations

import functools

import plotly.graph_objects as go
import streamlit as st

from ui import state as keys
from ui import upstream

# Drawn: Plotly has added its SVG layers, and Streamlit no longer hides the plot while it measures it.
DRAWN = ".js-plotly-plot:not([style*='hidden']):not([style*='none']) .main-svg"


def chart(name: str, figure: go.Figure, config: dict, live: bool) -> None:
    """Draw ``figure`` under ``name`` (a CSS-safe word); ``live``: double-buffered as described above."""
    state = st.session_state
    figure = serialized_once(figure)
    if not live:
        state.pop(keys.CHART_SLOTS + name, None)
        st.plotly_chart(figure, config=config, key=keys.CHART + name)
        return
    slots, newest = state.get(keys.CHART_SLOTS + name, ([figure, figure], 0))
    if figure is not slots[newest]:
        newest = 1 - newest
        slots[newest] = figure
    state[keys.CHART_SLOTS + name] = (slots, newest)
    with st.container(key=keys.STACK + name):
        for slot in (0, 1):
            st.plotly_chart(slots[slot], config=config, key=f"{keys.CHART}{name}-{slot}")
    st.html(f"<style>{_css(name, newest)}</style>")


def serialized_once(figure: go.Figure) -> go.Figure:
    """The figure, its ``to_dict`` and Streamlit's JSON of it (``upstream.KeptJson``) computed once and
    kept: it is never changed after it is built."""
    if "to_dict" not in vars(figure):
        to_dict = figure.to_dict
        object.__setattr__(figure, "to_dict", functools.cache(lambda: upstream.KeptJson(to_dict())))
    return figure


def _css(name: str, newest: int) -> str:
    stack, old, new = f".st-key-stack-{name}", f".st-key-chart-{name}-{1 - newest}", f".st-key-chart-{name}-{newest}"
    return (f"{stack} {{display: grid; grid-template-columns: minmax(0, 1fr)}} "
            f"{stack} > div {{grid-area: 1 / 1; width: 100% !important}} "  # the slots share one cell, full width
            f"{stack}:has({new} {DRAWN}) {old} {{visibility: hidden}}")
