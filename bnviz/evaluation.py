"""Held-out accuracy in both of BatchNorm's modes, its running statistics against the batch's,
and the usual remedy when they part: re-estimating the running statistics on training data.

BatchNorm normalizes with the batch's mean and variance while training and with running
averages (``running_mean``, ``running_var``, updated with ``momentum``) when evaluating. When
the two differ (small batches, a small momentum, right after a large learning-rate change,
a shift between training and test data) the evaluated network is not the trained one. The
trainer measures, at every evaluation:

1. held-out accuracy in evaluation mode (running averages), what a deployed model does;
2. held-out accuracy with batch statistics: BN layers in training mode on held-out batches of
   the training batch size, their running averages restored afterwards (dropout stays off);
3. per hidden layer, its BN's running mean and variance against those of the latest
   training batch (recomputed by one forward pass of that batch, buffers restored).

Nothing here runs on the training hot path: only at evaluations and on request. The
per-example norms (``bnviz.norms``) have no running statistics: both modes are the same.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnviz.history import Series
from bnviz.model import Network

RUNNING_FIELDS = ("running_mean", "batch_mean", "running_var", "batch_var", "mean_gap", "var_ratio")
REESTIMATE_EXAMPLES = 2000  # training images whose statistics replace the running averages
REESTIMATE_CHUNK = 500  # images per forward pass while re-estimating: a population estimate, not a batch's
EVAL_CHUNK = 1000  # held-out examples per forward pass in evaluation mode
TRAIN_FOLD = 128  # training batches' logits kept before their correct answers are counted: bounds the memory
MAX_REESTIMATES = 100  # re-estimations kept (each is a click)


class Evaluations:
    """What a run measures at its evaluations, in bounded memory (``bnviz.history.Series``).

    Per step the trainer hands over the training batch's logits (``train_batch``: a list
    append; every TRAIN_FOLD batches they are counted in one pass), so training accuracy costs
    no forward pass. At each evaluation (``evaluate``): held-out accuracy in evaluation mode,
    the training batches' accuracy since the evaluation before, and for a net with BatchNorm
    held-out accuracy with batch statistics and ``running_vs_batch`` on the latest batch.
    """

    def __init__(self, network: Network):
        self.has_running_stats = bool(batch_norms(network))
        self.layers = len(network.blocks)
        self.accuracy = Series(3)  # held out (evaluation mode), training batches, held out with batch statistics
        self.running = Series(self.layers * len(RUNNING_FIELDS)) if self.has_running_stats else None
        self.reestimates: list[tuple[int, float, float]] = []  # (step, accuracy before, after)
        self._train: list[tuple[torch.Tensor, torch.Tensor]] = []  # (logits, labels) not yet counted
        self._correct = self._seen = 0

    def train_batch(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep a training step's logits (batch, classes) and labels (batch,) for its accuracy."""
        self._train.append((logits.detach(), labels))
        if len(self._train) == TRAIN_FOLD:
            self._fold()

    def _fold(self) -> None:
        if self._train:
            logits = torch.cat([pair[0] for pair in self._train])
            labels = torch.cat([pair[1] for pair in self._train])
            self._correct += int((logits.argmax(1) == labels).sum())
            self._seen += len(labels)
            self._train.clear()

    def evaluate(self, network: Network, step: int, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 last_batch: torch.Tensor | None) -> None:
        """Measure everything on held-out (x, y) after ``step`` steps; ``last_batch`` is the latest training batch."""
        test = eval_accuracy(network, x, y)  # BN on its running statistics, as at test time
        self._fold()
        train = self._correct / self._seen if self._seen else math.nan
        self._correct = self._seen = 0
        batch = math.nan
        if self.has_running_stats:
            batch = batch_stats_accuracy(network, x, y, batch_size)
            if last_batch is not None:
                self.running.add(step, running_vs_batch(network, last_batch).flatten().numpy())
        self.accuracy.add(step, [test, train, batch])

    def reestimate(self, network: Network, step: int, x: torch.Tensor, y: torch.Tensor, train_x: torch.Tensor) -> None:
        """The remedy, measured: evaluation-mode accuracy on (x, y) before and after ``reestimate``."""
        if not self.has_running_stats or len(self.reestimates) >= MAX_REESTIMATES:
            return
        before = eval_accuracy(network, x, y)
        reestimate(network, train_x)
        self.reestimates.append((step, before, eval_accuracy(network, x, y)))

    def snapshot_fields(self) -> dict:
        """The Snapshot's fields for all of the above (copies: the series thin in place)."""
        steps, values = self.accuracy.arrays()
        fields = dict(accuracy_steps=steps, accuracy=values[:, 0], train_accuracy=values[:, 1],
                      batch_accuracy=values[:, 2] if self.has_running_stats else values[:0, 2],
                      reestimates=tuple(self.reestimates))
        if self.running is not None:
            running_steps, running = self.running.arrays()
            fields.update(running_steps=running_steps,
                          running_stats=running.reshape(len(running_steps), self.layers, len(RUNNING_FIELDS)))
        return fields


