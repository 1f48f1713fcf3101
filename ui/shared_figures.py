"""Figures built once for every page that shows the same snapshots: a class on one link.

Thirty tabs watching one shared run poll the same ``Snapshot`` objects (the pool hands every
watcher the run's latest published one), and each used to build, and serialize, the same five
figures from them. Here the first page to draw a set of snapshots files its figures under the
snapshots' identity and what else the figures depend on (scrub step, heatmap kind, published
accuracies); the other pages take them as they are, ``to_dict`` already computed
(``ui.charts.serialized_once``), so a class costs one build per publish, not one per page.

Keys hold the snapshots themselves, so an id is never reused while its entry lives; the
entries are bounded (``ENTRIES``, least recently used out first), and the whole cache goes
with Streamlit's resource cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import plotly.graph_objects as go
import streamlit as st

from bnviz.snapshot import Snapshot

ENTRIES = 32  # sets of figures kept: one per set of runs being watched at a moment, a class's distinct runs


class SharedFigures:
    """A bounded, thread-safe map from (snapshots by identity, what else the figures depend on) to figures."""

    def __init__(self, entries: int = ENTRIES):
        self.entries = entries
        self._lock = threading.Lock()
        self._figures: OrderedDict[tuple, tuple[tuple[Snapshot, ...], dict[str, go.Figure]]] = OrderedDict()

    @staticmethod
    def key(snapshots: tuple[Snapshot, ...], *depends) -> tuple:
        return (tuple(id(s) for s in snapshots), *depends)

    def get(self, snapshots: tuple[Snapshot, ...], *depends) -> dict[str, go.Figure] | None:
        key = self.key(snapshots, *depends)
        with self._lock:
            found = self._figures.get(key)
            if found is None or any(a is not b for a, b in zip(found[0], snapshots)):
                return None
            self._figures.move_to_end(key)
            return found[1]

    def put(self, snapshots: tuple[Snapshot, ...], drawn: dict[str, go.Figure], *depends) -> None:
        with self._lock:
            self._figures[self.key(snapshots, *depends)] = (tuple(snapshots), drawn)
            while len(self._figures) > self.entries:
                self._figures.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._figures)


@st.cache_resource(show_spinner=False)
def shared() -> SharedFigures:
    """The server's one cache, shared by every session."""
    return SharedFigures()
