"""Tests for bnviz.serve.process: a run in a child process records what the same run in a thread
records, obeys the same controls, and never trains for nobody nor dies in silence.

Every run a test starts is stopped and joined by the ``runs`` fixture.
"""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from bnviz.config import RunConfig
from bnviz.serve.process import NICENESS, TrainerProcess
from bnviz.trainer import Trainer

WAIT = 60.0  # seconds: the first run of a session waits for the fork server to import torch
SMALL = RunConfig(dataset="synthetic", depth=2, width=16, batch_size=32, steps=200, eval_every=50, eval_size=200)
LONG = RunConfig(dataset="synthetic", depth=2, width=16, batch_size=32, steps=200_000, eval_every=1000, eval_size=200)
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runs():
    """Start process runs through this; all of them are stopped and joined after the test."""
    started: list[TrainerProcess] = []

    def start(config: RunConfig, paused: bool = False) -> TrainerProcess:
        run = TrainerProcess(config).start(paused=paused)
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop()
    for run in started:
        assert run.join(WAIT), "a run's process did not end"


def wait_for(run, condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        snapshot = run.snapshot()
        if condition(snapshot):
            return snapshot
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}; last: {run.snapshot().status} at {run.snapshot().step}")


def test_a_process_run_records_what_a_thread_run_records(runs):
    run = runs(SMALL)
    assert run.join(WAIT)
    theirs = run.snapshot()
    thread = Trainer(SMALL).start()
    assert thread.join(WAIT)
    ours = thread.snapshot()
    assert (theirs.status, theirs.step) == (ours.status, ours.step) == ("finished", 200)
    assert theirs.message == ours.message
    assert set(theirs.columns) == set(ours.columns)
    for name, column in ours.columns.items():
        if column.dtype.kind == "f":  # a float64 matmul may sum in another order in another process
            np.testing.assert_allclose(theirs.columns[name], column, rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(theirs.columns[name], column, err_msg=name)
    np.testing.assert_array_equal(theirs.accuracy_steps, ours.accuracy_steps)
    np.testing.assert_array_equal(theirs.accuracy, ours.accuracy)


def test_controls_reach_the_child(runs):
    run = runs(LONG, paused=True)
    wait_for(run, lambda s: s.status == "paused", "the paused start")
    run.step(3)
    paused = wait_for(run, lambda s: s.step == 3 and s.status == "paused", "three single steps")
    run.set_lr(0.5)
    run.resume()
    moving = wait_for(run, lambda s: s.step > 20 and s.status == "running", "the resumed run")
    assert moving.lr == 0.5 and moving.version > paused.version
    run.pause()
    wait_for(run, lambda s: s.status == "paused", "the pause")
    run.stop()
    assert run.join(WAIT)
    assert run.snapshot().status == "stopped" and not run.alive


def test_a_bad_learning_rate_is_refused_in_the_parent(runs):
    run = runs(LONG, paused=True)
    with pytest.raises(ValueError, match="lr must be between"):
        run.set_lr(float("nan"))
    assert wait_for(run, lambda s: s.status == "paused", "the paused start").lr == LONG.lr


def test_a_killed_child_ends_the_run_as_an_error_with_its_statistics(runs):
    run = runs(LONG)
    before = wait_for(run, lambda s: s.step > 50, "some steps")
    os.kill(run.pid, signal.SIGKILL)
    assert run.join(WAIT)
    after = run.snapshot()
    assert after.status == "error" and after.done
    assert "ended unexpectedly" in after.message and "exit code -9" in after.message
    assert after.step >= before.step and len(after.column("steps")) > 0


def test_a_child_stops_when_its_parent_is_gone():
    """A server killed outright leaves no run training: the pipe closes, the child exits."""
    script = ("import os, sys, time\n"
              "from bnviz.config import RunConfig\n"
              "from bnviz.serve.process import NICENESS, TrainerProcess\n"
              "if __name__ == '__main__':\n"
              "    run = TrainerProcess(RunConfig(dataset='synthetic', depth=2, width=16, steps=200_000)).start()\n"
              "    while run.snapshot().step < 10: time.sleep(0.01)\n"
              "    print(run.pid, flush=True)\n"
              "    os._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=WAIT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])
    deadline = time.monotonic() + WAIT
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid), f"run process {pid} still running after its parent exited"


def test_a_run_yields_the_cpu_to_its_server(runs):
    run = runs(LONG, paused=True)
    wait_for(run, lambda s: s.status == "paused", "the paused start")
    fields = Path(f"/proc/{run.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(fields[16]) == min(os.nice(0) + NICENESS, 19)  # field 19 of stat: the nice value


def test_snapshots_pickle_and_stay_read_only(runs):
    run = runs(SMALL)
    assert run.join(WAIT)
    snapshot = pickle.loads(pickle.dumps(run.snapshot()))
    assert snapshot.step == 200 and isinstance(snapshot.columns, MappingProxyType)
    assert not snapshot.column("hist_pre").flags.writeable
    with pytest.raises(ValueError):
        snapshot.column("loss")[0] = 0.0


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a container's init may not reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_the_fork_server_makes_the_main_scripts_imports_once_not_every_run(tmp_path):
    """Each child runs the parent's main script again (multiprocessing); Python 3.11's fork server never
    preloads it (CPython gh-126631), so every run imported all the script imports (Streamlit and Plotly for
    app.py). The fork server now imports the script as a module: a child finds its imports done."""
    log = tmp_path / "imported"
    (tmp_path / "heavy.py").write_text("import os\nwith open(os.environ['IMPORTED'], 'a') as f:\n"
                                       "    f.write(f'{os.getpid()}\\n')\n")
    (tmp_path / "main.py").write_text(
        "import heavy\n"
        "if __name__ == '__main__':\n"
        "    from bnviz.config import RunConfig\n"
        "    from bnviz.serve.process import TrainerProcess, warm_up\n"
        "    warm_up(wait=True)\n"
        "    run = TrainerProcess(RunConfig(dataset='synthetic', depth=2, width=16, batch_size=32, steps=20,\n"
        "                                   eval_every=10, eval_size=100)).start()\n"
        "    run.join(120)\n"
        "    print(run.snapshot().status)\n")
    env = {**os.environ, "IMPORTED": str(log), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip() == "finished", done.stderr[-2000:]
    importers = log.read_text().split()
    assert len(set(importers)) == len(importers) == 2  # the script and the fork server; no run