def batch_norms(network: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm with running statistics (noisy BN's inner BN included, the CNN head's too)."""
    return [module for module in network.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats]


def layer_batch_norms(network: Network) -> list[nn.modules.batchnorm._BatchNorm | None]:
    """Per hidden block, its BatchNorm (or None): the layers whose running statistics are recorded."""
    found = []
    for block in network.blocks:
        norm = getattr(block.norm, "bn", block.norm)  # NoisyBatchNorm keeps its BN as .bn
        found.append(norm if isinstance(norm, nn.modules.batchnorm._BatchNorm) else None)
    return found


@torch.no_grad()
def eval_accuracy(network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy in evaluation mode (running statistics, no dropout); leaves the network training."""
    network.eval()
    try:
        correct = sum(int((network(x[start:start + EVAL_CHUNK]).argmax(1) == y[start:start + EVAL_CHUNK]).sum())
                      for start in range(0, len(y), EVAL_CHUNK))
    finally:
        network.train()
    return correct / len(y)


@torch.no_grad()
def batch_stats_accuracy(network: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Accuracy with every BN normalizing by the batch's statistics, over held-out batches of
    ``batch_size`` (whole batches only, as in training); running averages left as they were."""
    norms = batch_norms(network)
    size = len(y) // batch_size * batch_size or len(y)  # one smaller batch if the held-out set is smaller
    correct = 0
    with _batch_mode(network, norms):
        for start in range(0, size, batch_size):
            stop = min(start + batch_size, size)
            correct += int((network(x[start:stop]).argmax(1) == y[start:stop]).sum())
    return correct / size


@torch.no_grad()
def running_vs_batch(network: Network, x: torch.Tensor) -> torch.Tensor:
    """(layers, 6) per hidden layer, RUNNING_FIELDS: the unit-averaged running mean, batch mean,
    running variance and batch variance; the mean gap (root mean square over units of
    (batch mean - running mean) / running std) and the variance ratio (geometric mean over
    units of batch variance / running variance). The batch is ``x``; NaN for a layer without BN."""
    layers = layer_batch_norms(network)
    out = torch.full((len(layers), len(RUNNING_FIELDS)), math.nan, dtype=torch.float64)
    caught: dict[int, torch.Tensor] = {}
    hooks = [norm.register_forward_pre_hook(lambda m, i, index=index: caught.__setitem__(index, i[0]))
             for index, norm in enumerate(layers) if norm is not None]
    try:
        with _batch_mode(network, batch_norms(network)):
            network(x)
    finally:
        for hook in hooks:
            hook.remove()
    for index, values in caught.items():
        norm = layers[index]
        dims = [d for d in range(values.dim()) if d != 1]  # every axis but the channel's
        batch_var, batch_mean = torch.var_mean(values.double(), dim=dims, unbiased=False)
        running_mean, running_var = norm.running_mean.double(), norm.running_var.double()
        gap = ((batch_mean - running_mean) / torch.sqrt(running_var + norm.eps)).square().mean().sqrt()
        ratio = torch.log((batch_var + norm.eps) / (running_var + norm.eps)).mean().exp()
        out[index] = torch.stack([running_mean.mean(), batch_mean.mean(), running_var.mean(), batch_var.mean(),
                                  gap, ratio])
    return out


@torch.no_grad()
def reestimate(network: nn.Module, train_x: torch.Tensor, examples: int = REESTIMATE_EXAMPLES) -> int:
    """Replace every BN's running averages by the statistics of ``examples`` training images
    (the first ones: the same images every time), averaged over forward passes with momentum
    None (torch's cumulative average). Dropout stays off; weights do not change. Returns the
    number of images used."""
    norms = batch_norms(network)
    images = train_x[:examples]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    network.eval()
    for norm in norms:
        norm.train()
    try:
        for start in range(0, len(images), REESTIMATE_CHUNK):
            network(images[start:start + REESTIMATE_CHUNK])
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        network.train()
    return len(images)


class _batch_mode:
    """Evaluation mode except that BN layers use the batch's statistics; their running averages
    (and batch counters) are put back on exit, so measuring changes nothing."""

    def __init__(self, network: nn.Module, norms: list):
        self.network, self.norms = network, norms

    def __enter__(self):
        self.saved = [(norm.running_mean.clone(), norm.running_var.clone(), norm.num_batches_tracked.clone())
                      for norm in self.norms]
        self.network.eval()
        for norm in self.norms:
            norm.train()

    def __exit__(self, *exc_info):
        for norm, (mean, var, tracked) in zip(self.norms, self.saved):
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.num_batches_tracked.copy_(tracked)
        self.network.train()
