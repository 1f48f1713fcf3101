"""Snapshot: an immutable picture of a run at one moment, what every reader sees.

The trainer thread builds a new Snapshot after each batch of steps and swaps it in; the
page, the CLI and the run file read snapshots and never touch the trainer's state. Arrays
are read-only views (see ``bnviz.history``), so a snapshot costs no copy and never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Callable, Mapping, Protocol

import numpy as np

from bnviz.config import RunConfig

STATES = ("starting", "running", "paused", "finished", "diverged", "stopped", "error")
FINAL_STATES = ("finished", "diverged", "stopped", "error")  # the thread has ended
CHANCE = 0.1  # accuracy of a guess among the 10 classes of every bnviz dataset
EMPTY = np.zeros(0)
EMPTY.flags.writeable = False


def _empty():
    return EMPTY


@dataclass(frozen=True)
class Snapshot:
    """A run's state and recorded statistics; ``columns`` holds the arrays of ``StepStats`` plus ``count``."""

    config: RunConfig
    status: str = "starting"
    message: str = ""  # words for a person: why it stopped, what went wrong
    step: int = 0  # optimizer steps done
    steps_per_second: float = 0.0
    version: int = 0  # grows with every publish: a reader redraws only when it changed
    layer_names: tuple[str, ...] = ()
    pre_edges: np.ndarray = field(default_factory=_empty)  # (pre bins + 1,) shared by every layer
    post_edges: np.ndarray = field(default_factory=_empty)
    stride: int = 1  # steps merged into each column
    lr: float = 0.0  # the learning rate in use now
    columns: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))
    accuracy_steps: np.ndarray = field(default_factory=_empty)  # (n,) steps at which held-out accuracy was measured
    accuracy: np.ndarray = field(default_factory=_empty)  # (n,) in evaluation mode (BN's running statistics)
    train_accuracy: np.ndarray = field(default_factory=_empty)  # (n,) on the training batches since the last evaluation
    batch_accuracy: np.ndarray = field(default_factory=_empty)  # (n,) held-out with BN's batch statistics; () without BN
    running_steps: np.ndarray = field(default_factory=_empty)  # (r,) evaluations at which running_stats were taken
    running_stats: np.ndarray = field(default_factory=_empty)  # (r, layers, 6) bnviz.evaluation.RUNNING_FIELDS; () without BN
    reestimates: tuple[tuple[int, float, float], ...] = ()  # (step, accuracy before, after) of each re-estimation
    lr_events: tuple[tuple[int, float], ...] = ()  # (step, new rate) of each live change
    forked_at: int | None = None  # the step at which this run forked from another (a shared run's viewer changed it)
    landscape_steps: np.ndarray = field(default_factory=_empty)
    landscape: np.ndarray = field(default_factory=_empty)  # (n, 3): loss range, gradient predictiveness, effective beta-smoothness

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def progress(self) -> float:
        return self.step / self.config.steps

    def column(self, name: str) -> np.ndarray:
        return self.columns.get(name, EMPTY)

    def __reduce__(self):
        """Pickles as its fields (a run in another process sends its snapshots down a pipe);
        a MappingProxyType does not pickle, so ``columns`` travels as a dict."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["columns"] = dict(self.columns)
        return _unpickled, (values,)


def _unpickled(values: dict) -> Snapshot:
    """A Snapshot from its pickled fields, read-only again as the trainer made it."""
    for array in (*values["columns"].values(), *(v for v in values.values() if isinstance(v, np.ndarray))):
        array.flags.writeable = False
    return Snapshot(**{**values, "columns": MappingProxyType(values["columns"])})


def final_accuracy(status: str, accuracy) -> float:
    """A run's final held-out accuracy, the one definition every report and table uses: the
    last one measured (NaN if none was), except for a run that diverged, which ended with
    non-finite weights whatever it measured before and counts as chance."""
    if status == "diverged":
        return CHANCE
    return float(accuracy[-1]) if len(accuracy) else float("nan")


class Runner(Protocol):
    """What trains one run, as its readers and the page see it: a ``bnviz.trainer.Trainer``
    (a thread) or a ``bnviz.serve.process.TrainerProcess`` (a child process) alike. Readers take
    immutable snapshots; the commands only set flags, and the run shows their effect in a
    later snapshot."""

    config: RunConfig

    def start(self, paused: bool = False) -> Runner: ...
    def snapshot(self) -> Snapshot: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step(self, count: int = 1) -> None: ...
    def stop(self) -> None: ...
    def set_lr(self, lr: float) -> None: ...
    def reestimate(self) -> None: ...
    def join(self, timeout: float | None = None) -> bool: ...
    def checkpoint(self, timeout: float | None = None) -> bytes | None: ...  # bnviz.checkpoint: what a fork starts from
    def end_turn(self) -> None: ...  # checkpoint, then stop: the run continues later from that state

    @property
    def alive(self) -> bool: ...


RunnerFactory = Callable[..., Runner]  # (config, data_dir=None, resume=None, fork=False, lr=None) -> a Runner not yet started
