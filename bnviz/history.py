"""A run's recorded statistics, in a fixed amount of memory however long the run.

``History`` keeps at most ``CAPACITY`` columns. When it is full, adjacent pairs of columns
merge into one and every later column gathers twice as many steps (its ``stride``):
histogram counts add up, so no mass is lost; means, fractions and percentiles are averaged
(a merged column's percentiles are the mean of its steps' percentiles, an approximation);
stds are pooled exactly from the means and variances. The newest steps, fewer than a
column's, wait as recorded (at most ``stride - 1`` of them: 255 at 200,000 steps) until
their column is complete, so the columns do not depend on how steps arrived (``add``).

Arrays are append-only and a merge builds new ones, so ``columns()`` hands out read-only
views that never change afterwards: snapshots share memory with the history, no copies.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a type only: the page merges columns too (bnviz.views), without torch
    from bnviz.stats import StepStats

CAPACITY = 1024  # columns kept: about one per pixel of a wide chart; 200,000 steps merge 256 to a column
SERIES_CAPACITY = 2048  # points kept of a sampled series (test accuracy, landscape) before thinning
SUMMED = ("hist_pre", "hist_post", "nonfinite", "count")  # counts: merging adds them


class History:
    """Columns of per-step statistics; column i covers ``count[i]`` steps ending at ``steps[i]``."""

    def __init__(self, capacity: int = CAPACITY):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number >= 2 (got {capacity})")
        self.capacity = capacity
        self.stride = 1  # steps per column; doubles at every halving
        self.size = 0
        self._arrays: dict[str, np.ndarray] | None = None
        self._partial: dict[str, np.ndarray] | None = None  # the newest steps as recorded, fewer than `stride`

    def add(self, stats: StepStats) -> None:
        """Append recorded steps. The columns depend only on the steps, never on how they were
        split into calls: a column is always its ``stride`` steps merged at once (or two
        columns merged by a halving), decided by the number of steps seen. A run whose trainer
        drains at other moments (another machine's speed, another entry point) gets the same
        columns to the bit."""
        rows = {field.name: getattr(stats, field.name) for field in dataclasses.fields(stats)}  # asdict deep-copies
        rows["count"] = np.ones(len(stats.steps), dtype=np.int64)
        if self._arrays is None:
            self._arrays = {key: np.zeros((self.capacity, *value.shape[1:]), value.dtype) for key, value in rows.items()}
        if self._partial is not None:
            rows = _concatenate([self._partial, rows])
        while len(rows["steps"]) >= self.stride:
            if self.size == self.capacity:
                self._halve()  # full: the waiting steps now make columns of twice as many
                continue
            columns = min(self.capacity - self.size, len(rows["steps"]) // self.stride)
            used = columns * self.stride
            complete = {key: value[:used] for key, value in rows.items()}
            if self.stride > 1:  # at stride 1 a step is a column as it is (a merge of one would round its std)
                complete = merge_runs(complete, np.arange(0, used, self.stride))
            for key, value in complete.items():
                self._arrays[key][self.size:self.size + columns] = value
            self.size += columns
            rows = {key: value[used:] for key, value in rows.items()}
        self._partial = rows if len(rows["steps"]) else None

    def _halve(self) -> None:
        """Merge adjacent pairs into new arrays (views handed out stay valid), and double the stride."""
        merged = merge_runs({key: value[:self.size] for key, value in self._arrays.items()}, np.arange(0, self.size, 2))
        fresh = {key: np.zeros_like(value) for key, value in self._arrays.items()}
        for key in fresh:
            fresh[key][:len(merged["steps"])] = merged[key]
        self._arrays = fresh
        self.size = len(merged["steps"])
        self.stride *= 2

    def close(self) -> None:
        """End of run: keep the partial column (fewer than `stride` steps) as the last one."""
        if self._partial is None:
            return
        partial, self._partial = merge_runs(self._partial, np.zeros(1, dtype=np.int64)), None
        if self.size == self.capacity:
            self._halve()
        for key, value in partial.items():
            self._arrays[key][self.size:self.size + 1] = value
        self.size += 1

    def columns(self) -> dict[str, np.ndarray]:
        """Read-only views of the complete columns; they never change once handed out."""
        if self._arrays is None:
            return {}
        views = {}
        for key, value in self._arrays.items():
            view = value[:self.size]
            view.flags.writeable = False
            views[key] = view
        return views

    def nbytes(self) -> int:
        return sum(value.nbytes for value in (self._arrays or {}).values())


def merge_runs(columns: dict[str, np.ndarray], starts: np.ndarray) -> dict[str, np.ndarray]:
    """Merge the runs of consecutive columns beginning at ``starts`` (rules in the module docstring)."""
    if len(starts) == 0:
        return {key: value[:0] for key, value in columns.items()}
    count = columns["count"]
    merged_count = np.add.reduceat(count, starts)
    ends = np.r_[starts[1:], len(count)] - 1

    unweighted = bool((count == 1).all())  # rows fresh from a ring

    def weighted_mean(value):
        if unweighted:
            return np.add.reduceat(value, starts, axis=0) / merged_count.reshape(-1, *([1] * (value.ndim - 1)))
        weights = count.reshape(-1, *([1] * (value.ndim - 1)))
        totals = merged_count.reshape(-1, *([1] * (value.ndim - 1)))
        return np.add.reduceat(value * weights, starts, axis=0) / totals

    merged = {}
    for key, value in columns.items():
        if key in SUMMED:
            merged[key] = np.add.reduceat(value, starts, axis=0)
        elif key == "steps":
            merged[key] = value[ends]
        elif key != "std":
            merged[key] = weighted_mean(value)
    pooled = weighted_mean(columns["std"] ** 2 + columns["mean"] ** 2) - merged["mean"] ** 2
    merged["std"] = np.sqrt(np.maximum(pooled, 0.0))
    return merged


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


class Series:
    """A sampled series (step, value...) kept under SERIES_CAPACITY points by dropping every other one."""

    def __init__(self, width: int, capacity: int = SERIES_CAPACITY):
        self.capacity = capacity
        self._steps = np.zeros(capacity, dtype=np.int64)
        self._values = np.zeros((capacity, width))
        self.size = 0

    def add(self, step: int, values) -> None:
        if self.size == self.capacity:
            keep = np.r_[0:self.size:2]  # thin by half, keeping the first point
            self._steps = np.concatenate([self._steps[keep], np.zeros(self.capacity - len(keep), np.int64)])
            self._values = np.concatenate([self._values[keep], np.zeros((self.capacity - len(keep), self._values.shape[1]))])
            self.size = len(keep)
        self._steps[self.size] = step
        self._values[self.size] = values
        self.size += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies: small, and the series is thinned in place."""
        return self._steps[:self.size].copy(), self._values[:self.size].copy()
