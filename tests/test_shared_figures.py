"""ui.shared_figures: one build of a set of snapshots' figures for every page that shows them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import plotly.graph_objects as go
import pytest

from bnviz.config import RunConfig
from bnviz.snapshot import Snapshot
from ui.shared_figures import SampledSnapshots, SharedFigures


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


def test_pages_that_ask_while_one_builds_wait_for_its_figures():
    """Thirty pages polling one new publish at once: one build, every page gets its figures."""
    cache, shown, builds = SharedFigures(), (snapshot(1),), []
    started, release = threading.Event(), threading.Event()

    def build() -> dict:
        builds.append(threading.current_thread().name)
        started.set()
        release.wait(5)  # a build slower than the other pages' polls
        return {"heatmaps": go.Figure()}

    with ThreadPoolExecutor(30) as pool:
        first = pool.submit(cache.build_once, shown, build, None, "pre")
        started.wait(5)
        others = [pool.submit(cache.build_once, shown, build, None, "pre") for _ in range(29)]
        release.set()
        results = [first.result(), *(other.result() for other in others)]
    assert len(builds) == 1
    assert all(result is results[0] for result in results)
    assert cache.get(shown, None, "pre") is results[0]


def test_a_failed_build_lets_the_next_page_build():
    cache, shown = SharedFigures(), (snapshot(1),)

    def broken() -> dict:
        raise RuntimeError("the build failed")

    with pytest.raises(RuntimeError):
        cache.build_once(shown, broken, None)
    drawn = {"heatmaps": go.Figure()}
    assert cache.build_once(shown, lambda: drawn, None) is drawn  # not left waiting for the failed build


class Publishing:
    """A run that publishes a new snapshot at every look, as a shared run does five times a second."""

    def __init__(self):
        self.version = 0

    def snapshot(self) -> Snapshot:
        self.version += 1
        return snapshot(self.version)


def test_pages_watching_the_same_runs_share_one_sample_per_hold():
    now = [0.0]
    sampler, runs = SampledSnapshots(hold=0.4, clock=lambda: now[0]), (Publishing(), Publishing())
    first = sampler.sample(runs)
    now[0] = 0.39
    assert sampler.sample(runs) is first  # every page within the hold: the same objects, so one build
    assert sampler.sample((runs[0],)) is not first  # another set of runs: a sample of its own
    now[0] = 0.41
    assert sampler.sample(runs, hold=1.0) is first  # a page polling every 4 s takes a quarter of that
    later = sampler.sample(runs)
    assert later is not first and [s.version for s in later] == [3, 2]  # taken anew
    assert sampler.sample(runs, hold=0.1) is later  # never less than the sampler's own hold


def test_a_page_is_never_given_a_sample_older_than_its_picture():
    """A page that froze its picture at step 112 and resumes within the hold of a sample taken at step 1."""
    now = [0.0]
    sampler, run = SampledSnapshots(hold=0.4, clock=lambda: now[0]), Publishing()
    early = sampler.sample((run,))
    now[0] = 0.2
    frozen = (Snapshot(config=RunConfig(), version=50, step=112),)
    assert sampler.sample((run,), shown=(snapshot(0),)) is early  # no newer than what that page shows: shared
    fresh = sampler.sample((run,), shown=frozen)
    assert fresh is not early and fresh[0].version == 2  # taken anew
    other = (Snapshot(config=RunConfig(seed=7), version=50, step=112),)
    assert sampler.sample((run,), shown=other) is fresh  # another run's picture says nothing of this one's age


def test_samples_are_bounded():
    sampler = SampledSnapshots(entries=2)
    for _ in range(5):
        sampler.sample((Publishing(),))
    assert len(sampler) == 2
