"""How the post-activation histogram is read off the pre-activation's fine one.

A fine pre-activation bin (a, b] holds values whose nonlinearity output lies between act(a)
and act(b); its count is spread over the post bins in proportion to the overlap
(``post_map``), and ``PostMap`` applies that spreading as runs of fine bins read off
cumulative counts instead of a dense matrix product.
"""

from __future__ import annotations

import numpy as np
import torch


class PostMap:
    """A (FINE_BINS, post bins) spreading matrix as runs of fine bins with one weight each.

    A post bin takes whole fine bins (weight 1, a run) and, at its ends, parts of one or two
    (a run of one); a run's count is a difference of cumulative counts. ``apply`` costs a
    fifth of the dense float64 product (0.10 against 0.5 ms for one layer's 110-step ring).
    """

    def __init__(self, dense: np.ndarray):
        self.bins = dense.shape[1]
        pieces = []  # (start, stop, weight, post bin), in post-bin order
        for column in range(self.bins):
            weight = dense[:, column]
            pieces += [(start, stop, 1.0, column) for start, stop in runs(weight == 1.0)]
            pieces += [(row, row + 1, weight[row], column) for row in np.flatnonzero((weight > 0) & (weight < 1.0))]
        starts, stops, weights, columns = zip(*pieces)
        self._starts, self._stops, self._weights = np.array(starts), np.array(stops), np.array(weights)
        self._columns, self._first = np.unique(columns, return_index=True)

    def apply(self, below: np.ndarray) -> np.ndarray:
        """(K, post bins) float64 from (K, FINE_BINS + 1) counts below each fine edge."""
        counts = (below[:, self._stops] - below[:, self._starts]) * self._weights  # (K, runs)
        spread = np.zeros((below.shape[0], self.bins))
        spread[:, self._columns] = np.add.reduceat(counts, self._first, axis=1)
        return spread


def post_map(activation: str, fine_edges: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(FINE_BINS, post bins): how each fine pre bin's count spreads over the post bins.

    A fine bin (a, b] goes to the interval between act(a) and act(b), split in proportion
    to the overlap with each post bin: exact in total, and within a count or two per bin
    because fine bins are narrow. The edge bins (which also hold out-of-range values) go
    to the post bin of act at the range's edge.
    """
    from bnviz.model import ACTIVATION_MODULES  # the same function the network applies

    with torch.no_grad():
        mapped = ACTIVATION_MODULES[activation]()(torch.tensor(fine_edges, dtype=torch.float64)).numpy()
    low, high = np.minimum(mapped[:-1], mapped[1:]), np.maximum(mapped[:-1], mapped[1:])
    low[0], high[0] = mapped[0], mapped[0]
    low[-1], high[-1] = mapped[-1], mapped[-1]
    mapping = np.zeros((len(low), len(edges) - 1))
    for row, (a, b) in enumerate(zip(low, high)):
        if b - a <= 1e-12:
            column = int(np.clip(np.searchsorted(edges, a, side="left") - 1, 0, len(edges) - 2))
            mapping[row, column] = 1.0
            continue
        overlap = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
        overlap[0] += max(min(edges[0], b) - a, 0)  # beyond the post range: into the edge bins
        overlap[-1] += max(b - max(edges[-1], a), 0)
        mapping[row] = overlap / overlap.sum()
    return mapping


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The [start, stop) index ranges where ``mask`` is True."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(start), int(stop)) for start, stop in zip(edges[::2], edges[1::2])]
