"""The page's run status as data: one keyed element that tests and benchmark clients read.

The progress line ("step 120 of 1000 · 150 steps/s · running · 12 watching") is for people;
this is its machine-readable twin, drawn by the live view at every refresh inside a container
keyed ``run-status`` (CSS class ``st-key-run-status``): a hidden ``st.html`` div whose
``data-status`` attribute holds JSON, for example

    {"state": "running", "ahead": null,
     "runs": [{"key": "3f0c...", "status": "running", "step": 120, "steps": 1000,
               "watching": 12, "shared": true, "forked_at": null}]}

``state`` is this tab's: idle, queued (``ahead``: runs before its own in the queue), running,
paused, done, or reaped (the server stopped its run because the tab stopped polling). Each
run's ``status`` is its Snapshot's (``bnviz.snapshot.STATES``, or "queued"). Clients parse
it with ``read`` (Python) or ``JSON.parse(element.dataset.status)`` (a browser).
"""

from __future__ import annotations

import html
import json
import re

import streamlit as st

from ui import state as keys

CSS_CLASS = "bnviz-status"
STATES = ("idle", "queued", "running", "paused", "done", "reaped")
_ATTRIBUTE = re.compile(r'data-status="([^"]*)"')  # the element's one attribute, written by show()


def show(state: str, runs=(), pool=None, ahead: int | None = None, snapshots=()) -> None:
    """Draw the status element for the pool's ``runs`` this tab watches, as this tab sees them:
    ``snapshots`` (its frozen picture while paused) stand in for the runs' own, and for the runs
    themselves once the tab watches none (a reaped run)."""
    rows = []
    for i, run in enumerate(runs):
        snapshot = snapshots[i] if i < len(snapshots) else run.snapshot()
        rows.append(_row(snapshot, run.key, "queued" if run.queued else snapshot.status,
                         pool.watching(run) if pool is not None else 0, run.shared))
    if not runs:
        rows = [_row(snapshot, snapshot.config.key(), snapshot.status, 0, False) for snapshot in snapshots]
    data = {"state": state, "ahead": ahead, "runs": rows}
    with st.container(key=keys.RUN_STATUS):
        st.html(f'<div class="{CSS_CLASS}" hidden data-status="{html.escape(json.dumps(data), quote=True)}"></div>')


def _row(snapshot, key: str, status: str, watching: int, shared: bool) -> dict:
    return {"key": key, "status": status, "step": snapshot.step, "steps": snapshot.config.steps,
            "watching": watching, "shared": shared, "forked_at": snapshot.forked_at}


def read(body: str) -> dict | None:
    """The status from the element's HTML (a protocol client's ``html`` element body); None if it is not one."""
    if CSS_CLASS not in body:
        return None
    match = _ATTRIBUTE.search(body)
    return json.loads(html.unescape(match[1])) if match else None


def words(data: dict) -> str:
    """The status as the classroom benchmark logs it: "running 120 1000", "queued 3", "idle", ...
    (the first run's step and length; a comparison's runs move together)."""
    state, runs = data["state"], data["runs"]
    if state == "queued":
        return f"queued {data['ahead'] or 0}"
    if state == "idle" or not runs:
        return state
    first = runs[0]
    shown = state if state in ("reaped", "paused") else first["status"]
    return f"{shown} {first['step']} {first['steps']}"
