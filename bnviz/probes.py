"""Forward hooks that catch each hidden layer's pre-activation; a ring keeps K steps of them.

A hook does one thing on the training hot path: keep a reference to the nonlinearity's
input (no copy, no statistics). After backward the step's tensors are kept as they are;
when the ring is reduced, one ``torch.stack`` per layer copies its K steps into a
preallocated ring: a copy per layer and step inside the hook costs more in dispatch than
one stack of K steps. The trainer turns the ring into statistics in one batch
(``bnviz.stats``) on its own thread, at each publish or when the ring is full. A separate
reducer thread would only move that work to the other core, not shrink it, and a class on a
shared server has no idle core: inline, a run is one thread, which a shared server counts
(README, "Figures", has the measurements). Post-activations are not copied: they are the
nonlinearity applied to what is in the ring.

``ActivationProbe`` is a context manager (as fastai's ``Hooks``): it always removes its
hooks on exit, also on an exception, and removing twice is harmless.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bnviz.model import Network
from bnviz.stats import Reducer, StepStats

RING_ELEMENTS = 2_000_000  # floats per ring (8 MB): ~110 steps of the BN paper's MLP, ~1 of the CNN
MAX_RING_STEPS = 128  # reducing ~100 steps in one batch amortizes the per-call overhead


class Ring:
    """K steps of raw pre-activations, gradient norms and losses, filled row by row."""

    def __init__(self, steps: int, rows: int, shapes: list[tuple[int, ...]]):
        self.pre = [torch.empty(steps, rows, math.prod(shape)) for shape in shapes]  # per layer (K, rows, features)
        self.shapes = shapes  # of one sample, per layer
        # Until the ring is reduced, each step's tensors as caught, per step, per layer: one stack
        # per layer then fills `pre` (a copy per layer and step costs more, in dispatch).
        self.caught: list[list[torch.Tensor]] = []
        self.grad_norms: list[list[torch.Tensor]] = []  # 0-d, per step, per layer
        self.losses = np.empty(steps)
        self.steps = np.empty(steps, dtype=np.int64)
        self.filled = 0


class ActivationProbe:
    """Records pre-activations, weight-gradient norms and losses of every hidden layer."""

    def __init__(self, network: Network, activation: str, batch_size: int, input_shape: tuple[int, ...]):
        self.network = network
        self.layers = network.weighted_layers()
        self._weights = [layer.weight for layer in self.layers]  # Module attribute lookups, saved every step
        shapes = _pre_activation_shapes(network, input_shape)  # per sample, per layer
        sizes = [math.prod(shape) for shape in shapes]
        # A huge layer records the first `rows` samples of each batch, so a ring stays within budget.
        self.rows = max(1, min(batch_size, RING_ELEMENTS // sum(sizes)))
        self.ring_steps = max(1, min(MAX_RING_STEPS, RING_ELEMENTS // (self.rows * sum(sizes))))
        self.units = [_typical_unit(block, size) for block, size in zip(network.blocks, sizes)]
        self.reducer = Reducer(activation, self.ring_steps, len(shapes))
        self._ring = Ring(self.ring_steps, self.rows, shapes)
        self._caught: list[torch.Tensor | None] = [None] * len(shapes)  # this step's pre-activations
        self.recording = True  # the trainer turns it off on steps it does not record and for evaluation
        self._handles: list = []

    def __enter__(self) -> ActivationProbe:
        for index, block in enumerate(self.network.blocks):
            self._handles.append(block.activation.register_forward_hook(self._catcher(index)))
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        """Take the hooks off; harmless to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._caught[:] = [None] * len(self._caught)

    def _catcher(self, index: int):
        caught = self._caught

        def catch_input(module, inputs, output):
            if self.recording:
                caught[index] = inputs[0]
        return catch_input

    def record_after_backward(self, step: int, loss: float) -> None:
        """Call once per recorded step, after backward and before the optimizer step: keeps the
        caught pre-activations, loss and gradient norms for the ring and advances its row."""
        ring = self._ring
        caught = self._caught
        if caught[0].shape[0] == self.rows:
            ring.caught.append(caught.copy())
        else:  # a batch larger than the ring's rows: its first `rows` samples
            ring.caught.append([values[:self.rows] for values in caught])
        caught[:] = [None] * len(caught)  # the hooks' list: ready for the next step
        ring.grad_norms.append(torch._foreach_norm([weight.grad for weight in self._weights]))
        ring.losses[ring.filled] = loss
        ring.steps[ring.filled] = step
        ring.filled += 1

    @property
    def full(self) -> bool:
        return self._ring.filled == self.ring_steps

    def drain(self) -> list[StepStats]:
        """The steps recorded since the last drain, reduced to statistics (none: an empty list)."""
        if not self._ring.filled:
            return []
        return [self._reduce(self._ring)]

    def _reduce(self, ring: Ring) -> StepStats:
        count = ring.filled
        with torch.no_grad():  # the caught tensors belong to autograd graphs (already run backward)
            for layer, (pre, shape) in enumerate(zip(ring.pre, ring.shapes)):
                torch.stack([step[layer] for step in ring.caught], out=pre[:count].view(count, self.rows, *shape))
        ring.caught.clear()
        stats = StepStats(
            steps=ring.steps[:count].copy(),
            loss=ring.losses[:count].copy(),
            **self.reducer.reduce_layers([pre[:count] for pre in ring.pre], self.units),
            grad_norm=torch.stack([norm for norms in ring.grad_norms for norm in norms]).view(count, -1).double().numpy(),
        )
        ring.filled = 0
        ring.grad_norms.clear()
        return stats


def _pre_activation_shapes(network: Network, input_shape) -> list[tuple[int, ...]]:
    """The shape of one sample at each nonlinearity, found by one forward pass on zeros."""
    shapes: list[tuple[int, ...]] = []
    hooks = [block.activation.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[1:])))
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
    return shapes


def _typical_unit(block, size: int) -> int:
    """A fixed unit to follow: the middle one of an MLP layer; for a conv layer, channel 0 at the centre pixel."""
    layer = block.layer
    if isinstance(layer, torch.nn.Conv2d):
        pixels = size // layer.out_channels
        side = math.isqrt(pixels)
        return (side // 2) * side + side // 2
    return size // 2
