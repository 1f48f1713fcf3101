"""Figures built once for every page that shows the same snapshots: a class on one link.

Thirty tabs watching one shared run poll the same ``Snapshot`` objects (the pool hands every
watcher the run's latest published one), and each used to build, and serialize, the same five
figures from them. Here the first page to draw a set of snapshots files its figures under the
snapshots' identity and what else the figures depend on (scrub step, heatmap kind, published
accuracies); the other pages take them as they are, ``to_dict`` already computed
(``ui.charts.serialized_once``), so a class costs one build per publish, not one per page.

A new publish reaches thirty polling pages within a fraction of a second, and building its
figures takes longer than that on a busy server: so the first page to ask builds, and the
pages that ask while it builds wait for its figures (``build_once``) instead of each building
the same ones (a profile of a class on one link found most of the building done that way).

A run publishes five times a second, and a pair compared side by side up to ten: a class
polling at random moments would see a new pair at almost every poll and build again each
time, though a page shows a picture for a poll interval at least. So pages that watch the same
runs sample them together (``SampledSnapshots``): a sample serves every page that asks within
its hold (the asking page's: a quarter of its poll interval, at least ``HOLD_SECONDS``), the
same objects for every page, so a class costs a few builds per poll interval, whatever the
publish rate, and a page's picture is at most a quarter of its interval older than its poll.

Keys hold the snapshots (and runs) themselves, so an id is never reused while its entry lives; the
entries are bounded (``ENTRIES``, least recently used out first), and both caches go with
Streamlit's resource cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import plotly.graph_objects as go
import streamlit as st

from bnviz.serve.settings import REFRESH_SECONDS
from bnviz.snapshot import Snapshot

ENTRIES = 32  # sets of figures kept: one per set of runs being watched at a moment, a class's distinct runs
WAIT_SECONDS = 10.0  # a page waits this long for another page's build, then builds its own (a ceiling)
HOLD_SECONDS = REFRESH_SECONDS["running"]  # a sample of a set of runs serves this long at least: the fastest poll


class SharedFigures:
    """A bounded, thread-safe map from (snapshots by identity, what else the figures depend on) to figures."""

    def __init__(self, entries: int = ENTRIES):
        self.entries = entries
        self._lock = threading.Lock()
        self._figures: OrderedDict[tuple, tuple[tuple[Snapshot, ...], dict[str, go.Figure]]] = OrderedDict()
        self._building: dict[tuple, threading.Event] = {}  # keys being built now, set when their build ends

    @staticmethod
    def key(snapshots: tuple[Snapshot, ...], *depends) -> tuple:
        return (tuple(id(s) for s in snapshots), *depends)

    def get(self, snapshots: tuple[Snapshot, ...], *depends) -> dict[str, go.Figure] | None:
        with self._lock:
            return self._found(self.key(snapshots, *depends), snapshots)

    def build_once(self, snapshots: tuple[Snapshot, ...], build: Callable[[], dict[str, go.Figure]],
                   *depends) -> dict[str, go.Figure]:
        """The figures for these snapshots: found, or built by ``build`` here, or, while another page builds
        them, that page's once it is done (after ``WAIT_SECONDS`` without them, built here after all)."""
        key = self.key(snapshots, *depends)
        with self._lock:
            found = self._found(key, snapshots)
            if found is not None:
                return found
            building = self._building.get(key)
            if building is None:
                building = self._building[key] = threading.Event()
                ours = True
            else:
                ours = False
        if not ours:
            building.wait(WAIT_SECONDS)
            found = self.get(snapshots, *depends)
            return found if found is not None else build()
        try:
            drawn = build()
            self.put(snapshots, drawn, *depends)
            return drawn
        finally:
            with self._lock:
                del self._building[key]
            building.set()

    def put(self, snapshots: tuple[Snapshot, ...], drawn: dict[str, go.Figure], *depends) -> None:
        with self._lock:
            self._figures[self.key(snapshots, *depends)] = (tuple(snapshots), drawn)
            while len(self._figures) > self.entries:
                self._figures.popitem(last=False)

    def _found(self, key: tuple, snapshots: tuple[Snapshot, ...]) -> dict[str, go.Figure] | None:
        """The entry under ``key`` if it holds these very snapshots (the caller holds the lock)."""
        found = self._figures.get(key)
        if found is None or any(a is not b for a, b in zip(found[0], snapshots)):
            return None
        self._figures.move_to_end(key)
        return found[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._figures)


class SampledSnapshots:
    """A bounded, thread-safe map from a set of runs (by identity) to their last sample of snapshots."""

    def __init__(self, hold: float = HOLD_SECONDS, entries: int = ENTRIES, clock: Callable[[], float] = time.monotonic):
        self.hold, self.entries, self._clock = hold, entries, clock
        self._lock = threading.Lock()
        self._samples: OrderedDict[tuple, tuple[tuple, float, tuple[Snapshot, ...]]] = OrderedDict()

    def sample(self, runs: tuple, hold: float | None = None, shown: tuple[Snapshot, ...] = ()) -> tuple[Snapshot, ...]:
        """Each run's ``snapshot()``, as taken by the first page to ask in the last ``hold`` seconds
        (``self.hold`` if not given, and never less), unless that is older than what the asking page
        ``shown`` already (a page that froze its picture and resumes): then taken anew."""
        key, now, hold = tuple(id(run) for run in runs), self._clock(), max(self.hold, hold or 0.0)
        with self._lock:
            found = self._samples.get(key)
            if found is not None and all(a is b for a, b in zip(found[0], runs)) and now - found[1] < hold \
                    and not _older(found[2], shown):
                self._samples.move_to_end(key)
                return found[2]
            snapshots = tuple(run.snapshot() for run in runs)
            self._samples[key] = (tuple(runs), now, snapshots)
            self._samples.move_to_end(key)
            while len(self._samples) > self.entries:
                self._samples.popitem(last=False)
            return snapshots

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)


def _older(sample: tuple[Snapshot, ...], shown: tuple[Snapshot, ...]) -> bool:
    """Whether a run's snapshot in ``sample`` is at an earlier step than the page ``shown`` of the same config."""
    return any(a.config == b.config and a.step < b.step for a, b in zip(sample, shown))


@st.cache_resource(show_spinner=False)
def samples() -> SampledSnapshots:
    """The server's one sampler, shared by every session."""
    return SampledSnapshots()


@st.cache_resource(show_spinner=False)
def shared() -> SharedFigures:
    """The server's one cache, shared by every session."""
    return SharedFigures()
