"""A server's run and a tab's view of its runs: what the pool (``bnviz.serve.pool``) keeps.

A ``Run`` is one trainer's run, known by its key (``RunConfig.key()`` when shared, a key of
its own when private), with the tabs that watch it; an ``Entry`` is one tab and the runs it
watches. ``shareable`` says which configs may be shared: those whose two trainers record the
same history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from bnviz.config import RunConfig
from bnviz.snapshot import Runner, Snapshot

FINAL_KEPT = ("finished", "diverged")  # ends that are the config's result, the same every time: kept and shared


@dataclass
class Run:
    """One trainer's run and who watches it."""

    key: str
    config: RunConfig
    controller: str | None = None  # the owner whose Pause/Step/lr act on it; None: a shared run
    reason: str = ""  # why a run of a shareable-looking config is private (``shareable``)
    trainer: Runner | None = None  # None while queued, or when served from the cache
    final: Snapshot | None = None  # the last snapshot of a run that has ended
    paused: bool = False  # start paused and take one step (Step)
    resume: bytes | None = None  # the state a queued fork or a run whose turn ended continues from
    fork: bool = False  # resume is another run's state: marked on the timeline
    lr: float | None = None  # a fork's new learning rate, from its first step
    group: int = 0  # runs submitted together start together
    watchers: dict[str, float] = field(default_factory=dict)  # owner -> when it last polled
    started: float | None = None  # when its current turn began
    yielding: bool = False  # its turn is ending: requeued with its state once it has ended
    held: Snapshot | None = None  # its last snapshot while it waits for its next turn

    @property
    def shared(self) -> bool:
        return self.controller is None

    @property
    def queued(self) -> bool:
        return self.trainer is None and self.final is None

    @property
    def done(self) -> bool:
        return self.final is not None

    def snapshot(self) -> Snapshot:
        if self.final is not None:
            return self.final
        if self.trainer is not None:
            return self.trainer.snapshot()
        if self.held is not None:
            return self.held
        return Snapshot(config=self.config, lr=self.config.lr)


@dataclass
class Entry:
    """One owner (a browser tab): the runs it watches, in the order it asked for them."""

    owner: str
    runs: tuple[Run, ...]
    last_seen: float

    @property
    def configs(self) -> tuple[RunConfig, ...]:
        return tuple(run.config for run in self.runs)

    @property
    def trainers(self) -> tuple:
        return tuple(run.trainer for run in self.runs if run.trainer is not None)

    @property
    def running(self) -> bool:
        """Every run has started (or is done): nothing of this tab waits in line."""
        return not any(run.queued for run in self.runs)


def shareable(config: RunConfig, runs_in: str = "process") -> tuple[bool, str]:
    """Whether two trainers of this config record the same history, and why not.

    A run in a process of its own seeds every generator it draws from (weights, data order,
    the noise of noisy BN each have their own; ``torch.manual_seed`` covers the rest), so every
    config is deterministic there. Threads of one server share torch's global generator: a
    config that draws from it while it trains (dropout) depends on what the other runs drew."""
    if runs_in == "thread" and getattr(config, "dropout", 0):
        return False, ("dropout draws from torch's generator, which runs in threads of one server share: "
                       "this run is yours alone, not shared")
    return True, ""


def private_key(config: RunConfig) -> str:
    return f"{config.key()}~{uuid.uuid4().hex[:8]}"
