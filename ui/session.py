"""The server's one RunPool, shared by every browser session, and this session's owner id.

Every tab gets a random owner id kept in ``st.session_state``; its runs live in the pool
under that id, not in the session, so a dropped websocket does not kill them. The live
view's polling (``pool.get``) is the heartbeat; a reaper thread sweeps every few seconds
so a closed tab's trainers stop within the idle timeout even when no other page polls.

While a tab has runs, its URL carries ``server=<this server's id>``. Runs live only in the
server's memory; a tab that comes back to a restarted server (the browser reconnects with
the same URL, into a new session) finds another id there and says that its run was lost.

Deployers set the limits with environment variables (on Streamlit Community Cloud,
root-level secrets become environment variables):
    BNVIZ_MAX_RUNNING   trainers at once for the whole server (default 4)
    BNVIZ_IDLE_TIMEOUT  seconds without a poll before a tab's runs are stopped (default 50)
    BNVIZ_RUNS_IN       "process" (default): each run trains in a child process, so the pages'
                        work does not slow it; "thread": in the server's own process, which
                        saves the fork server's memory (~250 MB) on a small deployment
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field

import streamlit as st

from bnviz.serve import process
from bnviz.serve.pool import RunPool
from bnviz.serve.settings import (DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RUNNING, ENV_IDLE_TIMEOUT, ENV_MAX_RUNNING, ENV_RUNS_IN,
                                  REAP_SECONDS, RUNS_IN, SERVER_PARAM)
from ui import state as keys

RESTARTED = ("The server restarted since this link's run started (an update, a redeploy or a crash), so "
             "that run is gone: runs live only in the server's memory. The settings are kept in the link; "
             "press **Start** to train.")


@dataclass
class Shared:
    """What every session shares: the pool and the thread that reaps abandoned runs."""

    pool: RunPool
    stopping: threading.Event  # set when the cache is cleared: the reaper ends
    server_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # new at every server start


def limits(environ=os.environ) -> tuple[int, float, str, tuple[str, ...]]:
    """(max_running, idle_timeout, runs_in, problems) from the environment; a bad value keeps the default."""
    problems = []
    runs_in = environ.get(ENV_RUNS_IN, RUNS_IN[0])
    if runs_in not in RUNS_IN:
        problems.append(f"{ENV_RUNS_IN}={runs_in[:20]!r} is not one of {', '.join(RUNS_IN)}; using {RUNS_IN[0]}")
        runs_in = RUNS_IN[0]
    if runs_in == "process" and not process.AVAILABLE:
        problems.append("this platform has no fork server (Windows): runs train in threads of the server")
        runs_in = "thread"

    def read(name, kind, default, low):
        text = environ.get(name)
        if text is None:
            return default
        try:
            value = kind(text)
            if not value >= low:
                raise ValueError
            return value
        except ValueError:
            problems.append(f"{name}={text[:20]!r} is not a {kind.__name__} >= {low}; using {default}")
            return default

    return (read(ENV_MAX_RUNNING, int, DEFAULT_MAX_RUNNING, 1),
            read(ENV_IDLE_TIMEOUT, float, DEFAULT_IDLE_TIMEOUT, 5.0), runs_in, tuple(problems))


def _release(shared: Shared) -> None:
    """Called by st.cache_resource.clear() (tests, a redeploy): flags only, never blocks."""
    shared.stopping.set()
    shared.pool.shutdown(timeout=0)


@st.cache_resource(on_release=_release, show_spinner=False)
def shared() -> Shared:
    max_running, idle_timeout, runs_in, problems = limits()
    for problem in problems:  # for the deployer, in the server log
        logging.getLogger("bnviz").warning(problem)
    make_trainer = None  # the pool's default: a Trainer thread in this process
    if runs_in == "thread":
        importlib.import_module("bnviz.serve.warm")  # torch's first optimizer in this process, now: ~2 s the first run would wait
    else:
        process.warm_up()  # the fork server imports torch now (~4 s), not when the first visitor presses Start
        make_trainer = process.TrainerProcess
    runs = Shared(RunPool(max_running, idle_timeout, make_trainer=make_trainer), threading.Event())
    threading.Thread(target=_reap, args=(runs,), name="bnviz-reaper", daemon=True).start()
    return runs


def _reap(runs: Shared) -> None:
    while not runs.stopping.wait(REAP_SECONDS):
        runs.pool.reap()
        if not runs.pool.counts()["alive_trainers"]:
            _give_back_memory()


def _give_back_memory() -> None:
    """Return freed heap to the system while no trainer runs: glibc keeps what a class's runs
    freed (a few hundred MB) otherwise. A few ms, only on an idle server; a no-op off glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def pool() -> RunPool:
    return shared().pool


def owner() -> str:
    """This browser session's id in the pool."""
    if keys.OWNER not in st.session_state:
        st.session_state[keys.OWNER] = uuid.uuid4().hex
    return st.session_state[keys.OWNER]


def url_marker() -> dict[str, str]:
    """The URL parameter that marks a page with runs on this server (none without runs)."""
    return {SERVER_PARAM: shared().server_id} if pool().get(owner()) is not None else {}


def lost_run_notice(marker: str | None) -> str | None:
    """RESTARTED if this session opened on a URL marked by another server, until it starts a run."""
    state = st.session_state
    if keys.LOST_RUN not in state:  # the session's first run: the URL is still the one it came with
        state[keys.LOST_RUN] = marker is not None and marker != shared().server_id
    if state[keys.LOST_RUN] and pool().get(owner()) is not None:
        state[keys.LOST_RUN] = False
    return RESTARTED if state[keys.LOST_RUN] else None
