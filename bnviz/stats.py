"""Reduce a ring of raw pre-activations to per-step statistics, many steps in one batch.

The probes keep each hidden layer's pre-activation (the nonlinearity's input) and stack K
steps of it into a ring (``bnviz.probes``); this module turns the rings into numpy arrays, one
row per step. Everything comes from one fine histogram per layer and step (one ``bincount``
for all layers and steps), because on the CPU ``bincount`` is the cheapest counter by far,
an order of magnitude under ``histc`` or a sort:
- the displayed pre-activation histogram is the fine one summed in groups of ``GROUP``;
- the post-activation histogram maps each fine bin through the nonlinearity (by its centre);
- the saturated fraction is a sum of fine bins, since the thresholds are fine-bin edges; so is
  fastai's near-zero fraction (at or below 0.05) where the range puts 0.05 on an edge;
- the layer's 15/50/85th percentiles are read off the fine histogram where it places them
  within one fine bin's width, and found exactly (a partial sort of the step's values) where
  it cannot: in an edge bin, which also holds everything beyond the range, or across empty
  bins (``bnviz.percentiles``). So the error is under one fine bin at every step.
Mean and (population) std are exact; the "typical unit"'s percentiles are exact (the BN paper's Figure 1b/c).
Bins are right-closed, ``(e_i, e_i+1]``, so a ReLU input of exactly 0 counts as dead.
Values beyond the range land in the edge bins; NaN and Inf are counted apart, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bnviz.percentiles import Ranks, lerp, order_statistics, sorted_percentiles
from bnviz.post_map import PostMap, post_map, runs
from bnviz.saturation import DEAD_ACTIVATIONS, NEAR_ZERO, SATURATION_THRESHOLD

FINE_BINS = 768  # 6 ln19 / 768 = ln19 / 128: the thresholds fall on fine-bin edges
GROUP = 16  # 768 / 16 = 48 displayed bins, each ln19 / 8 wide
POST_BINS = 40  # sigmoid/tanh outputs: 0.05 and 0.95 (tanh: +-0.9) are edges of 40 bins


UNSATURATED_RANGE = 9.6  # ~3 ln 19 as for sigmoid, and 9.6 / 384 = 0.025: fastai's near zero (0.05) is a fine edge


def pre_range(activation: str) -> float:
    """Half-width of the pre-activation range: 3 thresholds wide, so saturation is visible; for
    the activations without a threshold, one with 0 and NEAR_ZERO on fine-bin edges."""
    if activation in SATURATION_THRESHOLD:
        return 3 * SATURATION_THRESHOLD[activation]
    return UNSATURATED_RANGE


def pre_edges(activation: str) -> np.ndarray:
    """Displayed pre-activation bin edges, signed and fixed for the whole run."""
    half = pre_range(activation)
    return np.linspace(-half, half, FINE_BINS // GROUP + 1)


def post_edges(activation: str) -> np.ndarray:
    """Displayed post-activation bin edges: the output's own range for bounded activations."""
    if activation == "sigmoid":
        return np.linspace(0.0, 1.0, POST_BINS + 1)
    if activation == "tanh":
        return np.linspace(-1.0, 1.0, POST_BINS + 1)
    return pre_edges(activation)


@dataclass(frozen=True)
class StepStats:
    """Statistics of K recorded steps for L layers; row i describes step ``steps[i]``."""

    steps: np.ndarray  # (K,) int64
    loss: np.ndarray  # (K,) float64
    hist_pre: np.ndarray  # (K, L, pre bins) int64
    hist_post: np.ndarray  # (K, L, post bins) float64: spread from the fine bins, total exact
    mean: np.ndarray  # (K, L) of the pre-activation
    std: np.ndarray  # (K, L) population std (ddof=0), so merging columns pools it exactly
    percentiles: np.ndarray  # (K, L, 3) 15/50/85th of the layer's pre-activation
    unit_percentiles: np.ndarray  # (K, L, 3) of one fixed unit's pre-activation
    saturation: np.ndarray  # (K, L) fraction saturated (sigmoid, tanh) or dead (ReLU family); NaN if undefined
    near_zero: np.ndarray  # (K, L) fraction at or below NEAR_ZERO, as fastai counts it; NaN for sigmoid and tanh
    nonfinite: np.ndarray  # (K, L) count of NaN/Inf pre-activations
    grad_norm: np.ndarray  # (K, L) norm of the layer's weight gradient


