"""RunPool with a hand-moved clock: the cap, the queue's order, reaping, and passing over a silent queued owner.

Trainers are real but start paused (after the one step a paused submission takes): each
builds its network and waits, so a test costs almost no training. Every pool is shut down (trainers stopped and joined) after its test.
"""

from __future__ import annotations

import time

import pytest

from bnviz.config import RunConfig
from bnviz.serve.pool import RunPool

CONFIG = RunConfig(steps=1000)
IDLE_TIMEOUT = 60.0
QUEUE_TIMEOUT = 5.0


class Clock:
    """The pool's time, moved by the test."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pool():
    clock = Clock()
    made = RunPool(max_running=1, idle_timeout=IDLE_TIMEOUT, clock=clock, queue_timeout=QUEUE_TIMEOUT)
    made.clock = clock  # for the test to move
    yield made
    made.shutdown(timeout=30)
    assert made.counts()["owners"] == 0


def running(pool: RunPool, owner: str) -> bool:
    entry = pool.get(owner)  # also a sign of life, as the page's poll is
    return entry is not None and entry.running


def test_the_cap_holds_and_the_queue_is_served_in_order(pool):
    for owner in ("a", "b", "c"):
        pool.submit(owner, [CONFIG], paused=True)
    assert running(pool, "a") and not running(pool, "b") and not running(pool, "c")
    assert (pool.position("b"), pool.position("c")) == (0, 1)
    pool.release("a")
    assert running(pool, "b") and not running(pool, "c")
    assert pool.position("c") == 0
    assert pool.counts() == {"owners": 2, "running_owners": 1, "queued_owners": 1, "trainers": 1,
                             "alive_trainers": 1}


def test_a_silent_queued_owner_is_passed_over_but_keeps_its_place(pool):
    for owner in ("a", "gone", "here"):
        pool.submit(owner, [CONFIG], paused=True)
    pool.clock.now = QUEUE_TIMEOUT + 1
    assert not running(pool, "here")  # "here" polls; "gone" does not
    assert pool.position("here") == 0  # "gone" is not counted ahead: a free slot passes it over
    pool.release("a")  # a slot frees: "gone" has been silent for longer than the queue timeout
    assert running(pool, "here")
    assert pool.counts()["running_owners"] == 1
    assert not running(pool, "gone")  # back (a page that stalled): first in line again, no slot taken
    assert pool.position("gone") == 0
    pool.release("here")
    assert running(pool, "gone")


def test_an_owner_silent_for_the_idle_timeout_is_reaped_and_its_slot_goes_on(pool):
    pool.submit("closed", [CONFIG], paused=True)
    pool.submit("open", [CONFIG], paused=True)
    trainer = pool.get("closed").trainers[0]
    pool.clock.now = IDLE_TIMEOUT / 2
    pool.get("open")
    pool.clock.now = IDLE_TIMEOUT + 1
    pool.reap()  # the reaper thread's sweep
    assert pool.get("closed") is None
    assert trainer.join(30), "the reaped run's trainer did not stop"
    assert running(pool, "open")


def test_a_step_from_nothing_that_waited_in_line_takes_its_first_step_when_admitted(pool):
    """Step pressed while every slot is busy: the run starts when a slot frees, paused after one step."""
    pool.submit("a", [CONFIG], paused=True)
    pool.submit("b", [CONFIG], paused=True)
    assert not running(pool, "b")
    pool.release("a")
    assert running(pool, "b")
    trainer = pool.get("b").trainers[0]
    deadline = time.monotonic() + 30
    while not (trainer.snapshot().status == "paused" and trainer.snapshot().step == 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (trainer.snapshot().status, trainer.snapshot().step) == ("paused", 1)
