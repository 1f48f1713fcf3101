"""The premise of shared runs: two independent trainers of one config record the same history.

A server trains a config once and lets every tab that asks for it watch (``bnviz.serve.pool``).
That is only honest if a second trainer would have recorded exactly what the first did. Here,
for every preset and every norm (noisy BN included), two trainers of one config train at the
same time as threads of one process, the harder case (they share torch's global generator and
its thread pool), and every recorded array must be bit-identical; then a pair in processes
(as the app runs them). ``shareable`` names the configs this cannot hold for, and those are
not shared.
"""

from __future__ import annotations

import numpy as np
import pytest

from bnviz.config import NORMS
from bnviz.presets import PRESETS
from bnviz.serve.process import TrainerProcess
from bnviz.serve.runs import shareable
from bnviz.trainer import Trainer

STEPS = 24  # a few rings' worth of recorded steps, two evaluations and, for the landscape preset, its probe
WAIT = 120.0


def short(config):
    return config.replace(steps=STEPS, eval_every=12, eval_size=200,
                          landscape_every=6 if config.landscape_every else 0)


def assert_same(a, b, where: str) -> None:
    assert a.status == b.status == "finished", (where, a.status, a.message, b.status, b.message)
    assert a.step == b.step and a.layer_names == b.layer_names, where
    assert set(a.columns) == set(b.columns), where
    for name in a.columns:
        assert np.array_equal(a.columns[name], b.columns[name], equal_nan=True), f"{where}: {name} differs"
    for name in ("accuracy_steps", "accuracy", "landscape_steps", "landscape", "pre_edges", "post_edges"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), f"{where}: {name} differs"
    assert a.lr_events == b.lr_events, where


def valid(name: str, norm: str) -> bool:
    """A preset and norm the engine accepts (instancenorm needs the CNN: an MLP config with it is refused)."""
    try:
        PRESETS[name].config.replace(norm=norm)
    except ValueError:
        return False
    return True


CASES = [(name, norm) for name in PRESETS for norm in NORMS if valid(name, norm)]


@pytest.mark.parametrize("name,norm", CASES)
def test_two_trainers_of_one_config_record_the_same_history(name, norm):
    config = short(PRESETS[name].config.replace(norm=norm))
    assert shareable(config, "thread")[0]
    first, second = Trainer(config).start(), Trainer(config).start()  # at the same time, one process
    assert first.join(WAIT) and second.join(WAIT)
    assert_same(first.snapshot(), second.snapshot(), f"{name} {norm}")


@pytest.mark.parametrize("name", ["ioffe-fig1", "noisy-bn"])
def test_a_run_in_a_process_records_what_one_in_a_thread_does(name):
    config = short(PRESETS[name].config.replace(norm=PRESETS[name].compare[-1]))
    runs = [TrainerProcess(config).start(), Trainer(config).start()]
    assert all(run.join(WAIT) for run in runs)
    assert_same(runs[0].snapshot(), runs[1].snapshot(), name)
