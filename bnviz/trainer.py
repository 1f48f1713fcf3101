"""Trainer: trains one RunConfig in a background thread and publishes Snapshots.

The thread owns the network, the optimizer and the probe; other threads only send it
commands (pause, resume, step, stop, a new learning rate) and read ``snapshot()``, which
returns the latest immutable Snapshot without waiting for training. The thread never
dies silently: a NaN/Inf loss ends the run as "diverged at step N" and any exception as
"error", both with the statistics recorded so far.
"""

from __future__ import annotations

import math
import threading
import time
from types import MappingProxyType
from typing import Callable

import torch
import torch.nn.functional as F

from bnviz import checkpoint, landscape
from bnviz.config import RunConfig, checked_lr
from bnviz.data import BatchStream, load_dataset
from bnviz.evaluation import Evaluations
from bnviz.history import History, Series
from bnviz.model import build_model
from bnviz.optim import build_optimizer, onecycle_factor, onecycle_momentum, set_momentum
from bnviz.probes import ActivationProbe
from bnviz.snapshot import Snapshot
from bnviz.stats import post_edges, pre_edges

PUBLISH_INTERVAL = 0.2  # seconds between snapshots at most: a step reaches the screen well within a second
MAX_LR_EVENTS = 1000  # live learning-rate changes kept for the timeline


