"""ui.shared_figures: one build of a set of snapshots' figures for every page that shows them."""

from __future__ import annotations

import plotly.graph_objects as go

from bnviz.config import RunConfig
from bnviz.snapshot import Snapshot
from ui.shared_figures import SharedFigures


def snapshot(version: int) -> Snapshot:
    return Snapshot(config=RunConfig(), version=version)


def test_a_set_of_snapshots_is_drawn_once_and_found_by_identity():
    cache, shown = SharedFigures(), (snapshot(1), snapshot(1))
    drawn = {"heatmaps": go.Figure()}
    assert cache.get(shown, None, "pre") is None
    cache.put(shown, drawn, None, "pre")
    assert cache.get(shown, None, "pre") is drawn  # the very objects: their serialization is shared too
    assert cache.get(shown, 120, "pre") is None  # scrubbed elsewhere: other figures
    assert cache.get(shown, None, "post") is None
    assert cache.get((snapshot(1), snapshot(1)), None, "pre") is None  # equal but other snapshots: not these


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    cache = SharedFigures(entries=2)
    first, second, third = ((snapshot(i),) for i in range(3))
    for shown in (first, second):
        cache.put(shown, {}, None)
    assert cache.get(first, None) is not None  # first is now the more recent
    cache.put(third, {}, None)
    assert len(cache) == 2
    assert cache.get(second, None) is None and cache.get(first, None) is not None and cache.get(third, None) is not None
