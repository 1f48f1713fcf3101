"""Tests for bnviz.optim: "fastai-adam" and the 1cycle schedule are fastai's, written out again
here from fastai's source (fastai/optimizer.py, fastai/callback/schedule.py) in plain torch."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnviz.config import RunConfig
from bnviz.data import BatchStream, load_dataset
from bnviz.model import build_model
from bnviz.optim import FASTAI_WEIGHT_DECAY, ONECYCLE_FINAL_DIV, build_optimizer, onecycle_factor, onecycle_momentum, set_momentum
from bnviz.trainer import Trainer

SMALL = RunConfig(dataset="synthetic", depth=2, width=16, batch_size=32, steps=40, eval_every=40, eval_size=200,
                  norm="batchnorm", optimizer="fastai-adam", schedule="onecycle", lr=0.01, init="kaiming-normal",
                  activation="relu")


def fastai_cos(start, end, pos):  # fastai's sched_cos
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def fastai_one_cycle(lr_max, pos, div=25.0, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95)):
    """(lr, mom) of fit_one_cycle at pos: combined_cos(pct_start, ...) for both."""
    if pos < pct_start:
        t = pos / pct_start
        return fastai_cos(lr_max / div, lr_max, t), fastai_cos(moms[0], moms[1], t)
    t = (pos - pct_start) / (1 - pct_start)
    return fastai_cos(lr_max, lr_max / div_final, t), fastai_cos(moms[1], moms[2], t)


class FastaiAdam:
    """fastai's Adam(mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01, decouple_wd=True), callbacks in
    fastai's order: weight_decay, average_grad(dampening=True), average_sqr_grad, step_stat, adam_step;
    no weight decay for biases and BN parameters (Learner's wd_bn_bias=False)."""

    def __init__(self, network):
        self.params = list(network.parameters())
        no_wd = {id(m.bias) for m in network.modules() if getattr(m, "bias", None) is not None}
        no_wd |= {id(p) for m in network.modules() if isinstance(m, torch.nn.BatchNorm1d) for p in m.parameters()}
        self.do_wd = [id(p) not in no_wd for p in self.params]
        self.state = [dict(grad_avg=torch.zeros_like(p), sqr_avg=torch.zeros_like(p), step=0) for p in self.params]

    @torch.no_grad()
    def step(self, lr, mom, sqr_mom=0.99, eps=1e-5, wd=0.01):
        for p, do_wd, state in zip(self.params, self.do_wd, self.state):
            if do_wd:
                p.mul_(1 - lr * wd)
            state["grad_avg"].mul_(mom).add_(p.grad, alpha=1 - mom)
            state["sqr_avg"].mul_(sqr_mom).addcmul_(p.grad, p.grad, value=1 - sqr_mom)
            state["step"] += 1
            debias1 = (1 - mom) * (1 - mom ** state["step"]) / (1 - mom)
            debias2 = (1 - sqr_mom) * (1 - sqr_mom ** state["step"]) / (1 - sqr_mom)
            p.addcdiv_(state["grad_avg"], (state["sqr_avg"] / debias2).sqrt() + eps, value=-lr / debias1)


def test_onecycle_rate_and_momentum_are_fit_one_cycle():
    for pos in np.linspace(0, 1, 101):
        lr, mom = fastai_one_cycle(1.0, pos)
        assert onecycle_factor(pos) == pytest.approx(lr, rel=1e-12)
        assert onecycle_momentum(pos) == pytest.approx(mom, rel=1e-12)
    assert onecycle_factor(1.0) == pytest.approx(1 / ONECYCLE_FINAL_DIV)  # lr_max / div_final, not lr_max / div / div_final
    assert onecycle_momentum(0.0) == pytest.approx(0.95) and onecycle_momentum(0.25) == pytest.approx(0.85)


def test_fastai_adam_exempts_biases_and_norm_parameters_from_weight_decay():
    network = build_model(SMALL)
    optimizer = build_optimizer(SMALL, network)
    decayed, exempt = optimizer.param_groups
    assert decayed["weight_decay"] == FASTAI_WEIGHT_DECAY and exempt["weight_decay"] == 0.0
    weights = {id(block.layer.weight) for block in network.blocks} | {id(network.head.weight)}
    assert {id(p) for p in decayed["params"]} == weights
    assert len(exempt["params"]) == len(list(network.parameters())) - len(weights)  # biases, BN weights and shifts


def test_set_momentum_moves_beta1_or_sgd_momentum_only():
    network = build_model(SMALL)
    adam = build_optimizer(SMALL, network)
    set_momentum(adam, 0.85)
    assert all(group["betas"] == (0.85, 0.99) for group in adam.param_groups)
    plain = build_optimizer(SMALL.replace(optimizer="sgd"), network)
    set_momentum(plain, 0.85)
    assert plain.param_groups[0]["momentum"] == 0  # plain SGD stays plain
    heavy = build_optimizer(SMALL.replace(optimizer="momentum"), network)
    set_momentum(heavy, 0.85)
    assert heavy.param_groups[0]["momentum"] == 0.85


def test_a_fastai_adam_run_follows_fastai_step_by_step():
    """The Trainer's losses are those of a loop with fastai's Adam and fit_one_cycle written out by hand."""
    torch.set_num_threads(1)
    trainer = Trainer(SMALL).start()
    assert trainer.join(60)
    snapshot = trainer.snapshot()
    assert snapshot.status == "finished", snapshot.message
    data = load_dataset(SMALL.dataset)
    network = build_model(SMALL, data.input_shape, data.num_classes).train()
    optimizer = FastaiAdam(network)
    stream = BatchStream(data, SMALL.batch_size, SMALL.seed)
    losses = []
    for step in range(SMALL.steps):
        x, y = stream.next_batch()
        loss = F.cross_entropy(network(x), y)
        network.zero_grad()
        loss.backward()
        optimizer.step(*fastai_one_cycle(SMALL.lr, step / SMALL.steps))
        losses.append(loss.item())
    np.testing.assert_allclose(snapshot.column("loss"), losses, rtol=2e-4)
