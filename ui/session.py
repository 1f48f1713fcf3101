"""The server's one RunPool, shared by every browser session, and this session's owner id.

Every tab gets a random owner id kept in ``st.session_state``; its runs live in the pool
under that id, not in the session, so a dropped websocket does not kill them. The live
view's polling (``pool.get``) is the heartbeat; a reaper thread sweeps every few seconds
so a closed tab's trainers stop within the idle timeout even when no other page polls.

While a tab has runs, its URL carries ``server=<this server's id>``. Finished runs are kept
(``bnviz.serve.cache``: memory and run files on disk), unfinished ones live only in the
server's memory; a tab that comes back to a restarted server (the browser reconnects with the
same URL, into a new session) finds another id there and names the unfinished runs the
restart lost (the previous server listed them in the cache folder's ``live.json``).

Deployers set the limits with environment variables (on Streamlit Community Cloud,
root-level secrets become environment variables):
    BNVIZ_MAX_RUNNING   trainers at once for the whole server (default 4)
    BNVIZ_IDLE_TIMEOUT  seconds without a poll before a tab's runs are stopped (default 50)
    BNVIZ_CACHE_DIR     where finished runs are kept as run files, for later visitors and after a restart
                        (default: bnviz-runs in the temp dir)
    BNVIZ_CACHE_MB      finished runs kept in memory, in MB (default 256)
    BNVIZ_TURN_SECONDS  while runs wait, a run watched by one tab trains this long at a time, then
                        gives up its slot and continues later from its state (default 600; 0: off)
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
from bnviz.serve.cache import DEFAULT_FOLDER, DEFAULT_MEMORY_MB, RunCache
from bnviz.serve.describe import describe
from bnviz.serve.pool import RunPool
from bnviz.serve.settings import (DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RUNNING, DEFAULT_TURN_SECONDS, ENV_CACHE_DIR,
                                  ENV_CACHE_MB, ENV_IDLE_TIMEOUT, ENV_MAX_RUNNING, ENV_RUNS_IN, ENV_TURN_SECONDS,
                                  REAP_SECONDS, RUNS_IN, SERVER_PARAM)
from ui import state as keys
from ui.controls import plain

RESTARTED = ("The server restarted since this link's run started (an update, a redeploy or a crash). Runs "
             "that had finished are kept and open at once; unfinished runs were lost. The settings are kept in "
             "the link; press **Start** to watch this link's run again.")
LOST_SHOWN = 8  # unfinished runs named in the restart notice


@dataclass
class Shared:
    """What every session shares: the pool and the thread that reaps abandoned runs."""

    pool: RunPool
    stopping: threading.Event  # set when the cache is cleared: the reaper ends
    lost: tuple[str, ...] = ()  # the unfinished runs the previous server named, in words
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

    return (_read(environ, ENV_MAX_RUNNING, int, DEFAULT_MAX_RUNNING, 1, problems),
            _read(environ, ENV_IDLE_TIMEOUT, float, DEFAULT_IDLE_TIMEOUT, 5.0, problems), runs_in, tuple(problems))


def turn_seconds(environ=os.environ) -> tuple[float, tuple[str, ...]]:
    """(turn_seconds, problems): a one-tab run's turn while others wait (0: no turns)."""
    problems = []
    return _read(environ, ENV_TURN_SECONDS, float, DEFAULT_TURN_SECONDS, 0.0, problems), tuple(problems)


def _read(environ, name, kind, default, low, problems):
    """A number >= low from the environment, or the default and a problem that says why."""
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


def _release(shared: Shared) -> None:
    """Called by st.cache_resource.clear() (tests, a redeploy): flags only, never blocks."""
    shared.stopping.set()
    shared.pool.shutdown(timeout=0)


@st.cache_resource(on_release=_release, show_spinner=False)
def shared() -> Shared:
    max_running, idle_timeout, runs_in, problems = limits()
    turn, more = turn_seconds()
    for problem in problems + more:  # for the deployer, in the server log
        logging.getLogger("bnviz").warning(problem)
    make_trainer = None  # the pool's default: a Trainer thread in this process
    if runs_in == "thread":
        importlib.import_module("bnviz.serve.warm")  # torch's first optimizer in this process, now: ~2 s the first run would wait
    else:
        process.warm_up(wait=True)  # the fork server imports torch now (~4 s), not when the first visitor presses Start
        make_trainer = process.TrainerProcess
    cache = run_cache()
    runs = Shared(RunPool(max_running, idle_timeout, make_trainer=make_trainer, turn_seconds=turn, cache=cache),
                  threading.Event(), lost=tuple(_lost(cache)))
    cache.write_live([])  # this server's own, from now on
    threading.Thread(target=_reap, args=(runs,), name="bnviz-reaper", daemon=True).start()
    return runs


def run_cache(environ=os.environ) -> RunCache:
    """The finished-run cache the environment asks for (``BNVIZ_CACHE_DIR``, ``BNVIZ_CACHE_MB``)."""
    problems = []
    megabytes = _read(environ, ENV_CACHE_MB, int, DEFAULT_MEMORY_MB, 0, problems)
    cache = RunCache(environ.get(ENV_CACHE_DIR) or DEFAULT_FOLDER, max_bytes=megabytes * 2**20)
    for problem in problems + ([cache.problem] if cache.problem else []):
        logging.getLogger("bnviz").warning(problem)
    return cache


def _lost(cache: RunCache) -> list[str]:
    return [f"{run['what']} at step {run['step']:,}" for run in cache.read_live()
            if isinstance(run.get("step"), int) and isinstance(run.get("what"), str)]


def _reap(runs: Shared) -> None:
    written = None
    while not runs.stopping.wait(REAP_SECONDS):
        runs.pool.reap()
        live = [{"key": key, "what": describe(config), "step": step} for key, config, step in runs.pool.unfinished()]
        if live != written:  # a few hundred bytes, only when it changed
            runs.pool.cache.write_live(live)
            written = live
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
    if not state[keys.LOST_RUN]:
        return None
    lost = shared().lost
    if not lost:
        return RESTARTED
    more = f" and {len(lost) - LOST_SHOWN} more" if len(lost) > LOST_SHOWN else ""
    return RESTARTED + " Lost: " + "; ".join(plain(name) for name in lost[:LOST_SHOWN]) + more + "."
