"""The optimizers a RunConfig names, and fastai's 1cycle schedule of the rate and the momentum.

- ``sgd``; ``momentum`` (SGD with momentum 0.9); ``adam`` (torch's defaults: betas 0.9 and
  0.999, eps 1e-8, no weight decay).
- ``fastai-adam``: the optimizer the fastai book's ``fit_one_cycle`` trains with, fastai's
  default ``Adam`` (fastai/optimizer.py): betas 0.9 and 0.99 (``mom``, ``sqr_mom``), eps 1e-5
  added after the square root, weight decay 0.01 *decoupled* (the weights shrink by
  ``lr * wd`` before the Adam step, ``decouple_wd=True``, which is what torch's AdamW does)
  and, as fastai's Learner does by default (``wd_bn_bias=False``), none on biases or on the
  parameters of normalization layers. Its debiasing uses the current beta1, as torch's does.
- schedule ``onecycle``: fastai's ``fit_one_cycle`` (fastai/callback/schedule.py): over the
  first quarter the rate rises by a cosine from lr/25 to lr, then falls by a cosine to
  lr/1e5 (``div_final`` divides the peak); the momentum of any optimizer that has one (beta1
  for Adam) moves the other way, 0.95 -> 0.85 -> 0.95 (``moms``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnviz.config import RunConfig

MOMENTUM = 0.9  # for optimizer "momentum" (and beta1 of the Adams) when nothing schedules it
ONECYCLE_WARMUP = 0.25  # fit_one_cycle's pct_start
ONECYCLE_DIV = 25.0  # the rate starts at lr / 25 (div)
ONECYCLE_FINAL_DIV = 1e5  # and ends at lr / 1e5 (div_final)
ONECYCLE_MOMENTUM = (0.95, 0.85)  # fit_one_cycle's moms (0.95, 0.85, 0.95): high, low at the peak rate, high again
FASTAI_BETA2 = 0.99  # fastai Adam's sqr_mom
FASTAI_EPS = 1e-5  # fastai Adam's eps
FASTAI_WEIGHT_DECAY = 0.01  # fastai Adam's wd, decoupled
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)  # no weight decay (fastai)


def build_optimizer(config: RunConfig, network: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(network.parameters(), lr=config.lr)
    if config.optimizer == "fastai-adam":
        decayed, exempt = _weight_decay_groups(network)
        return torch.optim.AdamW([{"params": decayed}, {"params": exempt, "weight_decay": 0.0}], lr=config.lr,
                                 betas=(MOMENTUM, FASTAI_BETA2), eps=FASTAI_EPS, weight_decay=FASTAI_WEIGHT_DECAY)
    momentum = MOMENTUM if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(network.parameters(), lr=config.lr, momentum=momentum)


def _weight_decay_groups(network: nn.Module) -> tuple[list, list]:
    """(weights to decay, the rest): fastai exempts every bias and every normalization layer's parameters."""
    exempt = set()
    for module in network.modules():
        if isinstance(module, NORM_LAYERS):
            exempt.update(id(p) for p in module.parameters(recurse=False))
        elif isinstance(getattr(module, "bias", None), nn.Parameter):
            exempt.add(id(module.bias))
    parameters = list(network.parameters())
    return [p for p in parameters if id(p) not in exempt], [p for p in parameters if id(p) in exempt]


def _cosine(start: float, end: float, t: float) -> float:
    """fastai's SchedCos: from ``start`` at t = 0 to ``end`` at t = 1."""
    return start + (1 + math.cos(math.pi * (1 - t))) * (end - start) / 2


def onecycle_factor(progress: float) -> float:
    """The rate over lr at ``progress`` (step / steps): 1/25 -> 1 over the first quarter -> 1/1e5."""
    if progress < ONECYCLE_WARMUP:
        return _cosine(1 / ONECYCLE_DIV, 1.0, progress / ONECYCLE_WARMUP)
    return _cosine(1.0, 1 / ONECYCLE_FINAL_DIV, (progress - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP))


def onecycle_momentum(progress: float) -> float:
    """The momentum (beta1) at ``progress``: 0.95 -> 0.85 over the first quarter -> 0.95."""
    high, low = ONECYCLE_MOMENTUM
    if progress < ONECYCLE_WARMUP:
        return _cosine(high, low, progress / ONECYCLE_WARMUP)
    return _cosine(low, high, (progress - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP))


def set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Beta1 of an Adam, or the momentum of an SGD that has one (plain SGD stays plain)."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif group.get("momentum"):
            group["momentum"] = momentum
