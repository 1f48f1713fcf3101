"""The class at a glance: this server's runs, what each is, and one click to watch one.

A teacher who shared one link wants to see what the class tried and put a student's run on
the projector. The panel lists every run the server holds (queued, training, finished, the
private forks) and the finished runs it keeps in memory: how each differs from its nearest
preset (``bnviz.serve.describe``), its status, step, final accuracy and how many tabs watch
it. **Open** makes this tab watch that run (the settings follow it); watching is shared, so
the student's run goes on as it was. The list refreshes every few seconds while it is open.
"""

from __future__ import annotations

import streamlit as st

from bnviz.presets import PRESETS
from bnviz.serve.describe import closest_preset, describe
from ui import session, turns
from ui import state as keys
from ui.controls import SETTINGS, Choice, plain

REFRESH_SECONDS = 3.0  # a class list, not a chart: every few seconds is current enough
ROWS = 40  # runs listed at most (a class of thirty with a few forks); the newest last
WIDTHS = [4, 1.3, 1.3, 1.2, 1, 1]


def show() -> None:
    """The toggle, and the list under it while it is on."""
    if st.toggle("This server's runs", key=keys.CLASS_VIEW,
                 help="What everyone on this server is training or has finished; open one to watch it."):
        st.fragment(_table, run_every=REFRESH_SECONDS)()


def rows() -> list[dict]:
    """The runs to list: the pool's, then finished ones kept in memory that nobody watches now."""
    pool = session.pool()
    listed, seen = [], set()
    for run in pool.runs():
        snapshot = run.snapshot()
        listed.append(_row(run.key, snapshot, "queued" if run.queued else snapshot.status, pool.watching(run),
                           run.shared))
        seen.add(run.key)
    if pool.cache is not None:
        for key, snapshot in pool.cache.recent():
            if key not in seen:
                listed.append(_row(key, snapshot, snapshot.status, 0, True))
    return listed[-ROWS:]


def _row(key: str, snapshot, status: str, watching: int, shared: bool) -> dict:
    accuracy = float(snapshot.accuracy[-1]) if len(snapshot.accuracy) else None
    kind = "" if shared else (f" (private, forked at step {snapshot.forked_at:,})" if snapshot.forked_at is not None
                              else " (private)")
    return {"key": key, "what": describe(snapshot.config) + kind, "status": status, "step": snapshot.step,
            "steps": snapshot.config.steps, "accuracy": accuracy, "watching": watching}


@turns.in_turn()
def _table() -> None:
    if st.session_state.pop(keys.OPENED, False):
        st.rerun()  # the whole page: an Open's click reruns this fragment only, and the page shows the run
    listed = rows()
    if not listed:
        st.caption("No runs on this server yet.")
        return
    for column, title in zip(st.columns(WIDTHS), ("run", "status", "step", "accuracy", "watching", "")):
        column.markdown(f"**{title}**")
    for row in listed:
        columns = st.columns(WIDTHS)
        columns[0].markdown(plain(row["what"]))
        columns[1].markdown(row["status"])
        columns[2].markdown(f"{row['step']:,} of {row['steps']:,}")
        columns[3].markdown("" if row["accuracy"] is None else f"{row['accuracy']:.2%}")
        columns[4].markdown(str(row["watching"]))
        columns[5].button("Open", key=f"{keys.OPEN}{row['key']}", on_click=_open, args=(row["key"],))


def _open(key: str) -> None:
    """Watch this run, with the sidebar showing its settings (an on_click: before the page reruns)."""
    state = st.session_state
    state[keys.OPENED] = True
    entry = session.pool().open(session.owner(), [key])
    if entry is None:
        state[keys.NOTICES] = ["That run has ended and is no longer kept on this server."]
        return
    config = entry.runs[0].config
    old: Choice = state[keys.CHOICE]
    state[keys.CHOICE] = Choice(PRESETS[closest_preset(config)[0]], config, False, old.hidden)
    for name in (*SETTINGS, keys.PRESET, keys.COMPARE, *keys.VIEW):
        state.pop(name, None)
    state[keys.SUBMITTED] = ((config,), False)
    state[keys.LIVE_LR] = config.lr
    state[keys.RUN_ID] = state.get(keys.RUN_ID, 0) + 1
    state[keys.NOTICES] = [f"You are watching {plain(describe(config))}: the same run as everyone who opened it."]
