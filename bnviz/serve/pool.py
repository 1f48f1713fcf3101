"""RunPool: every live run of a server, a cap on how many train at once, and a queue.

A shared deployment has one or two cores for a whole class. The pool admits at most
``max_running`` trainers; an owner (a browser session) whose runs do not fit waits in line
and is told its place. Owners prove they are still there by polling (``get``); one silent for
``idle_timeout`` seconds (a closed tab) is reaped: its trainers stop and its slots go to
the next in line. A queued owner silent for ``queue_timeout`` seconds is passed over when a
slot frees (it keeps its place, and starts on its next ``get`` if a slot is free then), so
a tab closed while waiting does not take a slot and train for nobody until it is reaped.
Nothing here blocks: ``stop`` only sets a flag, runs end on their own.

A run is a ``Trainer`` (a thread) by default; the app passes ``TrainerProcess`` (a child process
with the same methods) so that its pages' work does not slow training (``bnviz.serve.process``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from bnviz.config import RunConfig
from bnviz.serve.settings import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RUNNING, DEFAULT_QUEUE_TIMEOUT
from bnviz.snapshot import Runner, RunnerFactory


@dataclass
class Entry:
    """One owner's runs: several when comparing with and without BN."""

    owner: str
    configs: tuple[RunConfig, ...]
    trainers: tuple[Runner, ...] = ()  # empty while queued
    last_seen: float = field(default_factory=time.monotonic)
    paused: bool = False  # Step from nothing: when admitted, train one step, then pause

    @property
    def running(self) -> bool:
        return bool(self.trainers)


class RunPool:
    """Thread-safe registry of runs keyed by owner."""

    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 data_dir: str | None = None, clock=time.monotonic, queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
                 make_trainer: RunnerFactory | None = None):
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1 (got {max_running})")
        self.max_running = max_running
        self.idle_timeout = idle_timeout
        self.queue_timeout = queue_timeout
        self.data_dir = data_dir
        if make_trainer is None:
            from bnviz.trainer import Trainer  # imports torch

            make_trainer = Trainer
        self.make_trainer = make_trainer
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}  # insertion order is the queue order

    def submit(self, owner: str, configs: list[RunConfig] | tuple[RunConfig, ...], paused: bool = False) -> Entry:
        """Replace the owner's runs with new ones: started now if there is room, else queued."""
        configs = tuple(configs)
        if not configs or len(configs) > self.max_running:
            raise ValueError(f"a submission holds 1 to {self.max_running} runs (got {len(configs)})")
        with self._lock:
            old = self._entries.pop(owner, None)
            if old is not None:
                _stop(old)
            entry = Entry(owner, configs, last_seen=self._clock(), paused=paused)
            self._entries[owner] = entry
            self._admit()
            return entry

    def get(self, owner: str) -> Entry | None:
        """The owner's entry, and a sign of life: also reaps and admits."""
        with self._lock:
            entry = self._entries.get(owner)
            if entry is not None:
                entry.last_seen = self._clock()
            self._reap()
            self._admit()
            return entry

    def position(self, owner: str) -> int:
        """How many queued owners are ahead of this one (0 when running or first in line); silent
        ones are not counted: a free slot would pass them over."""
        with self._lock:
            ahead, now = 0, self._clock()
            for entry in self._entries.values():
                if entry.owner == owner:
                    return ahead
                if not entry.running and not self._silent(entry, now):
                    ahead += 1
            return 0

    def release(self, owner: str) -> None:
        """Stop and forget the owner's runs; returns at once (safe on Streamlit's event loop)."""
        with self._lock:
            entry = self._entries.pop(owner, None)
            if entry is not None:
                _stop(entry)
            self._admit()

    def reap(self) -> None:
        with self._lock:
            self._reap()
            self._admit()

    def counts(self) -> dict[str, int]:
        """Owners and trainers by state, for the page and for tests."""
        with self._lock:
            running = [e for e in self._entries.values() if e.running]
            return {
                "owners": len(self._entries),
                "running_owners": len(running),
                "queued_owners": len(self._entries) - len(running),
                "trainers": sum(len(e.trainers) for e in running),
                "alive_trainers": sum(t.alive for e in running for t in e.trainers),
            }

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            _stop(entry)
        for entry in entries:
            for trainer in entry.trainers:
                trainer.join(timeout)

    def _busy(self) -> int:
        """Trainers holding a slot: a finished run lets go of its slot."""
        return sum(1 for e in self._entries.values() for t in e.trainers if t.alive)

    def _silent(self, entry: Entry, now: float) -> bool:
        """A queued entry whose page has not polled for ``queue_timeout``: probably a closed tab."""
        return now - entry.last_seen > self.queue_timeout

    def _reap(self) -> None:
        now = self._clock()
        for owner, entry in list(self._entries.items()):
            if now - entry.last_seen > self.idle_timeout:
                del self._entries[owner]
                _stop(entry)

    def _admit(self) -> None:
        """Start queued entries in order while their runs fit; the first that does not fit waits.
        Entries not seen for ``queue_timeout`` are skipped: a closed tab's slot would train for nobody."""
        now = self._clock()
        for entry in self._entries.values():
            if entry.running or self._silent(entry, now):
                continue
            if self._busy() + len(entry.configs) > self.max_running:
                return
            trainers = tuple(self.make_trainer(config, self.data_dir).start(paused=entry.paused)
                             for config in entry.configs)
            if entry.paused:  # here, not on the click: a Step that waited in line still gets its step
                for trainer in trainers:
                    trainer.step(1)
            entry.trainers = trainers


def _stop(entry: Entry) -> None:
    for trainer in entry.trainers:
        trainer.stop()
