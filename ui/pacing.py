"""How often a training page polls: as often as the server can serve every page that trains.

Each poll of a training page reruns its live view on the server, and the pages' runs take
turns (``ui.turns``) on one interpreter, which also sends every page's messages (Streamlit's
event loop: the websocket, its compression). Thirty pages polling 2.5 times a second ask more
than it can do: every poll then waits behind the others, and each page refreshes only as fast
as the line moves anyway. So the interval grows with the number of pages training:

    pages training x work per poll / share   seconds (at least FASTEST, at most LONGEST),

the work per poll measured on the running server over the last ``WINDOW`` seconds, divided by
the training polls in it. What is measured depends on the cores the server may run on
(``bnviz.machine.cores``, its CPU affinity):
- two or more: the time some page held a turn (``Turns.busy``, wall time), at most ``SHARE`` of
  it. The sending runs beside the turns (its compression on the other core), so the line is
  what the polls wait for; and the process's CPU time counts work that is not the polls' (the
  runs' snapshots, the sidebar's line): half a core of it ran the pace into its cap (README).
- one: the server process's CPU time, at most ``ONE_CORE_SHARE`` of the core, which the runs
  share. There the sending does not run beside the turns but takes the same core, and only the
  CPU time counts it. (A CPU quota without an affinity, as some containers set, is not seen:
  such a server is paced as on two cores, by the turns' time, which grows as the quota slows it.)
A page counts as training from the run of its live view that shows its run training (its
Start), so a class that presses Start together is paced from its first polls, not after them.

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

from bnviz.machine import cores
from bnviz.serve.settings import REFRESH_SECONDS
from ui import turns

FASTEST = REFRESH_SECONDS["running"]  # one page alone, or a few: a step reaches the screen within half a second
LONGEST = 4.0  # however busy: a training page still moves
SHARE = 0.5  # of the line's time, for the training pages' polls together (two or more cores)
ONE_CORE_SHARE = 0.35  # of the server's one core, in CPU time, which the runs share
WINDOW = 10.0  # seconds: a page that polled within them is training (well above LONGEST); the cost's span
BAND = (0.7, 1.4)  # a page keeps its interval while the one it should have is within these factors of it
PRIOR_SECONDS = 0.05  # work per poll assumed until polls are measured: about a lesson page's
MEASURED_POLLS = 10  # polls in the window before their measure replaces the prior
SAMPLE_SECONDS = 1.0  # the work clock is read at most this often


class Pacer:
    """The server's pace for training pages, from the pages polling and a clock of the server's work
    (``work``: seconds of it so far, at most ``share`` of each second for the polls). Thread-safe."""

    def __init__(self, work: Callable[[], float], share: float, fastest: float = FASTEST,
                 longest: float = LONGEST, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        self.fastest, self.longest, self.share, self.window = fastest, longest, share, window
        self._clock, self._work = clock, work
        self._lock = threading.Lock()
        self._pages: dict[str, float] = {}  # page -> when it last showed its run training
        self._polls = 0  # training polls so far
        self._samples: deque[tuple[float, float, int]] = deque()  # (when, work seconds, polls), the window's
        self.cost = PRIOR_SECONDS  # the server's work per training poll, seconds

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
            self._samples.append((now, self._work(), self._polls))
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
    """The server's one pacer, shared by every session: by the turns' time on two or more cores, by the
    process's CPU time on one."""
    if cores() >= 2:
        return Pacer(work=turns.turns().busy, share=SHARE)
    return Pacer(work=time.process_time, share=ONE_CORE_SHARE)
