"""TrainerProcess: a Trainer in a process of its own, driven with the Trainer's methods.

Why a process: threads of one process share the GIL. On a server, the pages' refreshes
(figures built and serialized, Streamlit's own work) hold it a large share of every second,
and a trainer thread beside them loses as much (``benchmarks/bench_app.py``; README has the
figures). A process has an interpreter of its own and trains on a core of its own, at a
lower priority than the pages (``NICENESS``).

1. The child runs an ordinary ``Trainer``; it sends each new Snapshot down a pipe (one per
   publish, every ``PUBLISH_INTERVAL`` at most) and does the commands that come up it.
2. In the parent, a thread named like a trainer thread keeps the latest snapshot and ends
   when the child has: a live run is one such thread, as with in-process trainers.
3. Children fork from a fork server that imported torch and bnviz once (``warm_up``, and
   ``bnviz.serve.warm``), so a run starts in tens of ms instead of the seconds a fresh torch takes,
   and a child does not inherit a web server's threads and sockets as a plain fork would.
4. A child whose parent is gone (the pipe closes) stops its run and exits: nothing trains
   for nobody. A child that dies (killed, out of memory) ends its run as "error", saying so.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
from dataclasses import replace

from bnviz.config import RunConfig, checked_lr
from bnviz.snapshot import Snapshot

AVAILABLE = "forkserver" in multiprocessing.get_all_start_methods()  # Linux and macOS; not Windows
_CONTEXT = multiprocessing.get_context("forkserver") if AVAILABLE else None
# What the fork server imports once for every run: the main module first (``_main_script``), then
# the trainer, and last a warm torch and the default data, which freezes everything made before it
# (``bnviz.serve.warm``). The parent never imports torch for its runs: a web server whose runs are
# processes saves it.
PRELOAD = ["__main__", "bnviz.serve.process", "bnviz.trainer", "bnviz.serve.warm"]
COMMANDS = ("pause", "resume", "step", "stop", "set_lr", "reestimate", "end_turn")  # the Trainer methods a parent may call
STATE = "state"  # a message up the pipe that carries a checkpoint (bytes), not a Snapshot
PROCESS_NAME = b"bnviz-run"  # the child's name in ps and /proc, so a server's runs can be counted
# A run takes only the CPU the pages leave (19, the lowest nice value): a class waits for its pages,
# and a run still trains at full speed whenever they do not want the core. At full priority four
# runs on two cores made a class's refreshes twice as slow ("A class at once" in README); at nice 5
# two runs still took two fifths of a shared core from the pages whenever both wanted it, and on
# one core a class's Starts and refreshes waited for them ("One link, one class").
NICENESS = 19


def warm_up(wait: bool = False) -> None:
    """Start the fork server now (it warms torch up, ~4 s here), not when the first visitor presses Start.
    ``wait``: return only once it has forked a first child, so the first run's start (made while
    the server's run pool is locked) does not wait for torch's import (~11 s on a loaded machine)."""
    _CONTEXT.set_forkserver_preload([PRELOAD[0], *_main_script(), *PRELOAD[1:]])
    multiprocessing.forkserver.ensure_running()
    if wait:
        first = _CONTEXT.Process(target=_nothing, name="bnviz-warm", daemon=True)
        first.start()
        first.join()


def _main_script() -> list[str]:
    """The parent's main script as a module the fork server imports, if it can (else nothing).

    Every child runs the parent's main script again before its target, as multiprocessing does (a
    page's server: ``app.py``, and with it Streamlit and Plotly: most of the CPU a run's start took).
    The fork server is meant to do that once (``"__main__"`` in its preload), but Python 3.11's never
    does (CPython gh-126631, fixed in later releases: it looks for a key that ``get_preparation_data``
    renamed). With the script's imports made in the fork server, a child's run of it finds them done."""
    path = getattr(sys.modules["__main__"], "__file__", None)
    if not path:
        return []
    folder, name = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(name)
    on_path = folder in {os.path.abspath(entry or os.curdir) for entry in sys.path}
    return [stem] if extension == ".py" and stem.isidentifier() and on_path else []


def _nothing() -> None:
    """A first child of the fork server: proof that it has imported what every run needs."""


class TrainerProcess:
    """One run in a child process. ``start()`` it, control it from any thread, read ``snapshot()``."""

    IN_PROCESS = True  # each run has its own interpreter and generators (bnviz.serve.pool.shareable)

    def __init__(self, config: RunConfig, data_dir: str | None = None, resume: bytes | None = None,
                 fork: bool = False, lr: float | None = None):
        """As ``Trainer``: ``resume`` a checkpoint of this config, ``fork`` marks it, ``lr`` from its first step."""
        self.config = config
        self.data_dir = data_dir
        self._start_from = (resume, fork, None if lr is None else checked_lr(lr))
        self._state: bytes | None = None  # the last checkpoint the child sent
        self._states = threading.Condition()  # a checkpoint arrived
        self._snapshot = Snapshot(config=config, lr=config.lr)
        self._conn, self._child_conn = _CONTEXT.Pipe()
        self._send_lock = threading.Lock()  # commands come from several page threads
        self._process = None
        self._killed = False  # ended by kill() after a stop: a stopped run, not a failed one
        self._listener = threading.Thread(target=self._listen, name=f"bnviz-trainer-{id(self):x}", daemon=True)

    def start(self, paused: bool = False) -> TrainerProcess:
        warm_up()  # a no-op once the fork server runs
        self._process = _CONTEXT.Process(target=_serve, name="bnviz-run", daemon=True,
                                         args=(self.config, self.data_dir, paused, self._child_conn, *self._start_from))
        self._start_from = None  # the child has the checkpoint now
        self._process.start()
        self._child_conn.close()  # the child holds its end: EOF here means the child is gone
        self._listener.start()
        return self

    def snapshot(self) -> Snapshot:
        return self._snapshot  # a reference swap is atomic: no lock needed to read

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def step(self, count: int = 1) -> None:
        """While paused, train ``count`` more steps and publish them."""
        self._send("step", count)

    def stop(self) -> None:
        """Ask the run to end after its current step; returns at once (safe on an event loop)."""
        self._send("stop")

    def set_lr(self, lr: float) -> None:
        """Change the learning rate from the next step on; it is marked on the timeline."""
        self._send("set_lr", checked_lr(lr))

    def reestimate(self) -> None:
        """Re-estimate BN's running statistics on training data (``Trainer.reestimate``)."""
        self._send("reestimate")

    def checkpoint(self, timeout: float | None = None) -> bytes | None:
        """The child's whole state between two steps (``Trainer.checkpoint``), as bytes this process
        never opens; after the run has ended, the state it ended its turn with (or None)."""
        if not self.alive:
            return self._state
        with self._states:
            self._state = None
            self._send("checkpoint")
            self._states.wait_for(lambda: self._state is not None or not self.alive, timeout)
            return self._state

    def end_turn(self) -> None:
        """Checkpoint, then stop: ``checkpoint()`` gives that state once the run has ended."""
        self._send("end_turn")

    def kill(self) -> None:
        """End the child now (SIGKILL): a stopped run that did not end within its grace period.
        Its run ends as "error", saying so; what it recorded up to its last snapshot is kept."""
        if self._process is not None and self._process.is_alive():
            self._killed = True
            self._process.kill()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end and its last snapshot to arrive; True if it has."""
        if self._listener.is_alive():
            self._listener.join(timeout)
        return not self._listener.is_alive()

    @property
    def alive(self) -> bool:
        return self._listener.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _send(self, *command) -> None:
        with self._send_lock:
            try:
                self._conn.send(command)
            except OSError:  # the child has ended: nothing left to control
                pass

    def _listen(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                if isinstance(message, tuple) and message[0] == STATE:
                    with self._states:
                        self._state = message[1]
                        self._states.notify_all()
                else:
                    self._snapshot = message
        except (EOFError, OSError):  # the child closed its end: it is ending
            pass
        self._process.join()
        self._conn.close()
        if not self._snapshot.done and self._killed:
            self._snapshot = replace(self._snapshot, status="stopped", version=self._snapshot.version + 1,
                                     message=f"stopped at step {self._snapshot.step}, by force: it did not end "
                                             "within its grace period")
        elif not self._snapshot.done:  # it died before its last word
            self._snapshot = replace(
                self._snapshot, status="error", version=self._snapshot.version + 1,
                message=f"the training process ended unexpectedly at step {self._snapshot.step} "
                        f"(exit code {self._process.exitcode}); its statistics up to then are kept")


def _serve(config: RunConfig, data_dir: str | None, paused: bool, conn, resume: bytes | None = None,
           fork: bool = False, lr: float | None = None) -> None:
    """The child's main: train, send every new snapshot, obey commands until the run ends."""
    from bnviz.trainer import Trainer  # already imported by the fork server (PRELOAD)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal: the parent ends us
    os.nice(NICENESS)
    _name_process(PROCESS_NAME)
    trainer = Trainer(config, data_dir, resume=resume, fork=fork, lr=lr).start(paused=paused)
    sending = threading.Lock()  # snapshots from here, checkpoints from the command thread
    threading.Thread(target=_obey, args=(trainer, conn, sending), name="bnviz-commands", daemon=True).start()
    sent = -1
    try:
        while True:  # each new snapshot as soon as it is published, without polling
            snapshot = trainer.wait(lambda latest: latest.version != sent)
            if snapshot.done and trainer.ended_turn:  # the state first: the parent requeues the run with it
                trainer.join()
                with sending:
                    conn.send((STATE, trainer.checkpoint()))
            with sending:
                conn.send(snapshot)
            sent = snapshot.version
            if snapshot.done:
                break
    except OSError:  # the parent is gone
        trainer.stop()
    trainer.join()
    conn.close()


def _obey(trainer, conn, sending) -> None:
    try:
        while True:
            name, *args = conn.recv()
            if name == "checkpoint":
                state = trainer.checkpoint()
                with sending:
                    conn.send((STATE, state))
            elif name in COMMANDS:
                getattr(trainer, name)(*args)
    except (EOFError, OSError):  # the parent is gone: nobody watches this run
        trainer.stop()


def _name_process(name: bytes) -> None:
    try:
        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)  # PR_SET_NAME (Linux); elsewhere the name stays
    except (OSError, AttributeError):
        pass

