"""Reproductions: train a preset's paired runs on several seeds, check the published claims, report.

``run_reproduction(name, seeds=5)`` trains one run per ``norm`` value of a reproduction
(``bnviz.reproduce.registry``) and seed, at most one per core at a time, writes each run
file (docs/run-format.md), checks the claims on the runs as the files hold them (an interval
over the seeds: ``bnviz.reproduce.claims``) and writes ``report.html`` and ``summary.txt``
(bnviz.reproduce.report).

Runs train in separate processes by default. Threads do not use both cores: a Trainer's
per-step Python work holds the GIL, and in a process that has loaded numpy its BLAS threads
compete too (benchmarks/bench_reproduce.py compares the two). ``parallel="thread"`` skips
the seconds a process takes to start, which is what the short runs of the tests want.

The runs go through this module's own process pool, not the map's joblib cells
(``bnviz.reproduce.cells``), because a cell keeps too little: a reproduction's claims read
every statistic of every step (the unit's percentiles for drift, the dead fraction for
collapse: a run file of a few MB), it reports each run's step while it trains, and on Ctrl-C
every run stops and still saves what it recorded; a cell sums its run up in a few numbers
when it ends. Both use one process per core.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import math
import multiprocessing
import os
import queue as queues
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from bnviz import machine
from bnviz.config import RunConfig
from bnviz.reproduce.facts import differences
from bnviz.reproduce.registry import DEFAULT_SEEDS, check_claims, seed_configs
from bnviz.reproduce.result import Result
from bnviz.runfile import write_run

Progress = Callable[[str, int, int, int, str], None]  # (norm, seed, step, steps, status)
Key = tuple[int, str]  # (seed, norm): one run of a reproduction

POLL_SECONDS = 0.5  # how often a worker reports its run's step: a progress line, not a chart
PARALLEL = ("process", "thread")
# One core per run: numpy's OpenBLAS otherwise starts a thread per core, and with every core
# training those threads spin against the trainers (a small matrix product in bnviz.stats cost
# 30x more before it moved to torch). Set in the workers' environment, as BLAS reads it when it loads.
WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def default_workers(runs: int) -> int:
    """One run per core: each Trainer uses one torch thread."""
    return max(1, min(runs, machine.cores()))


def run_reproduction(name: str, steps: int | None = None, out_dir=".", progress: Progress | None = None,
                     overrides: Mapping | None = None, parallel: str = "process", workers: int | None = None,
                     data_dir: str | None = None, report: bool = True, seeds: int = DEFAULT_SEEDS) -> Result:
    """Train the paired runs of every seed concurrently, write run files, check the claims,
    write the report."""
    if parallel not in PARALLEL:
        raise ValueError(f"parallel must be one of {', '.join(PARALLEL)} (got {parallel!r})")
    per_seed = seed_configs(name, seeds, steps, overrides)
    configs = {(config.seed, norm): config for pair in per_seed for norm, config in pair.items()}
    setup = differences(name, next(iter(configs.values())), data_dir)  # before training: fails fast
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {(seed, norm): out / f"{name}-{norm}-seed{seed}.json" for seed, norm in configs}
    workers = workers or default_workers(len(configs))
    started = time.perf_counter()
    runs, seconds, cpu_seconds = _train_all(configs, paths, parallel, workers, data_dir, progress or (lambda *args: None))
    train_seconds = time.perf_counter() - started
    order = [[(config.seed, norm) for norm, config in pair.items()] for pair in per_seed]

    def by_seed(values: dict) -> tuple[dict, ...]:
        return tuple({norm: values[(seed, norm)] for seed, norm in keys if (seed, norm) in values} for keys in order)

    seed_runs = by_seed(runs)
    claims = check_claims(name, seed_runs)
    summary = out / "summary.txt"
    summary.write_text("".join(claim.line + "\n" for claim in claims), encoding="utf-8")
    result = Result(name, out, by_seed(paths), seed_runs, by_seed(seconds), by_seed(cpu_seconds), claims,
                    train_seconds, out / "report.html", summary, parallel, workers, setup)
    if report:
        from bnviz.reproduce.report import write_report  # imports plotly: the workers never need it

        write_report(result, result.report, data_dir=data_dir)
    return result


@dataclass(frozen=True)
class _Job:
    key: Key
    config: dict
    path: str
    data_dir: str | None


def _train_all(configs: dict[Key, RunConfig], paths: dict[Key, Path], parallel: str, workers: int,
               data_dir: str | None, progress: Progress) -> tuple[dict[Key, dict], dict[Key, float], dict[Key, float]]:
    """Train every config, ``workers`` at a time; returns each run (as its file holds it) and
    its wall and CPU seconds."""
    jobs = [_Job(key, config.to_dict(), str(paths[key]), data_dir) for key, config in configs.items()]
    # Ctrl-C reaches only this process's main thread (workers ignore SIGINT, so an idle one cannot
    # die and break the pool); it sets `stop`, and each worker stops its run and saves what it recorded.
    if parallel == "process":
        context = multiprocessing.get_context("spawn")  # fork would copy this process's threads' locks
        messages, stop = context.Queue(), context.Event()
        executor = futures.ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(messages, stop))
    else:
        messages, stop = queues.Queue(), threading.Event()
        executor = futures.ThreadPoolExecutor(workers, thread_name_prefix="bnviz-reproduce",
                                              initializer=_init_worker, initargs=(messages, stop, False))
    interrupted = False
    with executor:
        with _environment(WORKER_ENVIRONMENT if parallel == "process" else {}):
            pending = [executor.submit(_train_job, job) for job in jobs]  # a process pool starts its workers here
        try:
            _relay(pending, messages, progress)
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            for future in pending:
                future.cancel()
            futures.wait(pending)
        _relay([], messages, progress)
        timings = {job.key: future.result() for job, future in zip(jobs, pending) if not future.cancelled()}
    if interrupted and len(timings) < len(jobs):
        raise KeyboardInterrupt  # a run never started: there is no pair to compare
    return ({key: run for key, (run, _, _) in timings.items()}, {key: wall for key, (_, wall, _) in timings.items()},
            {key: cpu for key, (_, _, cpu) in timings.items()})


def _relay(pending: list, messages, progress: Progress) -> None:
    """Pass workers' progress messages on until every job is done."""
    while True:
        try:
            progress(*messages.get(timeout=POLL_SECONDS / 2))
            continue
        except queues.Empty:
            pass
        if all(future.done() for future in pending):
            return