class Reducer:
    """Everything about the binning that is fixed for a run, computed once.

    ``reduce_layers`` goes in four stages, each a method: ``_pass_over_layers`` (the torch
    passes, layer by layer: bins into one index buffer, mean, std, the typical unit),
    ``_count`` (one ``bincount`` for every step and layer, and the counts below each edge),
    ``_layer_percentiles`` (off the counts, exact where they cannot bound the error) and
    ``_read_off`` (the displayed histograms and the saturated fraction, off the counts).
    """

    def __init__(self, activation: str, ring_steps: int, layers: int = 1):
        self.activation = activation
        half = pre_range(activation)
        self.high = half  # non-finite values stand in as this, in the top bin
        self.width = 2 * half / FINE_BINS
        self.fine_edges = np.linspace(-half, half, FINE_BINS + 1)
        self.post_map = PostMap(post_map(activation, self.fine_edges, post_edges(activation)))
        mask = _saturated_bins(activation, self.fine_edges)  # (FINE_BINS,) bool or None
        self.saturated_runs = None if mask is None else runs(mask)  # [(start, stop)]: a prefix and/or a suffix
        edge = np.flatnonzero(np.abs(self.fine_edges - NEAR_ZERO) < 1e-9)
        self.near_zero_edge = int(edge[0]) if len(edge) else None  # values at or below it are near zero
        # Right-closed bins: index = top - floor((high - x) / width), top = the last bin of row
        # (step k, layer l), rows in (K, L) order so one bincount covers every step and layer.
        rows = torch.arange(ring_steps * layers, dtype=torch.int32).view(ring_steps, layers)
        self._row_tops = (rows * FINE_BINS + FINE_BINS - 1).T.contiguous().view(layers, ring_steps, 1)
        self._top_offset = torch.tensor(half / self.width)  # high / width, as a tensor: torch.add takes an alpha then
        self._float_work = torch.empty(0)  # reused: fresh multi-MB buffers cost page faults every drain
        self._index_work = torch.empty(0, dtype=torch.int32)

    def reduce(self, pre: torch.Tensor, unit: int) -> dict[str, np.ndarray]:
        """Statistics for one layer's ring ``pre`` of shape (K, batch, features), rows (K, ...)."""
        return {key: value[:, 0] for key, value in self.reduce_layers([pre], [unit]).items()}

    def reduce_layers(self, rings: list[torch.Tensor], units: list[int]) -> dict[str, np.ndarray]:
        """Statistics of every layer's ring (each (K, batch, features)), as (K, L, ...) arrays.

        The torch passes go layer by layer; the bins of all layers come from one ``bincount``
        and everything read off them is computed once for all layers (a drain's fixed cost is
        its ~200 calls: per layer, it was a fifth of the drain)."""
        flats = [ring.reshape(ring.shape[0], -1) for ring in rings]  # (K, batch * features) each
        self._reserve(flats)
        passes = self._pass_over_layers(flats, rings, units)
        below = self._count(flats, passes["nonfinite"])  # (K L, FINE_BINS + 1), rows (step, layer)
        steps, layers = len(flats[0]), len(flats)

        def per_layer(values):  # (K L, ...) -> (K, L, ...)
            return values.reshape(steps, layers, *values.shape[1:])

        return {
            **{key: per_layer(value) for key, value in self._read_off(below).items()},
            "percentiles": per_layer(self._layer_percentiles(flats, below)),
            **passes,
        }

    def _reserve(self, flats: list[torch.Tensor]) -> None:
        """Work buffers large enough for these rings: one float scratch, one index per value of every layer."""
        sizes = [flat.numel() for flat in flats]
        if self._float_work.numel() < max(sizes):
            self._float_work = torch.empty(max(sizes))
        if self._index_work.numel() < sum(sizes):
            self._index_work = torch.empty(sum(sizes), dtype=torch.int32)

    def _segments(self, flats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each layer's (K, n) part of the index buffer, layer after layer."""
        segments, offset = [], 0
        for flat in flats:
            segments.append(self._index_work[offset:offset + flat.numel()].view_as(flat))
            offset += flat.numel()
        return segments

    def _pass_over_layers(self, flats, rings, units) -> dict[str, np.ndarray]:
        """Stage 1, the torch passes of each layer: its fine bins into the index buffer, and its
        mean, std, typical unit's percentiles and non-finite count, each (K, L)."""
        mean, std, unit_pct, nonfinite = [], [], [], []
        for layer, (flat, index, ring, unit) in enumerate(zip(flats, self._segments(flats), rings, units)):
            sums = flat.sum(1)  # (K,); a NaN or Inf anywhere in a row makes its sum non-finite
            if bool(torch.isfinite(sums).all()):
                self._bin(flat, index, layer)
                nonfinite.append(np.zeros(len(flat), dtype=np.int64))
            else:  # non-finite values are binned as `high` (the top bin), then taken back out (stage 2)
                finite = torch.isfinite(flat)
                nonfinite.append((~finite).sum(1).numpy().astype(np.int64))
                self._bin(torch.where(finite, flat, torch.tensor(self.high)), index, layer)
            mean.append(sums.double().numpy() / flat.shape[1])
            # Population std (so merged columns pool exactly), about the row's mean: sum x^2 - n mean^2
            # in float32 cancels to 0 for a collapsed layer (std 1e-3 around 3).
            centred = torch.sub(flat, torch.from_numpy(mean[-1]).float()[:, None],
                                out=self._float_work[:flat.numel()].view_as(flat))
            with np.errstate(invalid="ignore"):  # NaN in, NaN out: the non-finite count says why
                std.append(torch.linalg.vector_norm(centred, dim=1).double().numpy() / np.sqrt(flat.shape[1]))
            unit_pct.append(sorted_percentiles(ring[:, :, unit].numpy()))  # (K, 3) of (K, batch)
        return {"mean": np.stack(mean, axis=1), "std": np.stack(std, axis=1),
                "unit_percentiles": np.stack(unit_pct, axis=1), "nonfinite": np.stack(nonfinite, axis=1)}

    def _bin(self, flat: torch.Tensor, index: torch.Tensor, layer: int) -> None:
        """Writes the fine bin of each of (K, n) finite values into ``index``, as rows (step, layer).

        The bin never decreases as the value grows (every operation below is monotone), so a
        higher bin never holds a smaller value: reading percentiles off the counts relies on it."""
        steps = flat.shape[0]
        scaled = self._float_work[:flat.numel()].view_as(flat)
        # 1. fine bins counted down from the top, (high - x) / width in one operator, clamped so
        #    out-of-range values land in the edge bins (the lowest stays inside by half a bin)
        torch.add(self._top_offset, flat, alpha=-1 / self.width, out=scaled)
        scaled.clamp_(0, FINE_BINS - 0.5)
        # 2. truncation is floor (it is >= 0); subtracted from the row's top bin, so one bincount
        #    covers all steps and layers; in integers, to keep precision
        index.copy_(scaled)
        torch.sub(self._row_tops[layer, :steps], index, out=index)

    def _count(self, flats: list[torch.Tensor], nonfinite: np.ndarray) -> np.ndarray:
        """Stage 2: the finite values of every row (step, layer) below each fine edge, (K L, FINE_BINS + 1).

        The count over any range of fine bins is then a difference of two columns, not a sum."""
        rows, values = nonfinite.size, sum(flat.numel() for flat in flats)
        fine = torch.bincount(self._index_work[:values], minlength=rows * FINE_BINS).numpy().reshape(rows, FINE_BINS)
        fine[:, -1] -= nonfinite.ravel()  # the stand-ins
        below = np.zeros((rows, FINE_BINS + 1), dtype=np.int64)
        np.cumsum(fine, axis=1, out=below[:, 1:])
        return below

    def _layer_percentiles(self, flats: list[torch.Tensor], below: np.ndarray) -> np.ndarray:
        """Stage 3: (K L, 3) percentiles of each row's finite values: off the counts where they
        bound the error by one fine bin's width, exact elsewhere (``bnviz.percentiles``)."""
        ranks = Ranks(below)
        result = ranks.estimate(self.fine_edges)
        unbounded = ~ranks.bounded() & (ranks.counted[:, None] > 0)  # (K L, 3)
        if not unbounded.any():
            return result
        layers = len(flats)
        for layer, flat in enumerate(flats):
            for quantile in range(unbounded.shape[1]):
                rows = np.flatnonzero(unbounded[layer::layers, quantile]) * layers + layer
                # Rows with the same number of finite values share the rank: one partial sort for them all.
                for counted in np.unique(ranks.counted[rows]):
                    same = rows[ranks.counted[rows] == counted]
                    values = flat[torch.from_numpy(same // layers)].numpy()  # (S, n) float32, a copy
                    if counted < values.shape[1]:
                        values[~np.isfinite(values)] = np.inf  # the non-finite ones last
                    low, high = order_statistics(values, int(ranks.low[same[0], quantile]))
                    result[same, quantile] = lerp(low, high, ranks.position[same, quantile] - ranks.low[same, quantile])
        return result

    def _read_off(self, below: np.ndarray) -> dict[str, np.ndarray]:
        """Stage 4: the displayed pre and post histograms, the saturated and near-zero fractions, (K L, ...)."""
        return {
            "hist_pre": np.diff(below[:, ::GROUP], axis=1),
            "hist_post": self.post_map.apply(below),
            "saturation": self._saturation(below, below[:, -1]),
            "near_zero": (below[:, self.near_zero_edge] / np.maximum(below[:, -1], 1) if self.near_zero_edge is not None
                          else np.full(below.shape[0], np.nan)),
        }

    def _saturation(self, below: np.ndarray, counted: np.ndarray) -> np.ndarray:
        """Fraction of each row's ``counted`` finite values in the saturated (or dead) bins."""
        if self.saturated_runs is None:
            return np.full(below.shape[0], np.nan)
        saturated = sum(below[:, stop] - below[:, start] for start, stop in self.saturated_runs)
        return saturated / np.maximum(counted, 1)


def _saturated_bins(activation: str, fine_edges: np.ndarray) -> np.ndarray | None:
    lefts, rights = fine_edges[:-1], fine_edges[1:]
    tolerance = 1e-9  # the thresholds are fine edges up to rounding
    if activation in SATURATION_THRESHOLD:
        threshold = SATURATION_THRESHOLD[activation]
        return (rights <= -threshold + tolerance) | (lefts >= threshold - tolerance)
    if activation in DEAD_ACTIVATIONS:
        return rights <= tolerance
    return None  # linear: nothing saturates
