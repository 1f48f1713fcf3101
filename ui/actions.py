"""The buttons (start, pause, resume, step, reset) and what a settings change does to a run.

Runs belong to the server and are shared by config (``bnviz.serve.pool``): Start watches the
run of the chosen settings, trained once for every tab that asks. Watching is shared,
changing is private:
- **Pause** freezes this tab's picture while the run goes on for the others; **Resume**
  catches up with it. On a run this tab controls (its own fork) they pause the trainer.
- **Step** and a **live learning-rate change** fork a private run from the shared run's
  state now (weights, optimizer, data position, history so far), marked on the timeline;
  the others keep watching theirs. The fork takes a slot and queues like any run; on a
  private run these act in place.
- **Reset** stops watching (a run nobody watches stops) and clears the pictures.
A button acts once, on the rerun its click causes. Any other settings change leaves the run
as it is and offers a restart (a network cannot change its shape, data or optimizer mid-run).
"""

from __future__ import annotations

import time

import streamlit as st

from bnviz.config import field_names
from bnviz.serve.runs import Entry
from ui import cost, session, turns
from ui import state as keys
from ui.controls import Choice

SETTLE_SECONDS = 1.0  # wait at most this long for a trainer to show a command's effect
SETTLE_POLL = 0.02
ACTIVE = ("queued", "running", "paused")


def mode(entry: Entry | None) -> str:
    """idle (nothing watched), queued, running, paused (this tab's picture frozen, or every live
    run it controls paused) or done."""
    if entry is None:
        return "idle"
    if not entry.running:
        return "queued"
    live = [run for run in entry.runs if not run.snapshot().done]
    if not live:
        return "done"
    if st.session_state.get(keys.FROZEN):
        return "paused"
    return "paused" if all(run.snapshot().status == "paused" for run in live) else "running"


def ready(snapshot) -> bool:
    """A run can be drawn once it has recorded a step (and so has its bin edges); before that it is starting."""
    return len(snapshot.column("steps")) > 0 and len(snapshot.pre_edges) > 0


def controlled(entry: Entry) -> bool:
    """Every run of this tab is its own (a fork, a Step from nothing): its buttons act in place."""
    return all(run.controller == session.owner() for run in entry.runs)


def toolbar(choice: Choice) -> tuple[Entry | None, bool]:
    """The row of buttons, then notices about settings that differ from the running ones; returns this
    tab's runs and whether a button was clicked.

    A click is done before the buttons are drawn: its ``on_click`` only names the button (it runs
    before this script, when the settings are not read yet), and this run acts on it and then draws
    the buttons for the state it left. So a click costs one run, not two (a click read from a button's
    return value needs ``st.rerun()`` to redraw the buttons; a class pressing Start together paid for
    that twice)."""
    pool, owner, state = session.pool(), session.owner(), st.session_state
    click = state.pop(keys.CLICKED, None)
    _act(click, choice)
    entry = pool.get(owner)
    current = mode(entry)
    buttons = st.columns([1.2, 1, 1, 1, 1, 4])
    labels = (("start", "Start", "primary", False), ("pause", "Pause", "secondary", current != "running"),
              ("resume", "Resume", "secondary", current != "paused"),
              ("step", "Step", "secondary", current in ("queued", "done")),
              ("reset", "Reset", "secondary", current == "idle" and keys.LAST not in state))
    helps = {"start": "Watch the run of these settings: trained once for everyone who asks, from step 0.",
             "pause": "Freeze your picture; the run goes on for the others (Resume catches up).",
             "step": "Train one step, then pause: on a shared run, a private copy of it from its state now.",
             "reset": "Stop watching and clear the pictures."}
    for column, (key, label, kind, off) in zip(buttons, labels):
        column.button(label, key=key, type=kind, disabled=off, help=helps.get(key), width="stretch",
                      on_click=clicked, args=(key,))
    for notice in state.pop(keys.NOTICES, ()):
        st.info(notice)
    for refusal in state.pop(keys.REFUSED, ()):
        st.error(refusal)
    if current in ACTIVE:
        _live_changes(choice, entry)
    return pool.get(owner), click is not None


def clicked(key: str) -> None:
    """A button's ``on_click``: remember which, for ``toolbar`` to do in this run."""
    st.session_state[keys.CLICKED] = key