@contextlib.contextmanager
def _environment(values: Mapping[str, str]):
    """Environment variables set for processes started inside the block, restored after it."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_worker = threading.local()  # a worker's progress queue and stop flag, set by the pool's initializer


def _init_worker(messages, stop, own_process: bool = True) -> None:
    if own_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and sets `stop`
    _worker.messages, _worker.stop, _worker.own_process = messages, stop, own_process


def _train_job(job: _Job) -> tuple[dict, float, float]:
    """Train one run, write its run file; runs in a worker process or thread.

    Returns (the run as read_run would read the file, wall seconds, CPU seconds): the CPU time
    of the whole worker process (the trainer thread, importing torch); NaN in a thread, whose
    process is shared with the other runs. Handing the run back costs a pickle of a few MB of
    arrays; reading the file back cost the parent ~1 s a run.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    from bnviz.trainer import Trainer  # imports torch: only the workers need it (one torch thread: Trainer._run)

    messages, stop = _worker.messages, _worker.stop
    config = RunConfig.from_dict(job.config)
    trainer = Trainer(config, job.data_dir).start()
    while not trainer.snapshot().done:
        if stop.is_set():
            trainer.stop()  # ends after the current step and publishes what it recorded
            break
        snapshot = trainer.snapshot()
        messages.put((job.key[1], job.key[0], snapshot.step, config.steps, snapshot.status))
        stop.wait(POLL_SECONDS)
    trainer.join()
    snapshot = trainer.snapshot()
    run = write_run(snapshot, job.path)
    messages.put((job.key[1], job.key[0], snapshot.step, config.steps, snapshot.status))
    cpu_seconds = time.process_time() - cpu_started if _worker.own_process else math.nan
    return run, time.perf_counter() - started, cpu_seconds
