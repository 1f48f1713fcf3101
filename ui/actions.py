"""The buttons (start, pause, resume, step, reset) and what a settings change does to a live run.

A button acts once, on the rerun its click causes, so reruns never start a second run;
``pool.submit`` replaces this session's runs anyway. A new learning rate reaches running
trainers at once (``set_lr``, marked on the timeline); any other change leaves the run as
it is and offers a restart (a network cannot change its shape, data or optimizer mid-run).
"""

from __future__ import annotations

import time

import streamlit as st

from bnviz.config import field_names
from bnviz.serve.pool import Entry
from ui import cost, session
from ui import state as keys
from ui.controls import Choice

SETTLE_SECONDS = 1.0  # wait at most this long for a trainer to show a command's effect
SETTLE_POLL = 0.02
ACTIVE = ("queued", "running", "paused")


def mode(entry: Entry | None) -> str:
    """idle (nothing submitted), queued, running, paused (every live trainer paused) or done."""
    if entry is None:
        return "idle"
    if not entry.running:
        return "queued"
    snapshots = [trainer.snapshot() for trainer in entry.trainers]
    live = [s for s in snapshots if not s.done]
    if not live:
        return "done"
    return "paused" if all(s.status == "paused" for s in live) else "running"


def toolbar(choice: Choice) -> None:
    """The row of buttons, then notices about settings that differ from the running ones."""
    pool, owner, state = session.pool(), session.owner(), st.session_state
    entry = pool.get(owner)
    current = mode(entry)
    buttons = st.columns([1.2, 1, 1, 1, 1, 4])
    labels = (("start", "Start", "primary", False), ("pause", "Pause", "secondary", current != "running"),
              ("resume", "Resume", "secondary", current != "paused"),
              ("step", "Step", "secondary", current in ("queued", "done")),
              ("reset", "Reset", "secondary", current == "idle" and keys.LAST not in state))
    helps = {"start": "Start training (restarts if a run exists).",
             "step": "Train one step, then pause (from nothing: a new run, paused after its first step).",
             "reset": "Stop the run and clear the pictures."}
    clicked = {key: column.button(label, key=key, type=kind, disabled=off, help=helps.get(key), width="stretch")
               for column, (key, label, kind, off) in zip(buttons, labels)}
    for notice in state.pop(keys.NOTICES, ()):
        st.info(notice)
    for refusal in state.pop(keys.REFUSED, ()):
        st.error(refusal)
    if clicked["start"] or (clicked["step"] and current == "idle"):
        start(choice, paused=clicked["step"])
    elif entry is not None and entry.running:
        trainers = entry.trainers
        versions = [t.snapshot().version for t in trainers]
        if clicked["pause"]:
            for trainer in trainers:
                trainer.pause()
            _settle(trainers, lambda i, s: s.done or s.status == "paused")
        elif clicked["resume"]:
            for trainer in trainers:
                trainer.resume()
            _settle(trainers, lambda i, s: s.done or s.status == "running")
        elif clicked["step"]:
            for trainer in trainers:
                trainer.pause()
                trainer.step(1)
            _settle(trainers, lambda i, s: s.done or (s.status == "paused" and s.version > versions[i]))
    if clicked["reset"]:
        reset()
    if any(clicked.values()):
        st.rerun()  # draw the buttons again for the state the click left behind
    if current in ACTIVE:
        _live_changes(choice, entry)


def start(choice: Choice, paused: bool = False) -> Entry | None:
    """Submit this session's run(s); replaces any it had. Same seed for every run of a comparison.
    Runs beyond the deployment's budget are refused (None), the reasons kept for the next rerun
    and the runs this tab had left as they were."""
    pool, state = session.pool(), st.session_state
    configs = choice.configs(pool.max_running)
    refused = cost.refusals(choice, pool.max_running)
    if refused:
        state[keys.REFUSED] = ["Not started\\. " + refused[0], *refused[1:]]
        return None
    entry = pool.submit(session.owner(), configs, paused=paused)
    state[keys.SUBMITTED] = (tuple(configs), choice.compare)
    state[keys.LIVE_LR] = choice.config.lr
    state[keys.RUN_ID] = state.get(keys.RUN_ID, 0) + 1
    for key in keys.VIEW:
        state.pop(key, None)
    if choice.compare and len(configs) < len(choice.compared_norms()):
        state[keys.NOTICES] = [f"This server trains at most {pool.max_running} runs at once, so only the first "
                         f"{len(configs)} of the comparison run."]
    if entry.running and paused:  # the pool asked for the first step
        _settle(entry.trainers, lambda i, s: s.done or (s.status == "paused" and s.step > 0))
    return entry


def reset() -> None:
    """Stop and forget this session's runs and pictures (the settings stay)."""
    session.pool().release(session.owner())
    state = st.session_state
    for key in keys.RUN:
        state.pop(key, None)
    state[keys.RUN_ID] = state.get(keys.RUN_ID, 0) + 1


def _settle(trainers, done) -> None:
    """Wait briefly until every trainer has published the command's effect, so this rerun shows it."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if all(done(i, t.snapshot()) for i, t in enumerate(trainers)):
            return
        time.sleep(SETTLE_POLL)


def _live_changes(choice: Choice, entry: Entry) -> None:
    """Apply a new learning rate live; describe any other change and offer a restart."""
    state = st.session_state
    submitted, compared = state.get(keys.SUBMITTED, ((), False))
    if not submitted:
        return
    lr = choice.config.lr
    if entry.running and lr != state.get(keys.LIVE_LR):
        for trainer in entry.trainers:
            trainer.set_lr(lr)
        state[keys.LIVE_LR] = lr
        st.toast(f"Learning rate set to {lr:g}: marked on the charts from step {entry.trainers[0].snapshot().step}.")
    before, after = submitted[0], choice.config
    changed = [f"{key} {getattr(before, key)} → {getattr(after, key)}" for key in field_names()
               if key not in ("lr", "norm") and getattr(before, key) != getattr(after, key)]
    if not compared and before.norm != after.norm:
        changed.append(f"norm {before.norm} → {after.norm}")
    if compared != choice.compare:
        changed.append("comparison " + ("on" if choice.compare else "off"))
    if changed:
        with st.container(border=True):
            st.info("The settings changed (" + "; ".join(changed) + "). This run keeps the settings it "
                    "started with; only the learning rate changes live.")
            if st.button("Restart with the new settings", key=keys.RESTART, type="primary"):
                start(choice)
                st.rerun()
