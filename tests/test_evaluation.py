"""Tests for bnviz.evaluation and what the trainer records with it: held-out accuracy in
evaluation mode against a direct ``model.eval()`` evaluation, with batch statistics against
torch's BN in training mode, running statistics against torch's ``running_mean`` /
``running_var``, training accuracy from the training batches, and the re-estimation remedy."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnviz import evaluation
from bnviz.config import RunConfig
from bnviz.data import BatchStream, load_dataset
from bnviz.model import build_model
from bnviz.trainer import Trainer

STEPS = 120


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def plain_loop(config: RunConfig):
    """The trainer's run written out in plain torch: same model, data order and SGD steps.
    Returns the network, the dataset, the last training batch and the training batches' logits."""
    data = load_dataset(config.dataset)
    torch.manual_seed(config.seed)
    network = build_model(config, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=config.lr)
    stream = BatchStream(data, config.batch_size, config.seed)
    correct = seen = 0
    for _ in range(config.steps):
        x, y = stream.next_batch()
        logits = network(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        correct, seen = correct + int((logits.argmax(1) == y).sum()), seen + len(y)
    return network, data, x, correct / seen


def trained(config: RunConfig):
    trainer = Trainer(config).start()
    assert trainer.join(120)
    snapshot = trainer.snapshot()
    assert snapshot.status == "finished", snapshot.message
    return snapshot


@pytest.fixture(scope="module")
def bn_run():
    config = RunConfig(norm="batchnorm", activation="relu", init="kaiming-normal", lr=0.1, batch_size=32,
                       steps=STEPS, eval_every=STEPS, eval_size=500, bn_momentum=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return config, trained(config), plain_loop(config)
    finally:
        torch.set_num_threads(threads)


def test_eval_mode_accuracy_equals_a_direct_model_eval_evaluation(bn_run):
    config, snapshot, (network, data, _, _) = bn_run
    network.eval()
    with torch.no_grad():
        direct = int((network(data.test_x[:config.eval_size]).argmax(1) == data.test_y[:config.eval_size]).sum()) / config.eval_size
    assert snapshot.accuracy_steps.tolist() == [STEPS]
    assert snapshot.accuracy[-1] == pytest.approx(float(direct), abs=1e-12)


def test_batch_statistics_accuracy_equals_torch_bn_in_training_mode(bn_run):
    config, snapshot, (network, data, _, _) = bn_run
    network = copy.deepcopy(network).train()  # every BN on batch statistics (no dropout in this net)
    correct = 0
    size = config.eval_size // config.batch_size * config.batch_size
    with torch.no_grad():
        for start in range(0, size, config.batch_size):
            x, y = data.test_x[start:start + config.batch_size], data.test_y[start:start + config.batch_size]
            correct += int((network(x).argmax(1) == y).sum())
    assert snapshot.batch_accuracy[-1] == pytest.approx(correct / size, abs=1e-12)


def test_running_statistics_equal_torchs_running_mean_and_var(bn_run):
    config, snapshot, (network, _, last_x, _) = bn_run
    recorded = snapshot.running_stats[-1]  # (layers, 6)
    assert snapshot.running_steps.tolist() == [STEPS]
    caught = []
    hooks = [block.norm.register_forward_pre_hook(lambda m, i: caught.append(i[0])) for block in network.blocks]
    with torch.no_grad():
        network.train()(last_x)  # the latest batch's statistics, from the BN's own input
    for hook in hooks:
        hook.remove()
    fields = evaluation.RUNNING_FIELDS
    for layer, (block, values) in enumerate(zip(network.blocks, caught)):
        bn = block.norm
        assert isinstance(bn, nn.BatchNorm1d)
        # the reference loop ran one more forward in training mode just now: undo its update
        running_mean = (bn.running_mean - config.bn_momentum * values.mean(0)) / (1 - config.bn_momentum)
        running_var = (bn.running_var - config.bn_momentum * values.var(0)) / (1 - config.bn_momentum)
        expected = {"running_mean": running_mean.mean(), "running_var": running_var.mean(),
                    "batch_mean": values.mean(0).mean(), "batch_var": values.var(0, unbiased=False).mean()}
        for name, value in expected.items():
            assert recorded[layer, fields.index(name)] == pytest.approx(float(value), rel=1e-4, abs=1e-6), name


def test_training_accuracy_comes_from_the_training_batches(bn_run):
    _, snapshot, (_, _, _, train_accuracy) = bn_run
    assert snapshot.train_accuracy[-1] == pytest.approx(train_accuracy, abs=1e-12)


def test_measuring_changes_nothing():
    """Both evaluations leave the running statistics, the batch counters and the mode as they were."""
    config = RunConfig(norm="batchnorm", width=16, depth=2)
    network = build_model(config)
    x = torch.randn(64, 1, 28, 28)
    network.train()(x)
    before = copy.deepcopy(network.state_dict())
    y = torch.randint(0, 10, (64,))
    evaluation.eval_accuracy(network, x, y)
    evaluation.batch_stats_accuracy(network, x, y, 16)
    evaluation.running_vs_batch(network, x[:16])
    after = network.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert network.training


def test_nets_without_running_statistics_record_none():
    snapshot = trained(RunConfig(norm="layernorm", width=16, depth=2, steps=20, eval_every=10, eval_size=100))
    assert len(snapshot.accuracy) == 2 and len(snapshot.train_accuracy) == 2
    assert len(snapshot.batch_accuracy) == 0 and len(snapshot.running_steps) == 0


def test_reestimation_uses_training_statistics_and_restores_the_momentum():
    network = build_model(RunConfig(norm="batchnorm", width=16, depth=2, bn_momentum=0.001))
    train_x = torch.randn(1200, 1, 28, 28) * 2 + 1
    used = evaluation.reestimate(network, train_x, examples=1000)
    assert used == 1000 and network.training
    first = network.blocks[0]
    with torch.no_grad():
        inputs = first.layer(train_x[:1000].flatten(1))  # the first BN's input over those images
    torch.testing.assert_close(first.norm.running_mean, inputs.mean(0), rtol=1e-4, atol=1e-5)
    # torch's cumulative average of each pass's unbiased variance (two passes of 500 here)
    halves = inputs.view(2, 500, -1)
    torch.testing.assert_close(first.norm.running_var, halves.var(1).mean(0), rtol=1e-4, atol=1e-5)
    assert first.norm.momentum == 0.001


def test_reestimate_command_measures_its_effect_while_paused():
    config = RunConfig(norm="batchnorm", activation="relu", init="kaiming-normal", lr=0.1, steps=1000,
                       bn_momentum=0.001, eval_size=500)
    trainer = Trainer(config).start(paused=True)
    try:
        trainer.step(50)
        trainer.wait(lambda s: s.step >= 50, timeout=60)
        trainer.reestimate()
        snapshot = trainer.wait(lambda s: len(s.reestimates) == 1, timeout=60)
        step, before, after = snapshot.reestimates[0]
        assert step == 50 and snapshot.status == "paused"
        assert after > before + 0.05  # 50 steps at momentum 0.001: the running averages are still near 0 and 1
        assert not math.isnan(after)
    finally:
        trainer.stop()
        trainer.join(30)


def test_batch_statistics_undo_the_shifted_dataset_s_shift_and_running_averages_do_not():
    """Why bn-shift shows a gap: an affine change of every pixel moves and scales each first-layer
    pre-activation, which a BN before the first activation takes out with the batch's statistics
    and not with its running averages (estimated on unshifted training batches)."""
    from bnviz.data import SHIFT_OFFSET, SHIFT_SCALE

    torch.manual_seed(0)
    network = build_model(RunConfig(norm="batchnorm"))
    data = load_dataset("mnist")
    batch = data.test_x[:60]
    shifted = batch * SHIFT_SCALE + SHIFT_OFFSET
    network.train()
    for step in range(50):  # running averages of training batches
        network(data.train_x[60 * step:60 * (step + 1)])
    first = network.blocks[0]
    captured = []
    hook = first.norm.register_forward_hook(lambda module, args, out: captured.append(out.detach().clone()))
    try:
        with torch.no_grad():
            saved = copy.deepcopy(network.state_dict())
            network.train()
            network(batch), network(shifted)  # the batch's statistics
            network.load_state_dict(saved)
            network.eval()
            network(batch), network(shifted)  # the running averages
    finally:
        hook.remove()
    train_plain, train_shifted, eval_plain, eval_shifted = captured
    assert torch.allclose(train_plain, train_shifted, atol=1e-3)
    assert (eval_plain - eval_shifted).abs().mean() > 0.1
