"""Tests for bnviz.trainer (and bnviz.landscape): runs reproduce, train exactly as plain torch
would, obey their controls, and end in a visible state whatever happens.

Every trainer a test starts is stopped and joined by the ``trainers`` fixture, so no thread
outlives its test. References are plain torch loops over the same model and batches.
"""

import copy
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnviz import landscape
from bnviz.config import RunConfig
from bnviz.data import BatchStream, load_dataset
from bnviz.model import StepNoise, build_model
from bnviz.optim import ONECYCLE_DIV, ONECYCLE_FINAL_DIV, ONECYCLE_WARMUP, onecycle_factor
from bnviz.snapshot import FINAL_STATES
from bnviz.trainer import Trainer

WAIT = 30.0  # seconds: generous for a loaded CI machine; a passing test waits far less
SMALL = RunConfig(dataset="synthetic", depth=2, width=16, batch_size=32, steps=60, eval_every=30, eval_size=200)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread for the reference loops, as the trainers use: on a busy machine,
    tiny ops split over several threads stall for tens of milliseconds waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trainers():
    """Start trainers through this; all of them are stopped and joined after the test."""
    started: list[Trainer] = []

    def start(config: RunConfig, paused: bool = False, **kwargs) -> Trainer:
        trainer = Trainer(config, **kwargs).start(paused=paused)
        started.append(trainer)
        return trainer

    yield start
    for trainer in started:
        trainer.stop()
    for trainer in started:
        assert trainer.join(WAIT), "a trainer thread did not end"