class Trainer:
    """One run. ``start()`` it, control it from any thread, read ``snapshot()``."""

    def __init__(self, config: RunConfig, data_dir: str | None = None, resume: bytes | None = None,
                 fork: bool = False, lr: float | None = None):
        """``resume``: a ``bnviz.checkpoint`` of this config to continue from; ``fork``: that
        continuation is a fork of another run, marked on the timeline at its step; ``lr``: a
        new learning rate from its first step on (marked like any live change)."""
        self.config = config
        self.data_dir = data_dir
        self._resume, self._fork = resume, fork
        self._forked_at: int | None = None
        self._want_state = False  # checkpoint() asked the thread for its state
        self._state: bytes | None = None  # the last state it captured
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # commands for the thread
        self._published = threading.Condition(self._lock)  # a new snapshot, for wait()
        self._paused = False
        self._step_requests = 0
        self._stop_requested = False
        self._pending_lr: float | None = None if lr is None else checked_lr(lr)
        self._reestimate_requested = False
        self.ended_turn = False  # end_turn() was asked: the run stops with its state captured
        self._base_lr = config.lr
        self._lr_events: list[tuple[int, float]] = []
        self._snapshot = Snapshot(config=config, lr=config.lr)
        self._thread = threading.Thread(target=self._run, name=f"bnviz-trainer-{id(self):x}", daemon=True)

    def start(self, paused: bool = False) -> Trainer:
        self._paused = paused
        self._thread.start()
        return self

    def snapshot(self) -> Snapshot:
        return self._snapshot  # a reference swap is atomic: no lock needed to read

    def wait(self, until: Callable[[Snapshot], bool], timeout: float | None = None) -> Snapshot:
        """Block until a published snapshot satisfies ``until``, or the run has ended, or
        ``timeout`` seconds pass; returns the latest snapshot. A reader that polls instead
        takes the GIL from training at every poll."""
        with self._published:
            self._published.wait_for(lambda: self._snapshot.done or until(self._snapshot), timeout)
        return self._snapshot

    def pause(self) -> None:
        with self._wake:
            self._paused = True

    def resume(self) -> None:
        with self._wake:
            self._paused = False
            self._wake.notify_all()

    def step(self, count: int = 1) -> None:
        """While paused, train ``count`` more steps and publish them."""
        with self._wake:
            self._step_requests += count
            self._wake.notify_all()

    def stop(self) -> None:
        """Ask the thread to end after its current step; returns at once (safe on an event loop)."""
        with self._wake:
            self._stop_requested = True
            self._wake.notify_all()

    def checkpoint(self, timeout: float | None = None) -> bytes | None:
        """The run's whole state between two steps (``bnviz.checkpoint``): what a fork starts
        from. Taken by the training thread at its next publish (within PUBLISH_INTERVAL), or at
        once once it has ended; None before the run is set up or if ``timeout`` passes."""
        if not self._thread.is_alive():
            if self._state is None and getattr(self, "_stream", None) is not None:
                self._state = checkpoint.capture(self)
            return self._state
        with self._wake:
            self._want_state, self._state = True, None
            self._wake.notify_all()
            self._wake.wait_for(lambda: not self._want_state, timeout)
            return self._state

    def end_turn(self) -> None:
        """Capture the state, then stop: the run continues later from ``checkpoint()``."""
        with self._wake:
            self.ended_turn = True
            self._want_state, self._state, self._stop_requested = True, None, True
            self._wake.notify_all()

    def set_lr(self, lr: float) -> None:
        """Change the learning rate from the next step on; it is marked on the timeline."""
        lr = checked_lr(lr)
        with self._wake:
            self._pending_lr = lr

    def reestimate(self) -> None:
        """Replace BN's running statistics by those of training data (``bnviz.evaluation.reestimate``),
        between two steps, also while paused; the held-out accuracy before and after is recorded."""
        with self._wake:
            self._reestimate_requested = True
            self._wake.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True if it has."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        torch.set_num_threads(1)  # one core per run: many sessions share the machine
        status, message = "error", "the trainer ended unexpectedly"
        self._history = History()
        self._evaluations = None  # bnviz.evaluation.Evaluations, once the network exists
        self._landscape = Series(3)
        self._step = 0
        self._last_eval = -1
        self._rate = 0.0
        try:
            self._setup()
            with self._probe:
                status, message = self._loop()
        except Exception as error:  # the thread's last word: shown on the page, never a silent death
            status, message = "error", f"{type(error).__name__}: {error}"
        finally:
            probe = getattr(self, "_probe", None)
            if probe is not None:
                try:
                    self._absorb(probe.drain())
                    self._history.close()  # the last, partial column too: a finished run shows every step
                    probe.remove()
                except Exception as error:
                    status, message = "error", f"{type(error).__name__} while saving the last steps: {error}"
            self._publish(status, message)
            with self._wake:  # a checkpoint asked for as the run ended: its state as it ended
                if self._want_state:
                    if getattr(self, "_stream", None) is not None:
                        self._state = checkpoint.capture(self)
                    self._want_state = False
                    self._wake.notify_all()

    def _setup(self) -> None:
        config = self.config
        self._dataset = load_dataset(config.dataset, self.data_dir)
        torch.manual_seed(config.seed)  # anything left to the global generator is seeded too
        self._network = build_model(config, self._dataset.input_shape, self._dataset.num_classes)
        self._optimizer = build_optimizer(config, self._network)
        self._stream = BatchStream(self._dataset, config.batch_size, config.seed)
        self._probe = ActivationProbe(self._network, config.activation, config.batch_size, self._dataset.input_shape)
        self._layer_names = tuple(self._network.layer_names())
        self._evaluations = Evaluations(self._network)
        self._last_batch = None
        self._pre_edges = pre_edges(config.activation)
        self._post_edges = post_edges(config.activation)
        if self._resume is not None:
            step = checkpoint.restore(self, self._resume)
            self._resume = None
            self._forked_at = step if self._fork else None
        self._publish("paused" if self._paused else "running", "")

    def _loop(self) -> tuple[str, str]:
        config = self.config
        while self._step < config.steps:
            budget = self._wait_for_work()
            if budget == 0:
                return "stopped", f"stopped at step {self._step}"
            deadline = time.perf_counter() + (PUBLISH_INTERVAL if self._step else 0.0)  # the first step at once
            started, first = time.perf_counter(), self._step
            while budget and self._step < config.steps and not self._probe.full:
                loss = self._train_step()
                budget -= 1
                if not math.isfinite(loss):
                    return "diverged", f"diverged at step {self._step}: the loss became {loss} (try a smaller learning rate or BatchNorm)"
                if time.perf_counter() > deadline or self._stop_requested:
                    break
            elapsed = time.perf_counter() - started
            if elapsed > 0 and self._step > first:
                rate = (self._step - first) / elapsed
                self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate
            self._absorb(self._probe.drain())
            self._publish("paused" if self._paused else "running", "")
        self._evaluate_if_due(final=True)
        return "finished", f"finished {config.steps} steps"

    def _wait_for_work(self) -> int:
        """How many steps to train before publishing again (0: stop); blocks while paused.
        A re-estimation asked for meanwhile is done here, between steps, and published; so is a
        checkpoint (``bnviz.checkpoint``), the probe just drained: a whole state."""
        while True:
            with self._wake:
                while True:
                    if self._want_state:
                        self._state, self._want_state = checkpoint.capture(self), False
                        self._wake.notify_all()
                    if not (self._paused and not self._step_requests and not self._stop_requested
                            and not self._reestimate_requested):
                        break
                    self._wake.wait()
                if self._stop_requested:
                    return 0
                reestimate, self._reestimate_requested = self._reestimate_requested, False
                if not reestimate:
                    if self._paused:
                        return self._step_requests  # _train_step takes each one back: a full ring or a publish keeps the rest
                    return self.config.steps
            self._reestimate()
            self._publish("paused" if self._paused else "running", "")

    def _reestimate(self) -> None:
        """The remedy for a train/eval gap (``Evaluations.reestimate``), between two steps."""
        self._probe.recording = False
        self._evaluations.reestimate(self._network, self._step, *self._held_out(), self._dataset.train_x)

    def _train_step(self) -> float:
        """One optimizer step; returns its loss (NaN/Inf means the run diverged)."""
        config, probe = self.config, self._probe
        if self._pending_lr is not None:
            with self._lock:
                self._base_lr, self._pending_lr = self._pending_lr, None
                if len(self._lr_events) < MAX_LR_EVENTS:
                    self._lr_events.append((self._step, self._base_lr))
        if self._step_requests:  # this step is one that step() asked for
            with self._wake:
                self._step_requests -= 1
        lr = self._lr_at(self._step)
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        if config.schedule == "onecycle":
            set_momentum(self._optimizer, onecycle_momentum(self._step / config.steps))
        record = (self._step + 1) % config.record_every == 0  # steps r, 2r, ...: aligned with eval_every
        probe.recording = record
        x, y = self._stream.next_batch()
        logits = self._network(x)  # x: (batch, 1, 28, 28) -> (batch, classes)
        loss = F.cross_entropy(logits, y)  # y: (batch,)
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        self._step += 1
        if record:
            probe.record_after_backward(self._step, value)
        if not math.isfinite(value):
            return value
        if config.landscape_every and self._step % config.landscape_every == 0:
            probe.recording = False
            self._landscape.add(self._step, landscape.measure(self._network, x, y, lr))
        self._evaluations.train_batch(logits, y)  # training accuracy from these logits: no extra forward pass
        self._last_batch = x
        self._optimizer.step()
        self._evaluate_if_due()
        return value

    def _lr_at(self, step: int) -> float:
        if self.config.schedule == "constant":
            return self._base_lr
        return self._base_lr * onecycle_factor(step / self.config.steps)

    def _evaluate_if_due(self, final: bool = False) -> None:
        due = self._step != self._last_eval if final else self._step % self.config.eval_every == 0
        if not due:
            return
        self._last_eval = self._step
        self._probe.recording = False
        self._evaluations.evaluate(self._network, self._step, *self._held_out(), self.config.batch_size,
                                   self._last_batch)

    def _held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        data = self._dataset
        size = min(self.config.eval_size, len(data.test_y))
        return data.test_x[:size], data.test_y[:size]

    def _absorb(self, batches) -> None:
        for stats in batches:
            self._history.add(stats)

    def _publish(self, status: str, message: str) -> None:
        landscape_steps, landscape_values = self._landscape.arrays()
        with self._lock:
            lr_events = tuple(self._lr_events)
        previous = self._snapshot
        measured = self._evaluations.snapshot_fields() if self._evaluations is not None else {}
        self._snapshot = Snapshot(
            config=self.config,
            status=status,
            message=message,
            step=self._step,
            steps_per_second=self._rate,
            version=previous.version + 1,
            layer_names=getattr(self, "_layer_names", ()),
            pre_edges=getattr(self, "_pre_edges", previous.pre_edges),
            post_edges=getattr(self, "_post_edges", previous.post_edges),
            stride=self._history.stride,
            lr=self._lr_at(min(self._step, self.config.steps - 1)),
            columns=MappingProxyType(self._history.columns()),
            lr_events=lr_events,
            forked_at=self._forked_at,
            landscape_steps=landscape_steps,
            landscape=landscape_values,
            **measured,
        )
        with self._published:
            self._published.notify_all()
