"""RunPool: the server's runs, known by their config and watched by any number of tabs.

A class opens one link: thirty tabs ask for the same run. Training is deterministic (one
config, one history: ``tests/test_shared_runs.py``), so the pool trains each config once:

1. **A run is known by its key.** A shared run's key is ``RunConfig.key()``: a tab (an owner)
   that submits a config attaches to the run of that key if one is queued, training or
   finished, and sees it from step 0. A private run (Step from nothing, or a config that
   cannot be shared: ``shareable``) has a key of its own and one controlling owner.
2. **The queue holds runs, not tabs**, in order; runs submitted together (a comparison)
   start together. A queued run whose every watcher has been silent for ``queue_timeout``
   is passed over (a closed tab); an owner silent for ``idle_timeout`` is reaped, and a run
   nobody watches any more is stopped.
3. **Watching is shared, changing is private.** ``fork`` gives a tab private copies of the
   runs it watches, from their state now (``bnviz.checkpoint``: weights, optimizer, data
   position, history so far), with a new learning rate or paused after one more step; a
   private run takes a slot and queues like any other.
4. **The cap counts what runs.** A stopped run keeps its slot until its trainer has really
   ended; a run process still alive ``stop_grace`` seconds after its stop is killed.
5. **Turns.** While runs wait, a run watched by one tab only gives up its slot after
   ``turn_seconds`` of training: it ends its turn with its state and goes to the back of
   the queue, to continue from there when its turn comes again. A run two tabs or more
   watch is the class's, not one tab's, and keeps its slot.
6. Finished runs go to the ``RunCache`` when there is one (``bnviz.serve.cache``), so a
   later visitor opens them at once.

Nothing here blocks but ``fork`` (a checkpoint: up to a publish interval), which the page
calls from its own script thread. A run is a ``Trainer`` (a thread) by default; the app
passes ``TrainerProcess`` (``bnviz.serve.process``).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING

from bnviz.config import RunConfig
from bnviz.serve.runs import FINAL_KEPT, Entry, Run, private_key, shareable
from bnviz.serve.settings import (DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RUNNING, DEFAULT_QUEUE_TIMEOUT,
                                  DEFAULT_STOP_GRACE, DEFAULT_TURN_SECONDS)
from bnviz.snapshot import RunnerFactory

if TYPE_CHECKING:
    from bnviz.serve.cache import RunCache

class RunPool:
    """Thread-safe registry of runs by key, the tabs watching them, a cap and a queue."""

    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 data_dir: str | None = None, clock=time.monotonic, queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
                 make_trainer: RunnerFactory | None = None, cache: RunCache | None = None,
                 stop_grace: float = DEFAULT_STOP_GRACE, turn_seconds: float = DEFAULT_TURN_SECONDS):
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1 (got {max_running})")
        self.max_running = max_running
        self.idle_timeout = idle_timeout
        self.queue_timeout = queue_timeout
        self.stop_grace = stop_grace
        self.turn_seconds = turn_seconds  # 0: no turns
        self.data_dir = data_dir
        if make_trainer is None:
            from bnviz.trainer import Trainer  # imports torch

            make_trainer = Trainer
        self.make_trainer = make_trainer
        self.runs_in = "process" if getattr(make_trainer, "IN_PROCESS", False) else "thread"
        self.cache = cache
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}  # insertion order is the queue order
        self._owners: dict[str, Entry] = {}
        self._ending: list[tuple[object, float]] = []  # (stopped trainer, when): holds a slot until it ends
        self._groups = itertools.count(1)

    # --- what a tab does -------------------------------------------------------------------
    def submit(self, owner: str, configs, paused: bool = False) -> Entry:
        """Watch the runs of these configs: attached to the ones this server has, queued otherwise.

        ``paused`` (Step from nothing) makes private runs that start paused and take one step."""
        configs = tuple(configs)
        if not configs or len(configs) > self.max_running:
            raise ValueError(f"a submission holds 1 to {self.max_running} runs (got {len(configs)})")
        with self._lock:
            now, group = self._clock(), next(self._groups)
            runs = []
            for config in configs:
                ok, reason = shareable(config, self.runs_in)
                run = self._attach(config, now) if ok and not paused else None
                if run is None:
                    run = Run(private_key(config) if not ok or paused else config.key(), config,
                              controller=owner if not ok or paused else None, paused=paused, group=group,
                              reason=reason)
                    self._runs[run.key] = run
                runs.append(run)
            self._watch(owner, runs, now)
            self._admit()
            return self._stamp(owner)

    def open(self, owner: str, keys) -> Entry | None:
        """Watch runs by key (the class view's click); None if one of them is gone."""
        with self._lock:
            now, runs = self._clock(), []
            for key in keys:
                run = self._runs.get(key)
                if run is None and self.cache is not None:
                    final = self.cache.get(key)
                    if final is not None:
                        run = self._runs[key] = Run(key, final.config, final=final)
                if run is None:
                    return None
                runs.append(run)
            self._watch(owner, runs, now)
            return self._owners[owner]

    def get(self, owner: str) -> Entry | None:
        """The owner's entry, and a sign of life: also reaps and admits."""
        with self._lock:
            entry = self._owners.get(owner)
            now = self._clock()
            if entry is not None:
                entry.last_seen = now
                for run in entry.runs:
                    run.watchers[owner] = now
            self._sweep(now)
            return entry

    def release(self, owner: str) -> None:
        """Stop watching; runs nobody watches stop. Returns at once (safe on Streamlit's event loop)."""
        with self._lock:
            entry = self._owners.pop(owner, None)
            if entry is not None:
                self._unwatch(owner, entry.runs)
            self._admit()

    def fork(self, owner: str, lr: float | None = None, step: bool = False, timeout: float = 10.0) -> Entry | None:
        """Private copies of the owner's runs, from their state now (weights, optimizer, data position,
        history): with a new learning rate, or paused after one more step. Runs the owner controls are
        changed in place instead. Blocks for a checkpoint: call it from a page's script thread."""
        with self._lock:
            entry = self._owners.get(owner)
            if entry is None:
                return None
            sources = [(run, run.trainer) for run in entry.runs]
        states = []
        for run, trainer in sources:
            mine = run.controller == owner
            states.append(None if mine or trainer is None else trainer.checkpoint(timeout))
        with self._lock:
            now, group, runs = self._clock(), next(self._groups), []
            for (run, trainer), state in zip(sources, states):
                if run.controller == owner or state is None:  # its own run, or one with no state to fork
                    runs.append(run)
                    continue
                runs.append(Run(private_key(run.config), run.config, controller=owner, resume=state, fork=True,
                                lr=lr, paused=step, group=group))
                self._runs[runs[-1].key] = runs[-1]
            self._watch(owner, runs, now)
            self._admit()
            entry = self._stamp(owner)
        for run, trainer in sources:  # its own runs: the change applies in place
            if run.controller == owner and trainer is not None:
                if lr is not None:
                    trainer.set_lr(lr)
                if step:
                    trainer.pause()
                    trainer.step(1)
        return entry

    # --- what the page shows ---------------------------------------------------------------
    def position(self, owner: str) -> int:
        """How many queued runs are ahead of this owner's first queued run (silent ones are passed
        over, so not counted); 0 when none of its runs waits."""
        with self._lock:
            entry = self._owners.get(owner)
            if entry is None:
                return 0
            mine = {run.key for run in entry.runs if run.queued}
            ahead, now = 0, self._clock()
            for run in self._runs.values():
                if run.key in mine:
                    return ahead
                if run.queued and not self._silent(run, now):
                    ahead += 1
            return 0

    def turn_left(self, run: Run) -> float | None:
        """Seconds until this run gives up its slot to a waiting run (``turn_seconds``), or None
        if it will not: nobody waits, or more than one tab watches it."""
        with self._lock:
            now = self._clock()
            if (self.turn_seconds <= 0 or run.trainer is None or run.final is not None or run.started is None
                    or len(run.watchers) > 1 or not self._waiting(now)):
                return None
            return max(0.0, run.started + self.turn_seconds - now)

    def watching(self, run: Run) -> int:
        """Tabs watching this run now (each polls within the idle timeout)."""
        with self._lock:
            return len(run.watchers)

    def counts(self) -> dict[str, int]:
        """Runs and tabs by state, for the page and for tests."""
        with self._lock:
            runs = list(self._runs.values())
            return {
                "owners": len(self._owners),
                "runs": len(runs),
                "queued_runs": sum(run.queued for run in runs),
                "running_runs": sum(run.trainer is not None and run.final is None for run in runs),
                "done_runs": sum(run.done for run in runs),
                "queued_owners": sum(not e.running for e in self._owners.values()),
                "alive_trainers": self._busy(),
            }

    def unfinished(self) -> list[tuple[str, RunConfig, int]]:
        """(key, config, step) of every run not yet done: what a restart would lose."""
        with self._lock:
            runs = [run for run in self._runs.values() if not run.done]
        return [(run.key, run.config, run.snapshot().step) for run in runs]

    def runs(self) -> list[Run]:
        """Every run this server holds, in queue order (the class view)."""
        with self._lock:
            return list(self._runs.values())

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            trainers = [run.trainer for run in self._runs.values() if run.trainer is not None]
            trainers += [trainer for trainer, _ in self._ending]
            self._runs.clear()
            self._owners.clear()
            self._ending.clear()
        for trainer in trainers:
            trainer.stop()
        for trainer in trainers:
            trainer.join(timeout)

    def reap(self) -> None:
        with self._lock:
            self._sweep(self._clock())

    # --- inside the lock ---------------------------------------------------------------
    def _attach(self, config: RunConfig, now: float) -> Run | None:
        """The shared run of this config: one this server holds (not stopped), or one from the cache."""
        key = config.key()
        run = self._runs.get(key)
        if run is not None and run.final is not None and run.final.status not in FINAL_KEPT:
            del self._runs[key]  # stopped or failed: not the config's result, train it again
            run = None
        if run is None and self.cache is not None:
            final = self.cache.get(key)
            if final is not None:
                run = self._runs[key] = Run(key, config, final=final)
        return run

    def _stamp(self, owner: str) -> Entry:
        """The owner is here now: starting its runs may have taken a while (a cold fork server took
        ~11 s on a loaded machine), and the reaper must not take that for a closed tab."""
        entry, now = self._owners[owner], self._clock()
        entry.last_seen = now
        for run in entry.runs:
            run.watchers[owner] = now
        return entry

    def _watch(self, owner: str, runs: list[Run], now: float) -> None:
        old = self._owners.get(owner)
        self._owners[owner] = Entry(owner, tuple(runs), now)
        for run in runs:
            run.watchers[owner] = now
        if old is not None:
            self._unwatch(owner, [run for run in old.runs if run not in runs])

    def _unwatch(self, owner: str, runs) -> None:
        for run in runs:
            run.watchers.pop(owner, None)
            if not run.watchers:
                self._drop(run)

    def _drop(self, run: Run) -> None:
        """Nobody watches it: stop it; a finished one stays in the cache, not here."""
        if self._runs.get(run.key) is run:  # not a newer run of the same config
            del self._runs[run.key]
        if run.trainer is not None and run.final is None:
            self._end(run.trainer)

    def _end(self, trainer) -> None:
        trainer.stop()
        self._ending.append((trainer, self._clock()))

    def _busy(self) -> int:
        """Slots taken: live runs' trainers, and stopped ones that have not ended yet."""
        live = sum(1 for run in self._runs.values() if run.trainer is not None and run.final is None)
        return live + sum(trainer.alive for trainer, _ in self._ending)

    def _silent(self, run: Run, now: float) -> bool:
        """A queued run whose watchers have all stopped polling for ``queue_timeout``: closed tabs."""
        return all(now - seen > self.queue_timeout for seen in run.watchers.values())

    def _sweep(self, now: float) -> None:
        for owner, entry in list(self._owners.items()):
            if now - entry.last_seen > self.idle_timeout:
                del self._owners[owner]
                self._unwatch(owner, entry.runs)
        for run in list(self._runs.values()):
            self._settle(run, now)
        still = []
        for trainer, when in self._ending:
            if trainer.alive:
                if now - when > self.stop_grace and hasattr(trainer, "kill"):
                    trainer.kill()  # a process: ends now, and its listener with it
                still.append((trainer, when))
        self._ending = still
        self._turns(now)
        self._admit()

    def _settle(self, run: Run, now: float) -> None:
        """A run whose trainer has ended: its last snapshot is kept, and cached if it is the config's result."""
        trainer = run.trainer
        if trainer is None or run.final is not None or trainer.alive:
            return
        if run.yielding:
            state = trainer.checkpoint(0)
            if state is not None:
                del self._runs[run.key]  # to the back of the queue, a group of its own
                run.held = trainer.snapshot()
                run.trainer, run.resume, run.fork, run.yielding, run.started = None, state, False, False, None
                run.paused, run.group = False, next(self._groups)
                self._runs[run.key] = run
                return
        run.final = trainer.snapshot()
        if run.shared and run.final.status in FINAL_KEPT and self.cache is not None:
            self.cache.put(run.key, run.final)

    def _waiting(self, now: float) -> bool:
        return any(run.queued and not self._silent(run, now) for run in self._runs.values())

    def _turns(self, now: float) -> None:
        """While a run waits, a one-tab run past its turn yields its slot (checkpointed, requeued)."""
        if not self._waiting(now) or self.turn_seconds <= 0:
            return
        for run in self._runs.values():
            if (run.trainer is not None and run.final is None and not run.yielding and len(run.watchers) < 2
                    and run.started is not None and now - run.started > self.turn_seconds):
                run.yielding = True
                run.trainer.end_turn()  # checkpoint, then stop

    def _admit(self) -> None:
        """Start queued runs in order, a group's together, while they fit; the first that does not fit waits."""
        now = self._clock()
        groups: dict[int, list[Run]] = {}
        for run in self._runs.values():
            if run.queued:
                groups.setdefault(run.group, []).append(run)
        for runs in groups.values():
            if all(self._silent(run, now) for run in runs):
                continue
            if self._busy() + len(runs) > self.max_running:
                return
            for run in runs:
                self._start(run, now)

    def _start(self, run: Run, now: float) -> None:
        trainer = self.make_trainer(run.config, self.data_dir, resume=run.resume, fork=run.fork, lr=run.lr)
        trainer.start(paused=run.paused)
        if run.paused:  # here, not on the click: a Step that waited in line still gets its step
            trainer.step(1)
        run.trainer, run.started, run.resume, run.lr = trainer, now, None, None
