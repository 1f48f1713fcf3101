"""Forward hooks that copy each hidden layer's pre-activation into a ring, K steps at a time.

A hook does one thing on the training hot path: copy the nonlinearity's input into the
next row of a preallocated ring (no allocation, no statistics). A full ring is handed to a
reducer thread, which turns its K steps into statistics in one batch (``bnviz.stats``),
while training goes on into a second ring: on a machine with a spare core the statistics
cost training almost nothing, and on one core they cost what they would inline. Post-
activations are not copied: they are the nonlinearity applied to what is in the ring.

``ActivationProbe`` is a context manager (as fastai's ``Hooks``): it always removes its
hooks on exit, also on an exception, and removing twice is harmless.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from bnviz.model import Network
from bnviz.stats import Reducer, StepStats

RING_ELEMENTS = 2_000_000  # floats per ring (8 MB, two rings): ~110 steps of the BN paper's MLP, ~1 of the CNN
MAX_RING_STEPS = 128  # reducing ~100 steps in one batch amortizes the per-call overhead


class Ring:
    """K steps of raw pre-activations, gradient norms and losses, filled row by row."""

    def __init__(self, steps: int, rows: int, sizes: list[int]):
        self.pre = [torch.empty(steps, rows, size) for size in sizes]  # per layer (K, rows, features)
        self.grad_norms = torch.empty(steps, len(sizes))  # (K, layers)
        self.losses = np.empty(steps)
        self.steps = np.empty(steps, dtype=np.int64)
        self.filled = 0


class ActivationProbe:
    """Records pre-activations, weight-gradient norms and losses of every hidden layer."""

    def __init__(self, network: Network, activation: str, batch_size: int, input_shape: tuple[int, ...]):
        self.network = network
        self.layers = network.weighted_layers()
        sizes = _pre_activation_sizes(network, input_shape)  # features per sample, per layer
        # A huge layer records the first `rows` samples of each batch, so a ring stays within budget.
        self.rows = max(1, min(batch_size, RING_ELEMENTS // sum(sizes)))
        self.ring_steps = max(1, min(MAX_RING_STEPS, RING_ELEMENTS // (self.rows * sum(sizes))))
        self.units = [_typical_unit(block, size) for block, size in zip(network.blocks, sizes)]
        self.reducer = Reducer(activation, self.ring_steps)
        self._active = Ring(self.ring_steps, self.rows, sizes)
        self._spare = Ring(self.ring_steps, self.rows, sizes)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bnviz-reducer")
        self._pending: Future | None = None  # the reduction of the spare ring, if under way
        self.recording = True  # the trainer turns it off on steps it does not record and for evaluation
        self._handles: list = []

    def __enter__(self) -> ActivationProbe:
        for index, block in enumerate(self.network.blocks):
            self._handles.append(block.activation.register_forward_hook(self._copier(index)))
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        """Take the hooks off and end the reducer thread; harmless to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._executor.shutdown(wait=False)

    def _copier(self, index: int):
        def copy_input(module, inputs, output):
            if self.recording:
                ring = self._active
                ring.pre[index][ring.filled].copy_(inputs[0].detach()[:self.rows].reshape(self.rows, -1))
        return copy_input

    def record_after_backward(self, step: int, loss: float) -> None:
        """Call once per recorded step, after backward: keeps loss and gradient norms, advances the row."""
        ring = self._active
        grads = [layer.weight.grad for layer in self.layers]
        torch.stack(torch._foreach_norm(grads), out=ring.grad_norms[ring.filled])
        ring.losses[ring.filled] = loss
        ring.steps[ring.filled] = step
        ring.filled += 1

    @property
    def full(self) -> bool:
        return self._active.filled == self.ring_steps

    def hand_off(self) -> list[StepStats]:
        """Send the active ring to the reducer and train on into the spare; returns stats already reduced."""
        done = self._finish_pending()
        if self._active.filled:
            self._active, self._spare = self._spare, self._active
            self._pending = self._executor.submit(self._reduce, self._spare)
        return done

    def ready(self) -> list[StepStats]:
        """Stats whose reduction has finished, without waiting."""
        if self._pending is not None and self._pending.done():
            return self._finish_pending()
        return []

    def drain(self) -> list[StepStats]:
        """Everything recorded so far, reduced: waits for the reducer (end of run, pause)."""
        done = self._finish_pending()
        if self._active.filled:
            done.append(self._reduce(self._active))
        return done

    def _finish_pending(self) -> list[StepStats]:
        if self._pending is None:
            return []
        future, self._pending = self._pending, None
        return [future.result()]  # an exception in the reducer surfaces here, in the trainer

    def _reduce(self, ring: Ring) -> StepStats:
        count = ring.filled
        per_layer = [self.reducer.reduce(pre[:count], unit) for pre, unit in zip(ring.pre, self.units)]

        def stacked(key):  # (K, L, ...) from L arrays of (K, ...)
            return np.stack([layer[key] for layer in per_layer], axis=1)

        stats = StepStats(
            steps=ring.steps[:count].copy(),
            loss=ring.losses[:count].copy(),
            hist_pre=stacked("hist_pre"),
            hist_post=stacked("hist_post"),
            mean=stacked("mean"),
            std=stacked("std"),
            percentiles=stacked("percentiles"),
            unit_percentiles=stacked("unit_percentiles"),
            saturation=stacked("saturation"),
            nonfinite=stacked("nonfinite"),
            grad_norm=ring.grad_norms[:count].double().numpy().copy(),
        )
        ring.filled = 0
        return stats


def _pre_activation_sizes(network: Network, input_shape) -> list[int]:
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
