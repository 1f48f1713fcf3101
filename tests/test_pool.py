"""RunPool with a hand-moved clock: runs known by config, the cap, the queue of runs, reaping.

Trainers are real threads; most start paused (Step from nothing) or train short runs, so a
test costs little training. Every pool is shut down (trainers stopped and joined) after its
test. The cap against real run processes is ``test_the_cap_counts_run_processes_...``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bnviz.config import RunConfig
from bnviz.serve.pool import RunPool
from bnviz.serve.process import TrainerProcess
from bnviz.serve.runs import shareable

CONFIG = RunConfig(dataset="synthetic", depth=2, width=16, batch_size=32, steps=200_000, eval_every=1000,
                   eval_size=200)
OTHER = CONFIG.replace(seed=1)
SHORT = CONFIG.replace(steps=60, eval_every=30)
IDLE_TIMEOUT = 60.0
QUEUE_TIMEOUT = 5.0
WAIT = 60.0


class Clock:
    """The pool's time, moved by the test."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_pool(max_running: int = 1, **options) -> RunPool:
    clock = Clock()
    made = RunPool(max_running=max_running, idle_timeout=IDLE_TIMEOUT, clock=clock, queue_timeout=QUEUE_TIMEOUT,
                   **options)
    made.clock = clock  # for the test to move
    return made


@pytest.fixture
def pool():
    made = make_pool()
    yield made
    made.shutdown(timeout=30)
    assert made.counts()["owners"] == 0


def running(pool: RunPool, owner: str) -> bool:
    entry = pool.get(owner)  # also a sign of life, as the page's poll is
    return entry is not None and entry.running


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_tabs_asking_for_one_config_watch_one_run(pool):
    first = pool.submit("a", [CONFIG])
    second = pool.submit("b", [CONFIG])
    assert first.runs[0] is second.runs[0] and first.runs[0].key == CONFIG.key()
    assert running(pool, "a") and running(pool, "b")
    assert pool.counts()["alive_trainers"] == 1  # one trainer for both
    assert pool.watching(first.runs[0]) == 2
    pool.release("a")  # one leaves: the run goes on for the other
    assert pool.counts()["alive_trainers"] == 1 and not first.runs[0].trainer.join(0.2)
    pool.release("b")  # nobody watches: it stops
    assert first.runs[0].trainer.join(30)


def test_the_queue_counts_runs_not_tabs(pool):
    for owner in ("a", "b", "c"):
        pool.submit(owner, [CONFIG])  # one run for three tabs
    for owner in ("d", "e"):
        pool.submit(owner, [OTHER])  # a second run, queued once
    pool.submit("f", [CONFIG.replace(seed=2)])
    assert [running(pool, owner) for owner in "abcdef"] == [True, True, True, False, False, False]
    assert (pool.position("d"), pool.position("e"), pool.position("f")) == (0, 0, 1)
    counts = pool.counts()
    assert (counts["runs"], counts["queued_runs"], counts["alive_trainers"]) == (3, 2, 1)
    for owner in "abc":
        pool.release(owner)
    wait_for(lambda: pool.counts()["alive_trainers"] == 0, "the first run to end")  # its slot frees when it has
    assert running(pool, "d") and running(pool, "e") and not running(pool, "f")
    assert pool.position("f") == 0


def test_a_silent_queued_run_is_passed_over_but_keeps_its_place(pool):
    pool.submit("a", [CONFIG])
    pool.submit("gone", [OTHER])
    pool.submit("here", [CONFIG.replace(seed=2)])
    pool.clock.now = QUEUE_TIMEOUT + 1
    assert not running(pool, "here")  # "here" polls; "gone" does not
    assert pool.position("here") == 0  # "gone" is not counted ahead: a free slot passes it over
    pool.release("a")
    wait_for(lambda: running(pool, "here"), "the slot to go to the tab still open")
    assert not running(pool, "gone")  # back (a page that stalled): first in line again, no slot taken
    assert pool.position("gone") == 0
    pool.release("here")
    wait_for(lambda: running(pool, "gone"), "its turn")


def test_a_tab_silent_for_the_idle_timeout_is_reaped_and_its_run_stops_unless_others_watch(pool):
    shared = pool.submit("closed", [CONFIG]).runs[0]
    pool.submit("open", [CONFIG])
    pool.clock.now = IDLE_TIMEOUT + 1
    pool.get("open")
    assert pool.get("closed") is None and pool.watching(shared) == 1
    assert not shared.trainer.join(0.2)  # still training for the tab still open
    pool.clock.now = 2 * IDLE_TIMEOUT + 2
    pool.reap()  # the reaper's sweep: nobody polled
    assert pool.get("open") is None
    assert shared.trainer.join(30), "the reaped run's trainer did not stop"


def test_a_finished_run_is_opened_at_once_by_a_later_tab():
    pool = make_pool(max_running=1)
    try:
        run = pool.submit("early", [SHORT]).runs[0]
        assert run.trainer.join(WAIT)
        pool.get("early")  # the sweep notes the end
        later = pool.submit("later", [SHORT]).runs[0]
        assert later is run and later.done and later.snapshot().step == SHORT.steps
        assert pool.counts()["alive_trainers"] == 0  # no second trainer
    finally:
        pool.shutdown(timeout=30)


