"""One page's script at a time, in the order they asked: a class's clicks answered one after another.

Streamlit runs each session's script in a thread of its own, and Python runs one thread at a
time, switching every few milliseconds. Thirty pages pressing Start together so share the
interpreter evenly: each of the thirty runs of the page takes thirty times as long, and all of
them end together, at the end of the burst. Taken in turns, the same work ends one run after
another: the first page shows its run at once, the median page in half the time, and the last
no later than before. The same holds for a class's polls.

A run waits its turn (``turn``), first come, first served, and gives it up while it waits for
something other than the interpreter (``released``: a trainer's answer), so one page waiting
does not hold up the others. A page's full run (a click, a page opened, a setting changed: someone
waits for it) goes ahead of the waiting polls (a chart's refresh, which can wait a moment). A turn
is re-entrant: a fragment that runs inside its page's full run is in that run's turn.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading
import time

import streamlit as st


class Turns:
    """A first-come, first-served, re-entrant lock with a way to step aside while waiting, and two lines:
    who waits in the line ``ahead`` goes before everyone in the other."""

    def __init__(self, clock=time.monotonic):
        self._guard = threading.Lock()
        self._holder: int | None = None  # the thread whose turn it is
        self._depth = 0  # how many ``turn`` blocks that thread is inside
        self._lines = (collections.deque(), collections.deque())  # (ahead, the others) of (thread, depth, Event)
        self._clock = clock
        self._busy = 0.0  # seconds some thread held a turn, up to ``_since``
        self._since = 0.0  # when the holder took its turn

    @contextlib.contextmanager
    def turn(self, ahead: bool = False):
        """Run the block in this thread's turn (at once if it is already this thread's)."""
        me = threading.get_ident()
        if self._holder == me:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._acquire(me, 1, ahead)
        try:
            yield
        finally:
            self._release()

    @contextlib.contextmanager
    def released(self):
        """Let the others take turns while the block waits (for a trainer, not for the interpreter)."""
        me = threading.get_ident()
        if self._holder != me:
            yield
            return
        depth = self._depth
        self._release()
        try:
            yield
        finally:
            self._acquire(me, depth, ahead=True, first=True)  # it had its turn: it finishes it next

    def waiting(self) -> int:
        return sum(len(line) for line in self._lines)

    def busy(self) -> float:
        """The seconds some page held a turn so far (a clock that runs while the line is busy): the line's
        load, whatever took the time (the interpreter, the lock's other threads, the runs on a shared core)."""
        with self._guard:
            return self._busy + (self._clock() - self._since if self._holder is not None else 0.0)

    def _acquire(self, me: int, depth: int, ahead: bool, first: bool = False) -> None:
        with self._guard:
            if self._holder is None:
                self._holder, self._depth, self._since = me, depth, self._clock()
                return
            handed = threading.Event()
            line = self._lines[0 if ahead else 1]
            (line.appendleft if first else line.append)((me, depth, handed))
        handed.wait()  # the thread before this one made it the holder

    def _release(self) -> None:
        with self._guard:
            now = self._clock()
            self._busy, self._since = self._busy + now - self._since, now
            line = next((line for line in self._lines if line), None)
            if line is not None:
                self._holder, self._depth, handed = line.popleft()
                handed.set()
            else:
                self._holder, self._depth = None, 0


@st.cache_resource(show_spinner=False)
def turns() -> Turns:
    """The server's one line of page runs."""
    return Turns()


def in_turn(ahead=False):
    """Decorate a page function to run in its turn: ``ahead`` of the polls (a bool, or a function that says
    whether this run answers a click)."""

    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            with turns().turn(ahead() if callable(ahead) else ahead):
                return function(*args, **kwargs)

        return run

    return decorate