def wait_for(trainer: Trainer, condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        snapshot = trainer.snapshot()
        if condition(snapshot):
            return snapshot
        time.sleep(0.005)
    snapshot = trainer.snapshot()
    raise AssertionError(f"timed out waiting for {what}: status {snapshot.status!r}, step {snapshot.step}, "
                         f"message {snapshot.message!r}")


def finished(trainer: Trainer):
    assert trainer.join(WAIT), "the run did not end"
    return trainer.snapshot()


def stays(trainer: Trainer, seconds: float = 0.4):
    """The snapshot after a pause in which nothing should happen."""
    before = trainer.snapshot()
    time.sleep(seconds)
    after = trainer.snapshot()
    assert after.step == before.step, f"moved from step {before.step} to {after.step}"
    return after


def reference_losses(config: RunConfig, rates: list[float]) -> list[float]:
    """A plain torch loop: the config's model and batches, SGD with rates[k] at step k."""
    assert config.optimizer == "sgd" and config.norm in ("none", "batchnorm")
    data = load_dataset(config.dataset)
    network = build_model(config, data.input_shape, data.num_classes).train()
    optimizer = torch.optim.SGD(network.parameters(), lr=rates[0])
    stream = BatchStream(data, config.batch_size, config.seed)
    losses = []
    for rate in rates:
        x, y = stream.next_batch()
        loss = F.cross_entropy(network(x), y)
        optimizer.zero_grad()
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_same_seed_same_run(trainers):
    config = SMALL.replace(norm="noisy-batchnorm", steps=150)
    first, second = trainers(config), trainers(config)
    a, b = finished(first), finished(second)
    assert a.status == b.status == "finished"
    assert a.columns.keys() == b.columns.keys() and len(a.column("loss")) > 0
    # Every statistic to the bit, though the two trainers drained their rings at other steps
    # (each row is reduced on its own; the history's columns do not depend on the drains).
    for key in a.columns:
        np.testing.assert_array_equal(a.column(key), b.column(key), err_msg=key)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    np.testing.assert_array_equal(a.accuracy_steps, [30, 60, 90, 120, 150])


def test_a_different_seed_is_a_different_run(trainers):
    a = finished(trainers(SMALL.replace(steps=20)))
    b = finished(trainers(SMALL.replace(steps=20, seed=1)))
    assert not np.array_equal(a.column("loss"), b.column("loss"))


def test_paired_streams_draw_the_same_batches():
    data = load_dataset("synthetic")
    first, second = BatchStream(data, 1000, seed=5), BatchStream(data, 1000, seed=5)
    for _ in range(14):  # over two epochs of 6 batches
        (x1, y1), (x2, y2) = first.next_batch(), second.next_batch()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert first.epoch == second.epoch == 2


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_paired_runs_train_exactly_as_a_plain_torch_loop(trainers, norm):
    # Both runs of a pair are checked against the same reference loop, which builds the model
    # from the config and draws BatchStream's batches: so they share batches and initial weights.
    config = SMALL.replace(norm=norm, steps=12, eval_every=5)
    snapshot = finished(trainers(config))
    assert snapshot.status == "finished"
    np.testing.assert_array_equal(snapshot.column("steps"), np.arange(1, 13))
    np.testing.assert_allclose(snapshot.column("loss"), reference_losses(config, [config.lr] * 12), rtol=1e-6)


def test_paired_runs_start_from_identical_weights():
    data = load_dataset("synthetic")
    plain, normalized = (build_model(SMALL.paired_with(norm=norm), data.input_shape, data.num_classes)
                         for norm in ("none", "batchnorm"))
    for a, b in zip(plain.weighted_layers() + [plain.head], normalized.weighted_layers() + [normalized.head]):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_a_diverging_run_says_where_and_keeps_its_statistics(trainers):
    config = SMALL.replace(depth=3, width=32, activation="relu", lr=10.0, init_sigma=10.0, steps=50)
    snapshot = finished(trainers(config))
    assert snapshot.status == "diverged"
    assert "diverged at step" in snapshot.message
    step = int(snapshot.message.split("diverged at step ")[1].split(":")[0])
    assert step == snapshot.step < config.steps
    columns = snapshot.columns
    assert len(columns["steps"]) == step and columns["steps"][-1] == step  # the fatal step is recorded too
    assert not math.isfinite(columns["loss"][-1]) and np.isfinite(columns["loss"][:-1]).all()
    assert columns["nonfinite"][-1].sum() > 0  # the activations that blew up are counted...
    per_step = config.batch_size * config.width
    np.testing.assert_array_equal(columns["hist_pre"].sum(2) + columns["nonfinite"], per_step)  # ...none dropped


def test_pause_step_resume_stop(trainers):
    trainer = trainers(SMALL.replace(steps=100_000), paused=True)
    snapshot = wait_for(trainer, lambda s: s.status == "paused", "the paused start")
    assert snapshot.step == 0
    stays(trainer)

    trainer.step(3)
    wait_for(trainer, lambda s: s.step >= 3, "three steps")
    snapshot = stays(trainer)
    assert snapshot.step == 3 and snapshot.status == "paused"
    np.testing.assert_array_equal(snapshot.column("steps"), [1, 2, 3])  # a paused page shows every step

    trainer.resume()
    wait_for(trainer, lambda s: s.step > 20 and s.status == "running", "training to resume")
    trainer.pause()
    paused = wait_for(trainer, lambda s: s.status == "paused", "the pause")
    snapshot = stays(trainer)
    assert snapshot.step == paused.step

    trainer.step(3)
    wait_for(trainer, lambda s: s.step >= paused.step + 3, "three more steps")
    assert stays(trainer).step == paused.step + 3

    trainer.stop()
    snapshot = finished(trainer)
    assert snapshot.status == "stopped" and snapshot.done
    assert snapshot.message == f"stopped at step {paused.step + 3}"
    assert snapshot.status in FINAL_STATES and not trainer.alive


def test_a_large_step_request_is_honoured_in_full(trainers):
    trainer = trainers(SMALL.replace(steps=100_000), paused=True)
    wait_for(trainer, lambda s: s.status == "paused", "the paused start")
    trainer.step(300)  # more than a ring and more than one publishing interval
    wait_for(trainer, lambda s: s.step >= 300, "300 steps")
    snapshot = stays(trainer)
    assert snapshot.step == 300 and len(snapshot.column("steps")) == 300


def test_wait_returns_the_first_snapshot_that_satisfies_it_or_the_end(trainers):
    trainer = trainers(SMALL.replace(steps=100_000), paused=True)
    assert trainer.wait(lambda latest: latest.step >= 1, timeout=0.3).step == 0  # paused: only the timeout ends it
    trainer.step(40)
    snapshot = trainer.wait(lambda latest: latest.step >= 40, timeout=WAIT)
    assert snapshot.step == 40 and snapshot.status == "paused"
    trainer.stop()
    ended = trainer.wait(lambda latest: False, timeout=WAIT)  # an ended run does not keep a reader waiting
    assert ended.status == "stopped" and ended.version > snapshot.version


def test_set_lr_applies_from_the_next_step_and_is_marked(trainers):
    config = SMALL.replace(steps=100_000)
    trainer = trainers(config, paused=True)
    wait_for(trainer, lambda s: s.status == "paused", "the paused start")
    trainer.step(2)
    wait_for(trainer, lambda s: s.step >= 2, "two steps")
    trainer.set_lr(0.05)
    trainer.step(3)
    snapshot = wait_for(trainer, lambda s: s.step >= 5, "three steps at the new rate")
    assert snapshot.lr_events == ((2, 0.05),)
    assert snapshot.lr == 0.05
    expected = reference_losses(config, [0.5, 0.5, 0.05, 0.05, 0.05])
    np.testing.assert_allclose(snapshot.column("loss"), expected, rtol=1e-6)
    for bad in (0.0, 101.0, math.nan, math.inf, "0.1"):
        with pytest.raises(ValueError, match="lr must be between"):
            trainer.set_lr(bad)


def test_an_exception_in_the_thread_becomes_an_error_state(trainers, tmp_path):
    trainer = trainers(RunConfig(dataset="mnist", steps=10), data_dir=str(tmp_path / "no-such-folder"))
    snapshot = finished(trainer)
    assert snapshot.status == "error" and snapshot.done
    assert "missing IDX file" in snapshot.message
    assert snapshot.step == 0 and not trainer.alive


def test_onecycle_schedule_shape():
    assert onecycle_factor(0.0) == pytest.approx(1 / ONECYCLE_DIV)
    assert onecycle_factor(ONECYCLE_WARMUP) == pytest.approx(1.0)
    assert onecycle_factor(1.0) == pytest.approx(1 / ONECYCLE_FINAL_DIV)  # fit_one_cycle: lr_max / div_final
    progress = np.linspace(0, 1, 1001)
    factors = np.array([onecycle_factor(p) for p in progress])
    peak = int(np.argmax(factors))
    assert progress[peak] == pytest.approx(ONECYCLE_WARMUP, abs=1e-3)
    assert (np.diff(factors[:peak + 1]) >= 0).all() and (np.diff(factors[peak:]) <= 0).all()
    assert factors.min() > 0 and factors[-1] < 1e-4


def test_onecycle_rates_are_the_ones_used(trainers):
    config = SMALL.replace(schedule="onecycle", lr=0.4, steps=8)
    trainer = trainers(config, paused=True)
    snapshot = wait_for(trainer, lambda s: s.status == "paused", "the paused start")
    assert snapshot.lr == pytest.approx(0.4 / ONECYCLE_DIV)
    trainer.resume()
    snapshot = finished(trainer)
    rates = [0.4 * onecycle_factor(step / 8) for step in range(8)]
    np.testing.assert_allclose(snapshot.column("loss"), reference_losses(config, rates), rtol=1e-6)


def test_landscape_rows_are_recorded_and_do_not_disturb_training(trainers):
    config = SMALL.replace(norm="noisy-batchnorm", steps=20)
    probed = trainers(config.replace(landscape_every=5))
    plain = trainers(config)
    a, b = finished(probed), finished(plain)
    np.testing.assert_array_equal(a.landscape_steps, [5, 10, 15, 20])
    assert a.landscape.shape == (4, 3) and (a.landscape >= 0).all() and np.isfinite(a.landscape).all()
    assert len(b.landscape_steps) == 0
    # The probe restores parameters, BN statistics and noise generators: the runs are identical.
    np.testing.assert_array_equal(a.column("loss"), b.column("loss"))


def model_state(network) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in network.parameters()]
    return [t.detach().clone() for t in list(network.parameters()) + list(network.buffers())] + grads