def test_a_step_from_nothing_is_a_private_run_that_waits_in_line_for_its_first_step(pool):
    pool.submit("a", [CONFIG])
    entry = pool.submit("b", [CONFIG], paused=True)
    run = entry.runs[0]
    assert run.controller == "b" and run.key != CONFIG.key()  # not the shared run of that config
    assert not running(pool, "b")
    pool.release("a")
    wait_for(lambda: running(pool, "b"), "the slot")
    trainer = run.trainer
    wait_for(lambda: (trainer.snapshot().status, trainer.snapshot().step) == ("paused", 1), "the first step")
    assert pool.submit("c", [CONFIG]).runs[0] is not run  # Start on that config does not attach to a private run


def test_a_fork_is_private_and_the_others_keep_watching_the_shared_run(pool):
    shared = pool.submit("a", [CONFIG]).runs[0]
    pool.submit("b", [CONFIG])
    wait_for(lambda: shared.snapshot().step > 20, "the shared run to train")
    entry = pool.fork("b", lr=0.05)  # b changes the learning rate: a private run from the shared state
    fork = entry.runs[0]
    assert fork is not shared and fork.controller == "b" and fork.queued  # one slot, held by the shared run
    assert pool.get("a").runs[0] is shared and pool.watching(shared) == 1
    pool.release("a")  # a leaves: the shared run stops, its slot goes to the fork once it has ended
    wait_for(lambda: running(pool, "b") and fork.snapshot().forked_at is not None, "the fork to start")
    snapshot = fork.snapshot()
    wait_for(lambda: fork.snapshot().lr_events, "the new rate")
    assert fork.snapshot().lr_events[0] == (snapshot.forked_at, 0.05) and snapshot.forked_at > 20
    assert pool.fork("b", step=True).runs[0] is fork  # its own run: changed in place, no second fork
    wait_for(lambda: fork.snapshot().status == "paused", "the Step")


def test_a_one_tab_run_yields_its_slot_after_its_turn_while_another_waits_and_continues_later():
    pool = make_pool(max_running=1, turn_seconds=40)

    def tick(now: float) -> None:
        pool.clock.now = now
        pool.get("a")
        pool.get("b")

    try:
        mine = pool.submit("a", [CONFIG]).runs[0]
        pool.submit("b", [OTHER])
        tick(30)
        assert pool.turn_left(mine) == 10  # the page says so before it happens
        tick(41)
        wait_for(lambda: running(pool, "b"), "the waiting run's turn")  # after a's run has really ended
        assert not running(pool, "a") and pool.position("a") == 0 and mine.resume is not None
        stopped_at = mine.snapshot().step
        tick(82)  # b's turn is over in its turn: a continues
        wait_for(lambda: running(pool, "a") and mine.snapshot().step > stopped_at, "a's next turn")
        assert mine.snapshot().forked_at is None  # the same run, continued: not a fork
    finally:
        pool.shutdown(timeout=30)


def test_a_run_the_class_watches_keeps_its_slot():
    pool = make_pool(max_running=1, turn_seconds=100)
    try:
        lesson = pool.submit("a", [CONFIG]).runs[0]
        pool.submit("b", [CONFIG])
        pool.submit("c", [OTHER])
        pool.clock.now = 500
        for owner in "abc":
            pool.get(owner)
        assert pool.turn_left(lesson) is None and lesson.trainer.alive and not lesson.yielding
    finally:
        pool.shutdown(timeout=30)


def test_every_config_is_shareable_in_processes():
    config = CONFIG.replace(norm="noisy-batchnorm")
    assert shareable(config, "process") == (True, "")
    assert shareable(config, "thread")[0]  # noisy BN's noise has its own generator


# --- the cap counts what runs (issue 17): real processes, real time --------------------------------

SLOW = RunConfig(depth=20, width=1024, batch_size=512, steps=200_000, eval_every=200_000, eval_size=100)
CAP = 2
GRACE = 3.0


def run_processes() -> int:
    """Live run processes of this test: children of the fork server this process started."""
    found = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            grandparent = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):  # ended while we looked
            continue
        found += comm == "bnviz-run" and state not in "ZX" and int(grandparent) == os.getpid()
    return found


def test_the_cap_counts_run_processes_while_start_and_reset_are_pressed_on_slow_runs():
    """Start and Reset again and again on runs whose steps take seconds: a stopped run ends only after
    its step, and holds its slot until then (or is killed after the grace period); never more run
    processes than the cap."""
    pool = RunPool(max_running=CAP, make_trainer=TrainerProcess, stop_grace=GRACE)
    seen, owners = [], ("a", "b", "c")
    try:
        for round_ in range(6):
            for i, owner in enumerate(owners):
                pool.submit(owner, [SLOW.replace(seed=round_ * 10 + i)])  # Start
            for _ in range(10):
                time.sleep(0.2)
                for owner in owners:
                    pool.get(owner)  # the pages' polls
                seen.append((run_processes(), pool.counts()["alive_trainers"]))
            for owner in owners:
                pool.release(owner)  # Reset
            seen.append((run_processes(), pool.counts()["alive_trainers"]))
        deadline = time.monotonic() + GRACE + 30
        while pool.counts()["alive_trainers"] and time.monotonic() < deadline:
            time.sleep(0.2)
            pool.reap()
            seen.append((run_processes(), pool.counts()["alive_trainers"]))
    finally:
        pool.shutdown(timeout=30)
    assert max(processes for processes, _ in seen) <= CAP, seen
    assert all(processes <= slots for processes, slots in seen), f"a process ran outside the pool's count: {seen}"
    assert max(processes for processes, _ in seen) == CAP  # the test did fill the slots
    assert seen[-1] == (0, 0)
