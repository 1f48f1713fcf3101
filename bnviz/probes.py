"""Forward hooks that copy each hidden layer's pre-activation into a ring, K steps at a time.

A hook does one thing on the training hot path: copy the nonlinearity's input into row
``slot`` of a preallocated ring (no allocation, no statistics). When the ring is full the
trainer calls ``drain()``, which reduces all K steps in one batch (``bnviz.stats``). Post-
activations are not copied: they are the nonlinearity applied to what is in the ring.

``ActivationProbe`` is a context manager (as fastai's ``Hooks``): it always removes its
hooks on exit, also on an exception, and removing twice is harmless.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bnviz.model import Network
from bnviz.stats import Reducer, StepStats

RING_ELEMENTS = 4_000_000  # floats held per probe (16 MB): ~200 steps of the BN paper's MLP, ~2 of the CNN
MAX_RING_STEPS = 128  # reducing ~100 steps in one batch amortizes the per-call overhead


class ActivationProbe:
    """Records pre-activations, weight-gradient norms and losses of every hidden layer."""

    def __init__(self, network: Network, activation: str, batch_size: int, input_shape: tuple[int, ...]):
        self.network = network
        self.layers = network.weighted_layers()
        sizes = _pre_activation_sizes(network, batch_size, input_shape)  # features per layer
        per_step = batch_size * sum(sizes)
        self.ring_steps = max(1, min(MAX_RING_STEPS, RING_ELEMENTS // per_step))
        self.rings = [torch.empty(self.ring_steps, batch_size, size) for size in sizes]  # (K, batch, features)
        self.units = [_typical_unit(block, size) for block, size in zip(network.blocks, sizes)]
        self.grad_norms = torch.empty(self.ring_steps, len(sizes))  # (K, layers)
        self.losses = np.empty(self.ring_steps)
        self.steps = np.empty(self.ring_steps, dtype=np.int64)
        self.reducer = Reducer(activation, self.ring_steps)
        self.filled = 0
        self.recording = True  # the trainer turns it off on steps it does not record and for evaluation
        self._handles: list = []

    def __enter__(self) -> ActivationProbe:
        for block, ring in zip(self.network.blocks, self.rings):
            self._handles.append(block.activation.register_forward_hook(self._copier(ring)))
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _copier(self, ring: torch.Tensor):
        def copy_input(module, inputs, output):
            if self.recording:
                ring[self.filled].copy_(inputs[0].detach().reshape(ring.shape[1], -1))
        return copy_input

    def record_after_backward(self, step: int, loss: float) -> None:
        """Call once per recorded step, after backward: keeps loss and gradient norms, advances the slot."""
        grads = [layer.weight.grad for layer in self.layers]
        torch.stack(torch._foreach_norm(grads), out=self.grad_norms[self.filled])
        self.losses[self.filled] = loss
        self.steps[self.filled] = step
        self.filled += 1

    @property
    def full(self) -> bool:
        return self.filled == self.ring_steps

    def drain(self) -> StepStats | None:
        """Statistics of the steps recorded since the last drain, then an empty ring."""
        count = self.filled
        if count == 0:
            return None
        per_layer = [self.reducer.reduce(ring[:count], unit) for ring, unit in zip(self.rings, self.units)]
        self.filled = 0

        def stacked(key):  # (K, L, ...) from L arrays of (K, ...)
            return np.stack([layer[key] for layer in per_layer], axis=1)

        return StepStats(
            steps=self.steps[:count].copy(),
            loss=self.losses[:count].copy(),
            hist_pre=stacked("hist_pre"),
            hist_post=stacked("hist_post"),
            mean=stacked("mean"),
            std=stacked("std"),
            percentiles=stacked("percentiles"),
            unit_percentiles=stacked("unit_percentiles"),
            saturation=stacked("saturation"),
            nonfinite=stacked("nonfinite"),
            grad_norm=self.grad_norms[:count].double().numpy().copy(),
        )


def _pre_activation_sizes(network: Network, batch_size: int, input_shape) -> list[int]:
    """Features per sample at each nonlinearity, found by one forward pass on zeros."""
    sizes: list[int] = []
    hooks = [block.activation.register_forward_hook(lambda m, i, o: sizes.append(i[0][0].numel()))
             for block in network.blocks]
    try:
        was_training = network.training
        network.eval()  # eval: BN uses its running stats, so no state changes
        with torch.no_grad():
            network(torch.zeros(2, *input_shape))
        network.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def _typical_unit(block, size: int) -> int:
    """A fixed unit to follow: the middle one of an MLP layer; for a conv layer, channel 0 at the centre pixel."""
    layer = block.layer
    if isinstance(layer, torch.nn.Conv2d):
        pixels = size // layer.out_channels
        side = math.isqrt(pixels)
        return (side // 2) * side + side // 2
    return size // 2