@pytest.mark.parametrize("norm", ["none", "batchnorm", "noisy-batchnorm"])
def test_landscape_measure_restores_the_network_and_matches_a_direct_computation(norm):
    config = SMALL.replace(norm=norm, activation="relu", init="kaiming-normal")
    network = build_model(config).train()
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28, generator=generator), torch.randint(0, 10, (32,), generator=generator)
    F.cross_entropy(network(x), y).backward()
    reference_network = copy.deepcopy(network)  # copies the noise generators' states too
    for copied, original in zip(reference_network.parameters(), network.parameters()):
        copied.grad = original.grad.clone()
    before = model_state(network)
    noise_states = [m.generator.get_state() for m in network.modules() if isinstance(m, StepNoise)]
    lr = 0.1

    result = landscape.measure(network, x, y, lr)

    for a, b in zip(before, model_state(network)):
        assert torch.equal(a, b)
    for state, module in zip(noise_states, [m for m in network.modules() if isinstance(m, StepNoise)]):
        assert torch.equal(state, module.generator.get_state())

    params = list(reference_network.parameters())
    start = [p.detach().clone() for p in params]
    grad = [p.grad.detach().clone() for p in params]
    grad_norm = torch.sqrt(sum((g ** 2).sum() for g in grad)).item()
    losses, changes, smoothness = [], [], []
    for scale in landscape.STEP_SCALES:
        eta = lr * scale
        with torch.no_grad():
            for p, p0, g in zip(params, start, grad):
                p.copy_(p0 - eta * g)
        reference_network.zero_grad()
        loss = F.cross_entropy(reference_network(x), y)
        loss.backward()
        change = torch.sqrt(sum(((p.grad - g) ** 2).sum() for p, g in zip(params, grad))).item()
        losses.append(loss.item())
        changes.append(change)
        smoothness.append(change / (eta * grad_norm))
    expected = (max(losses) - min(losses), max(changes), max(smoothness))
    np.testing.assert_allclose(result, expected, rtol=1e-5)
    assert all(value >= 0 for value in result)
