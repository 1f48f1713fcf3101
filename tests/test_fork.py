"""A run's state as bytes (bnviz.checkpoint): a fork continues exactly where its source was.

A viewer who changes a shared run (a live learning rate, a Step) gets a private run forked
from the shared run's state: weights, optimizer, data position and history so far. Forked
with nothing changed, it must record what the source records from there on, bit for bit;
that holds for a plain run, noisy BN (its own noise generator), momentum and Adam (optimizer
state), in a thread and through a run's process. With a new learning rate it records the
change at the fork's step, and its history up to the fork is the source's.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from bnviz.config import RunConfig
from bnviz.serve.process import TrainerProcess
from bnviz.trainer import Trainer

WAIT = 120.0
BASE = RunConfig(dataset="synthetic", depth=2, width=16, batch_size=32, steps=160, eval_every=40, eval_size=200)
FORK_AT = 70  # not a multiple of the evaluation cadence, inside a ring


def wait_step(trainer, step: int):
    deadline = time.monotonic() + WAIT
    while not (trainer.snapshot().step >= step and trainer.snapshot().status == "paused"):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # a run process has no wait(): its snapshots arrive down a pipe
    snapshot = trainer.snapshot()
    assert snapshot.step == step and snapshot.status == "paused", (snapshot.status, snapshot.step, snapshot.message)


def assert_same_history(a, b) -> None:
    assert a.status == b.status == "finished" and a.step == b.step
    for name in a.columns:
        assert np.array_equal(a.columns[name], b.columns[name], equal_nan=True), name
    for name in ("accuracy_steps", "accuracy", "landscape_steps", "landscape"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


@pytest.mark.parametrize("changes", [{}, {"norm": "noisy-batchnorm"}, {"optimizer": "momentum", "norm": "batchnorm"},
                                     {"optimizer": "adam", "schedule": "onecycle", "landscape_every": 20}])
def test_a_fork_with_nothing_changed_records_what_its_source_records(changes):
    config = BASE.replace(**changes)
    source = Trainer(config).start(paused=True)
    source.step(FORK_AT)
    wait_step(source, FORK_AT)
    state = source.checkpoint(WAIT)
    fork = Trainer(config, resume=state, fork=True).start()
    source.resume()
    assert source.join(WAIT) and fork.join(WAIT)
    assert_same_history(source.snapshot(), fork.snapshot())
    assert fork.snapshot().forked_at == FORK_AT and source.snapshot().forked_at is None


def test_a_fork_with_a_new_learning_rate_keeps_the_history_so_far_and_marks_the_change():
    source = Trainer(BASE).start(paused=True)
    source.step(FORK_AT)
    wait_step(source, FORK_AT)
    fork = Trainer(BASE, resume=source.checkpoint(WAIT), fork=True, lr=0.05).start()
    source.resume()
    assert source.join(WAIT) and fork.join(WAIT)
    mine, theirs = fork.snapshot(), source.snapshot()
    assert mine.lr_events == ((FORK_AT, 0.05),) and theirs.lr_events == ()
    before = mine.column("steps") <= FORK_AT
    assert before.sum() == FORK_AT
    assert np.array_equal(mine.column("loss")[before], theirs.column("loss")[before])
    assert not np.array_equal(mine.column("loss")[~before], theirs.column("loss")[~before])


def test_a_run_process_forks_and_ends_its_turn_with_its_state():
    source = TrainerProcess(BASE).start(paused=True)
    source.step(FORK_AT)
    wait_step(source, FORK_AT)
    state = source.checkpoint(WAIT)
    assert isinstance(state, bytes)
    fork = TrainerProcess(BASE, resume=state, fork=True).start()
    source.end_turn()  # the source stops with its state, to continue later
    assert source.join(WAIT) and source.snapshot().status == "stopped"
    rest = TrainerProcess(BASE, resume=source.checkpoint(0)).start()
    assert fork.join(WAIT) and rest.join(WAIT)
    alone = Trainer(BASE).start()
    assert alone.join(WAIT)
    assert_same_history(alone.snapshot(), fork.snapshot())
    assert_same_history(alone.snapshot(), rest.snapshot())
    assert fork.snapshot().forked_at == FORK_AT and rest.snapshot().forked_at is None
