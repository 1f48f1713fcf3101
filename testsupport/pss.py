"""What a run in its own process really costs in memory: the growth of its fork server's and its
own proportional set size (PSS), sampled while it trains.

PSS splits each shared page among the processes that map it, so the sum over the fork server
and its runs counts every page once; the growth of that sum when a run starts is the run's own
memory (its private pages), which is what ``bnviz.budget.estimate`` estimates (``process_mb``).
Linux only (``/proc/<pid>/smaps_rollup``).
"""

from __future__ import annotations

import json
import multiprocessing.forkserver
import subprocess
import sys
import time
from pathlib import Path

from bnviz.config import RunConfig
from bnviz.serve import process
from testsupport.serverctl import pss_mb

SAMPLE_SECONDS = 0.02  # a step of the largest run allowed by the limits takes seconds: its peak is seen


def fork_server_pid() -> int:
    """The warm fork server's pid, started if it was not, and done importing: one tiny run has
    come back from it (its PSS grows by hundreds of MB while it imports torch)."""
    process.warm_up()
    first = process.TrainerProcess(RunConfig(steps=1)).start()
    first.join(120)
    return multiprocessing.forkserver._forkserver._forkserver_pid  # the stdlib keeps it there, unexported


def children(pid: int) -> list[int]:
    """The process's living children, from every process's ``/proc/<pid>/stat`` (its parent is
    the field after the name; ``/proc/<pid>/task/*/children`` is not on every kernel)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        if int(fields[1]) == pid and fields[0] != "Z":  # a zombie holds no memory
            found.append(int(stat.parent.name))
    return found


def wait_alone(server: int, timeout: float = 120.0) -> None:
    """Wait until no other run of the fork server is alive: while one ends, the pages it shared
    with the server stop being shared, and the server's PSS grows under the measurement."""
    deadline = time.monotonic() + timeout
    while children(server) and time.monotonic() < deadline:
        time.sleep(0.1)


def run_peak_mb(config: RunConfig, steps: int, timeout: float = 600.0) -> tuple[float, int]:
    """(peak growth in MB of the fork server's and the run's PSS, steps trained) over the first
    ``steps`` steps of ``config`` in a real run process (``TrainerProcess``), started when the
    fork server has no other run."""
    server = fork_server_pid()
    wait_alone(server)
    before = pss_mb(server)
    trainer = process.TrainerProcess(config).start()
    peak, deadline = 0.0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            peak = max(peak, pss_mb(server) + pss_mb(trainer.pid) - before)
            snapshot = trainer.snapshot()
            if snapshot.step >= steps or snapshot.done:
                break
            time.sleep(SAMPLE_SECONDS)
    finally:
        trainer.stop()
        trainer.join(60)
    return peak, trainer.snapshot().step


def fresh_run_peak_mb(config: RunConfig, steps: int, timeout: float = 600.0) -> tuple[float, int]:
    """``run_peak_mb`` in a fresh interpreter with a fresh fork server, as a deployment's server
    starts one: a test session's fork server has served many runs before, and the same run
    measured 25-80 MB more there than alone (the cause is not known; see README, "Reliability")."""
    command = [sys.executable, "-m", "testsupport.pss", config.to_json(), str(steps), str(timeout)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 120,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"the measurement failed: {done.stderr[-2000:]}")
    measured, trained = json.loads(done.stdout.strip().splitlines()[-1])
    return float(measured), int(trained)


if __name__ == "__main__":  # python -m testsupport.pss CONFIG_JSON STEPS TIMEOUT: prints [MB, steps]
    print(json.dumps(run_peak_mb(RunConfig.from_json(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))))
