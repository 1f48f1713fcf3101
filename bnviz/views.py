"""What the figures draw of a run: a Snapshot's columns cut at a step and thinned to chart width.

``run_view`` cuts a Snapshot's columns at a step (the ``scrub`` slider) and sums adjacent
columns until at most ``max_columns`` are left, about one per few pixels of a chart
(``bnviz.history.merge_runs``: counts add, so no mass is lost). ``bnviz.figures`` draws
views; this module holds no drawing, so its arrays are testable on their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bnviz.history import merge_runs
from bnviz.snapshot import Snapshot

MAX_COLUMNS = 240  # heatmap columns per panel: about one per 3-5 px of a laptop-wide chart
CELL_BUDGET = 8 * 200  # panels x columns per heatmap figure: bounds the bytes a live page receives per refresh
LINE_POINTS = 120  # points per line: a line chart is half the page wide, and every trace carries its own x
MIN_COLUMNS = 60  # even a 20-layer comparison keeps this much time resolution
LINE_KEYS = ("steps", "count", "loss", "mean", "std", "unit_percentiles", "saturation", "grad_norm")  # mean, std: merge_runs needs them
OPTIONAL_LINE_KEYS = ("near_zero",)  # drawn where a run has them (a run recorded before they existed has not)


@dataclass(frozen=True)
class RunView:
    """What the figures draw of one run: columns cut at ``upto`` and decimated to chart width."""

    norm: str  # names and colours the run in a figure (bnviz.style)
    activation: str
    layer_names: tuple[str, ...]
    pre_edges: np.ndarray  # (bins + 1,)
    post_edges: np.ndarray
    columns: dict  # steps, count and hist_<kind>: (cols, ...) arrays at heatmap width, see bnviz.stats.StepStats
    lines: dict  # LINE_KEYS: (points, ...) arrays at line-chart width
    accuracy_steps: np.ndarray
    accuracy: np.ndarray
    lr_events: tuple[tuple[int, float], ...]
    last_step: int  # the whole run's last step, for a fixed axis while scrubbing
    landscape_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (s,)
    landscape: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (s, 3): Snapshot.landscape's columns
    dropout: float = 0.0  # named with the norm when it is not 0 (bnviz.style.run_label)
    train_accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))  # at accuracy_steps: the training batches since the evaluation before
    batch_accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))  # at accuracy_steps, held out with BN's batch statistics; () without BN
    running_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    running_stats: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (r, layers, 6) bnviz.evaluation.RUNNING_FIELDS
    reestimates: tuple[tuple[int, float, float], ...] = ()
    forked_at: int | None = None  # where this private run forked from a shared one (marked on the timeline)


def column_budget(layers: int, runs: int = 1) -> int:
    """Columns per heatmap panel so that a figure stays near CELL_BUDGET cells wide."""
    return int(min(MAX_COLUMNS, max(MIN_COLUMNS, CELL_BUDGET // max(1, layers * runs))))


def decimate(columns: dict, max_columns: int) -> dict:
    """Merge groups of adjacent columns so at most ``max_columns`` remain; counts are summed."""
    size = len(columns["steps"])
    if size <= max_columns:
        return dict(columns)
    group = math.ceil(size / max_columns)
    return merge_runs(columns, np.arange(0, size, group))


def run_view(snapshot: Snapshot, upto: int | None = None, max_columns: int = MAX_COLUMNS,
             kinds: tuple[str, ...] = ("pre", "post")) -> RunView:
    """The snapshot's columns with steps <= ``upto`` (all if None): heatmaps of ``kinds`` at most
    ``max_columns`` wide, lines at most LINE_POINTS long."""
    line_keys = LINE_KEYS + tuple(key for key in OPTIONAL_LINE_KEYS if key in snapshot.columns)
    keys = line_keys + tuple(f"hist_{kind}" for kind in kinds)
    columns = {key: snapshot.column(key) for key in keys}
    if len(columns["steps"]) and upto is not None:
        keep = int(np.searchsorted(columns["steps"], upto, side="right"))
        columns = {key: value[:keep] for key, value in columns.items()}
    lines = {key: columns[key] for key in line_keys}
    if len(columns["steps"]):
        columns = decimate(columns, max_columns)
        lines = decimate({key: columns[key] for key in line_keys}, LINE_POINTS)
    limit = snapshot.step if upto is None else upto
    seen = snapshot.accuracy_steps <= limit
    config = snapshot.config
    return RunView(
        norm=config.norm,
        dropout=config.dropout,
        activation=config.activation,
        layer_names=snapshot.layer_names,
        pre_edges=snapshot.pre_edges,
        post_edges=snapshot.post_edges,
        columns={key: columns[key] for key in keys if key not in line_keys or key in ("steps", "count")},
        lines=lines,
        accuracy_steps=snapshot.accuracy_steps[seen],
        accuracy=snapshot.accuracy[seen],
        train_accuracy=snapshot.train_accuracy[seen[:len(snapshot.train_accuracy)]],
        batch_accuracy=snapshot.batch_accuracy[seen[:len(snapshot.batch_accuracy)]],
        running_steps=snapshot.running_steps[snapshot.running_steps <= limit],
        running_stats=snapshot.running_stats[:int((snapshot.running_steps <= limit).sum())],
        reestimates=tuple(event for event in snapshot.reestimates if event[0] <= limit),
        lr_events=tuple(event for event in snapshot.lr_events if event[0] <= limit),
        last_step=snapshot.step,
        landscape_steps=snapshot.landscape_steps[snapshot.landscape_steps <= limit],
        landscape=np.asarray(snapshot.landscape).reshape(-1, 3)[snapshot.landscape_steps <= limit],
        forked_at=snapshot.forked_at if snapshot.forked_at is not None and snapshot.forked_at <= limit else None,
    )
