"""Tests for bnviz.probes: hooks that always come off, and rings that hold exactly the
nonlinearity's input, checked against a forward pass written out by hand.
"""

from dataclasses import fields

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnviz.config import RunConfig
from bnviz.model import build_model
from bnviz.percentiles import PERCENTILES
from bnviz.probes import ActivationProbe
from bnviz.stats import Reducer, StepStats

BATCH = 16


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as every trainer runs: on a busy machine, tiny ops split over
    several threads stall for tens of milliseconds waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_network(**changes):
    config = RunConfig(arch="mlp", depth=3, width=12, init="xavier-normal", **changes)
    return build_model(config), config


def probe_for(network, config) -> ActivationProbe:
    return ActivationProbe(network, config.activation, BATCH, (1, 28, 28))


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, 1, 28, 28, generator=generator), torch.randint(0, 10, (BATCH,), generator=generator)


def hook_counts(network) -> list[int]:
    return [len(module._forward_hooks) for module in network.modules()]


def drained(probe: ActivationProbe) -> StepStats:
    """All rows drained, as one StepStats (the probe may hand them over in several parts)."""
    parts = probe.drain()
    assert parts, "nothing was recorded"
    return StepStats(**{f.name: np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(StepStats)})


def manual_pre_activations(network, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of each block's nonlinearity, by calling its parts in the configured order."""
    h = x.flatten(1)  # (batch, 784)
    inputs = []
    with torch.no_grad():
        for block in network.blocks:
            z = block.layer(h)
            if block.norm is not None and block._parts.index(block.norm) < block._parts.index(block.activation):
                z = block.norm(z)
            inputs.append(z.clone())
            h = block.activation(z)
            if block.norm is not None and block._parts.index(block.norm) > block._parts.index(block.activation):
                h = block.norm(h)
    return inputs


def test_no_hooks_are_left_by_construction():
    network, config = small_network()
    probe_for(network, config)
    assert sum(hook_counts(network)) == 0


def test_hooks_are_removed_after_the_with_block():
    network, config = small_network()
    with probe_for(network, config) as probe:
        assert [len(block.activation._forward_hooks) for block in network.blocks] == [1, 1, 1]
    assert sum(hook_counts(network)) == 0
    probe.remove()  # twice is harmless
    probe.remove()
    assert sum(hook_counts(network)) == 0


def test_hooks_are_removed_when_the_block_raises():
    network, config = small_network()
    with pytest.raises(RuntimeError, match="boom"):
        with probe_for(network, config):
            network(batch(0)[0])
            raise RuntimeError("boom")
    assert sum(hook_counts(network)) == 0


@pytest.mark.parametrize("norm, position", [("none", "before"), ("batchnorm", "before"), ("batchnorm", "after")])
def test_the_ring_holds_exactly_the_activation_input(norm, position):
    network, config = small_network(norm=norm, norm_position=position, activation="sigmoid")
    network.train()
    probe = probe_for(network, config)
    x, y = batch(1)
    expected = manual_pre_activations(network, x)  # train-mode BN: batch statistics, so a repeat is identical
    with probe:
        loss = F.cross_entropy(network(x), y)
        loss.backward()
        probe.record_after_backward(step=1, loss=loss.item())
    stats = drained(probe)
    assert stats.hist_pre.shape[:2] == (1, 3)
    for index, (pre, unit) in enumerate(zip(expected, probe.units)):
        values = pre.double().numpy()  # (batch, width)
        assert stats.mean[0, index] == pytest.approx(values.mean(), rel=1e-6, abs=1e-7)
        assert stats.std[0, index] == pytest.approx(values.std(), rel=1e-5)
        np.testing.assert_allclose(stats.unit_percentiles[0, index], np.percentile(values[:, unit], PERCENTILES),
                                   atol=1e-6)
        assert stats.hist_pre[0, index].sum() == values.size
        # The same reduction of the hand-computed input gives the very same numbers.
        reference = Reducer(config.activation, 1).reduce(pre.unsqueeze(0), unit)
        for key in ("hist_pre", "mean", "std", "percentiles", "unit_percentiles", "saturation"):
            np.testing.assert_array_equal(getattr(stats, key)[0, index], reference[key][0], err_msg=key)


def test_steps_that_are_not_recorded_leave_no_trace():
    network, config = small_network(activation="tanh")
    probe = probe_for(network, config)
    recorded = []
    with probe:
        for step in range(1, 5):
            x, y = batch(step)
            probe.recording = step % 2 == 0
            loss = F.cross_entropy(network(x), y)
            network.zero_grad()
            loss.backward()
            if probe.recording:
                recorded.append(manual_pre_activations(network, x)[-1].double().numpy())
                probe.record_after_backward(step, loss.item())
    stats = drained(probe)
    np.testing.assert_array_equal(stats.steps, [2, 4])
    np.testing.assert_allclose(stats.mean[:, -1], [values.mean() for values in recorded], rtol=1e-6, atol=1e-7)


def test_drain_returns_one_row_per_recorded_step_with_the_gradient_norms():
    network, config = small_network(norm="batchnorm")
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    probe = probe_for(network, config)
    steps = 7
    expected_norms, expected_losses = [], []
    with probe:
        for step in range(1, steps + 1):
            x, y = batch(step)
            loss = F.cross_entropy(network(x), y)
            optimizer.zero_grad()
            loss.backward()
            expected_norms.append([torch.linalg.vector_norm(layer.weight.grad).item() for layer in network.weighted_layers()])
            expected_losses.append(loss.item())
            probe.record_after_backward(step, loss.item())
            optimizer.step()
    stats = drained(probe)
    np.testing.assert_array_equal(stats.steps, np.arange(1, steps + 1))
    np.testing.assert_array_equal(stats.loss, expected_losses)
    assert stats.grad_norm.shape == (steps, 3)
    np.testing.assert_allclose(stats.grad_norm, expected_norms, rtol=1e-6)
    for key in ("hist_pre", "hist_post", "mean", "std", "saturation", "nonfinite"):
        assert getattr(stats, key).shape[:2] == (steps, 3), key
    assert probe.drain() == []  # drained: nothing left


def test_a_full_ring_says_so():
    network, config = small_network(activation="relu")
    probe = probe_for(network, config)
    x, y = batch(0)
    with probe:
        for step in range(1, probe.ring_steps + 1):
            assert not probe.full
            loss = F.cross_entropy(network(x), y)
            network.zero_grad()
            loss.backward()
            probe.record_after_backward(step, loss.item())
        assert probe.full
        stats = drained(probe)
    assert len(stats.steps) == probe.ring_steps
    assert not probe.full


def test_layer_percentiles_of_a_collapsing_cnn_at_every_step():
    """The audit's case, in a real run: fastai-collapse without BN pushes much of its last conv
    layer below the bins. Every recorded step's layer percentiles are numpy's of the values the
    network really produced (float64, by a hook of our own) within one fine bin, and exact where
    they lie beyond the bins."""
    from bnviz.presets import get_preset
    from bnviz.stats import FINE_BINS, pre_range
    from bnviz.trainer import Trainer

    config = get_preset("fastai-collapse").config  # one epoch: 117 steps, the audit's step 115 among them
    steps = config.steps
    trainer = Trainer(config).start(paused=True)
    trainer.wait(lambda snapshot: bool(snapshot.layer_names))
    reference = []

    def exact(module, inputs, output):
        if module.training:  # not the held-out evaluation
            reference.append(np.percentile(inputs[0].detach().double().numpy().ravel(), PERCENTILES))

    hooks = [block.activation.register_forward_hook(exact) for block in trainer._network.blocks]
    try:
        trainer.resume()
        trainer.join()
    finally:
        for hook in hooks:
            hook.remove()
    snapshot = trainer.snapshot()
    assert snapshot.status == "finished", snapshot.message
    reference = np.array(reference).reshape(steps, len(hooks), 3)
    recorded = snapshot.column("percentiles")  # (steps, layers, 3): one column per step
    assert recorded.shape == reference.shape
    errors = np.abs(recorded - reference)
    half = pre_range(config.activation)
    assert errors.max() <= 2 * half / FINE_BINS + 1e-5
    beyond = np.abs(reference) > half
    assert beyond.any()  # the run does push percentiles beyond the bins
    assert errors[beyond].max() <= 1e-6 * np.abs(reference[beyond]).max()
