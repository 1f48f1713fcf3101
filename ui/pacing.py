"""How often a training page polls: as often as the server can serve every page that trains.

Each poll of a training page reruns its live view on the server, and the pages' runs take
turns (``ui.turns``: one interpreter runs them all). Thirty pages polling 2.5 times a second ask
more than the line of turns can serve: every poll then waits behind the others, and each page
refreshes only as fast as the line moves anyway. So the interval grows with the number of
pages training:

    pages training x turn seconds per poll / SHARE   seconds (at least FASTEST, at most LONGEST),

so that the polls keep the line busy at most ``SHARE`` of the time: the rest is left for clicks,
bursts and the sending of every page's messages (Streamlit's event loop, outside the turns, on
the same interpreter), and a poll rarely waits for more than a few others. The seconds per poll are the time
the line was busy over the last ``WINDOW`` seconds (``Turns.busy``: every page's turn, the
polls' and the clicks') divided by the training polls in it, so the estimate errs on the busy
side. It is wall time, not CPU time: a turn lasts longer when the interpreter also sends the
messages, and when the runs train on the server's core (a server held to one core, by an
affinity or by a container's CPU quota), and the pages then poll less often by as much. A page
counts as training from the run of its live view that shows its run training (its Start), so a
class that presses Start together is paced from its first polls, not after them.

A page takes a new interval from inside its poll (``ui.upstream.set_run_every``, no full rerun)
only when the interval it should have left a band around the one it has (``close_enough``): a
class that gathers or leaves changes each page's pace a few times, not at every poll. The
sidebar says the interval when it is slower than ``FASTEST``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

import streamlit as st

from bnviz.serve.settings import REFRESH_SECONDS
from ui import turns

FASTEST = REFRESH_SECONDS["running"]  # one page alone, or a few: a step reaches the screen within half a second
LONGEST = 4.0  # however busy: a training page still moves
SHARE = 0.5  # of the line's time, for the training pages' polls together
WINDOW = 10.0  # seconds: a page that polled within them is training (well above LONGEST); the cost's span
BAND = (0.7, 1.4)  # a page keeps its interval while the one it should have is within these factors of it
PRIOR_SECONDS = 0.05  # turn seconds per poll assumed until polls are measured: about a lesson page's on a 2-core machine
MEASURED_POLLS = 10  # polls in the window before their measure replaces the prior
SAMPLE_SECONDS = 1.0  # the line's busy clock is read at most this often


class Pacer:
    """The server's pace for training pages, from the pages polling and the line's busy clock
    (``busy``: seconds the line of turns was busy so far). Thread-safe."""

    def __init__(self, busy: Callable[[], float], fastest: float = FASTEST, longest: float = LONGEST,
                 share: float = SHARE, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        self.fastest, self.longest, self.share, self.window = fastest, longest, share, window
        self._clock, self._busy = clock, busy
        self._lock = threading.Lock()
        self._pages: dict[str, float] = {}  # page -> when it last showed its run training
        self._polls = 0  # training polls so far
        self._samples: deque[tuple[float, float, int]] = deque()  # (when, busy seconds, polls), the window's
        self.cost = PRIOR_SECONDS  # the line's busy seconds per training poll

    def training(self, page: str) -> None:
        """A page shows a run training (its full run, before its first poll): count it."""
        with self._lock:
            self._pages[page] = self._clock()

    def polled(self, page: str) -> None:
        """A training page polled: count it and the poll, and now and then measure the cost per poll."""
        with self._lock:
            now = self._pages[page] = self._clock()
            self._polls += 1
            if self._samples and now - self._samples[-1][0] < SAMPLE_SECONDS:
                return
            self._samples.append((now, self._busy(), self._polls))
            while now - self._samples[0][0] > self.window:
                self._samples.popleft()
            first, last = self._samples[0], self._samples[-1]
            if last[2] - first[2] >= MEASURED_POLLS:
                self.cost = (last[1] - first[1]) / (last[2] - first[2])

    def pages(self) -> int:
        """Pages that showed a run training within the window (pages gone longer are forgotten)."""
        with self._lock:
            since = self._clock() - self.window
            self._pages = {page: t for page, t in self._pages.items() if t >= since}
            return len(self._pages)

    def interval(self) -> float:
        """The seconds between a training page's polls that the server can serve, up to a tenth of a second."""
        wanted = math.ceil(self.pages() * self.cost / self.share * 10 - 1e-6) / 10
        return min(self.longest, max(self.fastest, wanted))


def close_enough(current: float | None, wanted: float | None) -> bool:
    """Whether a page polling every ``current`` seconds may go on doing so when ``wanted`` is its pace."""
    if current is None or wanted is None:
        return current == wanted
    return BAND[0] * current <= wanted <= BAND[1] * current


@st.cache_resource(show_spinner=False)
def pacer() -> Pacer:
    """The server's one pacer, shared by every session."""
    return Pacer(busy=turns.turns().busy)