def _act(key: str | None, choice: Choice) -> None:
    """Do what the clicked button asks, given the state the page showed when it was clicked."""
    if key is None:
        return
    entry = session.pool().get(session.owner())
    current = mode(entry)
    if key == "start" or (key == "step" and current == "idle"):
        start(choice, paused=key == "step")
    elif entry is not None and entry.running:
        if key == "pause":
            pause(entry)
        elif key == "resume":
            resume(entry)
        elif key == "step":
            step(entry)
    if key == "reset":
        reset()


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
    elif entry.running:  # a run that starts now shows its first step within a fraction of a second: show it trained
        _settle(entry.trainers, lambda i, s: s.done or ready(s))
    return entry


def pause(entry: Entry) -> None:
    if controlled(entry):
        for trainer in entry.trainers:
            trainer.pause()
        _settle(entry.trainers, lambda i, s: s.done or s.status == "paused")
    else:  # the run goes on for the others: this tab keeps its picture
        st.session_state[keys.FROZEN] = tuple(run.snapshot() for run in entry.runs)


def resume(entry: Entry) -> None:
    if st.session_state.pop(keys.FROZEN, None) is None:
        for trainer in entry.trainers:
            trainer.resume()
        _settle(entry.trainers, lambda i, s: s.done or s.status == "running")


def step(entry: Entry) -> None:
    """One more step, then paused: in place on this tab's own runs, else on a fork of the shared ones."""
    before = {id(trainer): trainer.snapshot().version for trainer in entry.trainers}
    mine = controlled(entry)
    entry = _fork(session.owner(), step=True) or entry
    st.session_state.pop(keys.FROZEN, None)
    if not mine:
        _forked(entry)
    trainers = entry.trainers

    def stepped(i, s):
        if s.done:
            return True
        if s.forked_at is not None and id(trainers[i]) not in before:  # a new fork: its first step after the fork
            return s.status == "paused" and s.step > s.forked_at
        return s.status == "paused" and s.version > before.get(id(trainers[i]), -1)

    if entry.running:
        _settle(trainers, stepped)


def make_private(entry: Entry) -> Entry:
    """This tab's own runs before it changes them: a shared run is forked from its state now (the
    others keep watching theirs); runs the tab already controls are changed in place."""
    if controlled(entry):
        return entry
    forked = _fork(session.owner()) or entry
    st.session_state.pop(keys.FROZEN, None)
    _forked(forked)
    return forked


def _fork(owner: str, **change) -> Entry | None:
    """``RunPool.fork``, which waits for the shared run's state, while the other pages go on."""
    with turns.turns().released():
        return session.pool().fork(owner, **change)


def _forked(entry: Entry) -> None:
    """Say so: the others keep the shared run."""
    state = st.session_state
    state[keys.RUN_ID] = state.get(keys.RUN_ID, 0) + 1
    for key in keys.VIEW:
        state.pop(key, None)
    where = "waits for a free slot" if not entry.running else "trains"
    state[keys.NOTICES] = [f"Your change made a private copy of the shared run from its state now (weights, "
                           f"optimizer, data position, history so far), marked on the charts; it {where}. "
                           "The others keep watching the shared run. Start goes back to it."]


def reset() -> None:
    """Stop and forget this session's runs and pictures (the settings stay)."""
    session.pool().release(session.owner())
    state = st.session_state
    for key in keys.RUN:
        state.pop(key, None)
    state[keys.RUN_ID] = state.get(keys.RUN_ID, 0) + 1


def _settle(trainers, done) -> None:
    """Wait briefly until every trainer has published the command's effect, so this rerun shows it (the other
    pages take their turns meanwhile)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    with turns.turns().released():  # the other pages go on meanwhile
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
        mine = controlled(entry)
        entry = _fork(session.owner(), lr=lr) or entry
        state[keys.LIVE_LR] = lr
        state.pop(keys.FROZEN, None)
        if mine:
            st.toast(f"Learning rate set to {lr:g}: marked on the charts from step "
                     f"{entry.runs[0].snapshot().step}.")
        else:
            _forked(entry)
            st.rerun()
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
            st.button("Restart with the new settings", key=keys.RESTART, type="primary", on_click=clicked,
                      args=("start",))
