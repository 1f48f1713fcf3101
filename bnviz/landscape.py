"""Santurkar et al. (2018), §3.2: how smooth the loss is along the gradient, measured in place.

At parameters theta with gradient g on the current batch, step to theta - eta * g for a few
step sizes eta and record:
1. loss range: max minus min of the loss over those points;
2. gradient predictiveness: the largest ||grad L(theta - eta g) - g||;
3. effective beta-smoothness: the largest ||grad L(theta - eta g) - g|| / ||eta g||.
The network's parameters, BN running statistics and noise generators are restored exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bnviz.model import Network, StepNoise

STEP_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # eta as multiples of the learning rate: the paper sweeps a range around it


def measure(network: Network, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[float, float, float]:
    """(loss range, gradient predictiveness, beta-smoothness); expects .grad filled for this batch."""
    params = [p for p in network.parameters() if p.grad is not None]
    start = [p.detach().clone() for p in params]
    grad = [p.grad.detach().clone() for p in params]
    buffers = [b.detach().clone() for b in network.buffers()]
    generators = [m.generator.get_state() for m in network.modules() if isinstance(m, StepNoise)]
    grad_norm = torch.sqrt(sum((g * g).sum() for g in grad))
    losses, changes, smoothness = [], [], []
    try:
        for scale in STEP_SCALES:
            eta = lr * scale
            with torch.no_grad():
                for p, p0, g in zip(params, start, grad):
                    p.copy_(p0 - eta * g)
            network.zero_grad(set_to_none=True)
            loss = F.cross_entropy(network(x), y)
            loss.backward()
            change = torch.sqrt(sum(((p.grad - g) ** 2).sum() for p, g in zip(params, grad)))
            losses.append(loss.item())
            changes.append(change.item())
            smoothness.append((change / (eta * grad_norm).clamp_min(1e-12)).item())
    finally:
        with torch.no_grad():
            for p, p0, g in zip(params, start, grad):
                p.copy_(p0)
                p.grad = g
            for b, b0 in zip(network.buffers(), buffers):
                b.copy_(b0)
        noisy = [m for m in network.modules() if isinstance(m, StepNoise)]
        for module, state in zip(noisy, generators):
            module.generator.set_state(state)
    return max(losses) - min(losses), max(changes), max(smoothness)
