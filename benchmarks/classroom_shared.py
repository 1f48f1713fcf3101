"""A class on one link, on runs of its own, and mixed; a finished lesson after a restart; on one core or two.

The figures of issue 13, taken with protocol sessions (``testsupport/streamclient.py``: the
page's websocket protocol, nothing drawn, so the figures are the server's) against a real
server whose every process (web server, fork server, runs) is held to the cores asked for
with ``taskset`` (``--cores 0`` is one core). ``benchmarks/classroom.py --scenario ...`` runs it.

- ``link``: every session opens the lesson link (``?preset=ioffe-fig1&compare=1``, 50,000-step
  runs) and presses Start, all at once or spread over ``--spread`` seconds (a class told to press
  Start): seconds from Start to its page showing its run training (p50/p95; the run status read
  as it arrives, as a browser shows it, and at the end of the page's run), how often a page's
  picture changed (the refresh a student sees),
  the most run processes at once (the class's trainers), the server's refresh p50/p95, steps/s
  per trainer, memory (server, fork server and runs together, PSS) at its peak;
- ``own``: every session has a setting of its own (its own seed: distinct runs, short enough
  that the queue drains): the wait from Start to training, p50 and max, and the fairness;
- ``mixed``: two thirds on the link, a third on runs of their own;
- ``restart``: one session trains a short lesson to the end, the server restarts, a new session
  opens the link and presses Start: seconds until the finished run is on its page (from the
  run cache's file).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from testsupport import serverctl
from testsupport.classroom_report import jain, loadavg, parse, percentile, settle_threads, summarize
from testsupport.streamclient import StreamClient

LESSON = "preset=ioffe-fig1&compare=1&steps=50000"  # the link a teacher shares for the BN paper's Figure 1
LOAD_TIMEOUT_S = 240.0
CLICK_TIMEOUT_S = 60.0


def own(index: int, steps: int) -> str:
    return f"preset=ioffe-fig1&steps={steps}&seed={index + 1}"


def queries(args) -> list[str]:
    if args.scenario == "link":
        return [LESSON] * args.sessions
    if args.scenario == "own":
        return [own(i, args.own_steps) for i in range(args.sessions)]
    on_link = round(args.sessions * 2 / 3)
    return [LESSON] * on_link + [own(i, args.own_steps) for i in range(args.sessions - on_link)]


def server_for(args, log_name: str) -> serverctl.Server:
    prefix = ("taskset", "-c", args.cores) if args.cores else ()
    root = Path(args.root) if args.root else serverctl.REPO_ROOT
    return serverctl.Server(env={}, log_path=serverctl.ARTIFACTS / log_name, prefix=prefix, root=root)


async def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def _open(server, query: str) -> tuple[StreamClient, asyncio.Task]:
    client = StreamClient(server.url, query)
    return client, asyncio.create_task(client.run())


async def _class(args, server) -> dict:
    warm, task = await _open(server, "steps=200000")  # the server's resting state: torch warm, data loaded
    if not await _until(lambda: warm.loaded, LOAD_TIMEOUT_S) or not await warm.press("start") or \
            not await _until(lambda: parse(warm.state)[0] == "running", CLICK_TIMEOUT_S):
        raise RuntimeError(f"the warm-up session failed: {warm.problems} {warm.log}")
    await warm.press("reset")
    await asyncio.sleep(1)
    await warm.close()
    await task
    baseline = settle_threads(server)
    asked = queries(args)
    opened = [await _open(server, query) for query in asked]
    clients = [client for client, _ in opened]
    await _until(lambda: all(client.loaded for client in clients), LOAD_TIMEOUT_S)
    load_before, load_done = loadavg(), time.time()
    clicked = {}
    for index, client in enumerate(clients):
        await asyncio.sleep(max(0.0, index * args.spread / len(clients) - (time.time() - load_done)))
        if await client.press("start"):
            clicked[id(client)] = time.time()
    started = time.time()
    peak_runs, peak_mb = 0, 0.0
    while time.time() < started + args.duration:
        await asyncio.sleep(1)
        usage = server.usage()
        peak_runs, peak_mb = max(peak_runs, usage.run_processes), max(peak_mb, usage.total_mb)
    for client in clients:
        await client.close()
    await asyncio.gather(*(task for _, task in opened))
    return {"asked": asked, "clients": clients, "clicked": clicked, "peak_runs": peak_runs, "peak_mb": peak_mb,
            "baseline_mb": baseline.total_mb, "load": f"{load_before} -> {loadavg()}",
            "exceptions": sum(client.exceptions for client in clients)}


class Logged:
    """A client as testsupport.classroom_report.summarize reads a session: its states as they arrived
    (as a browser shows them), or with ``ended`` as of each run's end."""

    def __init__(self, client: StreamClient, clicked: float | None, ended: bool = False):
        self.log, self.clicked = client.ended_log if ended else client.log, clicked


def report(args, result: dict) -> list[tuple[str, str]]:
    rows = [("cores", args.cores or "all"), ("Start pressed over (s)", f"{args.spread:g}"),
            ("load average (1/5/15 min) before -> after", result["load"])]
    groups = {"link": [], "own": []}
    for query, client in zip(result["asked"], result["clients"]):
        summary = summarize(Logged(client, result["clicked"].get(id(client))))
        groups["link" if query == LESSON else "own"].append((client, summary))
    refresh = [seconds for client in result["clients"] for _, seconds in client.refresh.times]
    rows.append(("server refresh p50 / p95 (ms)", f"{percentile(refresh, 50) * 1000:.0f} / "
                                                   f"{percentile(refresh, 95) * 1000:.0f} ({len(refresh)} refreshes)"))
    rows.append(("run processes at most (trainers)", str(result["peak_runs"])))
    for name, members in groups.items():
        if not members:
            continue
        waits = [s.started_after for _, s in members if s.started_after is not None]
        rates = [s.rate for _, s in members if s.rate]
        label = "on the link" if name == "link" else "on runs of their own"
        rows.append((f"sessions {label}: showing their run training", f"{len(waits)} of {len(members)}"))
        if waits:
            rows.append(("  Start -> training, p50 / p95 / max (s)",
                         f"{percentile(waits, 50):.2f} / {percentile(waits, 95):.2f} / {max(waits):.2f}"))
            ended = [summarize(Logged(c, result["clicked"].get(id(c)), ended=True)).started_after for c, _ in members]
            ended = [wait for wait in ended if wait is not None]
            rows.append(("    the same, read at the end of the page's run (s)",
                         f"{percentile(ended, 50):.2f} / {percentile(ended, 95):.2f} / {max(ended):.2f}"))
        intervals = [seconds for _, s in members for seconds in s.intervals]
        if intervals:
            rows.append(("  the page's picture changed every p50 / p95 (s)",
                         f"{percentile(intervals, 50):.2f} / {percentile(intervals, 95):.2f}"))
        if rates:
            rows.append(("  steps/s seen per session p50 (min-max); fairness (Jain)",
                         f"{percentile(rates, 50):.0f} ({min(rates):.0f}-{max(rates):.0f}); {jain(rates):.2f}"))
        ahead = [s.max_ahead for _, s in members if s.max_ahead is not None]
        if ahead:
            rows.append(("  told at most this many runs ahead", str(max(ahead))))
    rows.append(("memory: server, fork server and runs (PSS), baseline / peak (MB)",
                 f"{result['baseline_mb']:.0f} / {result['peak_mb']:.0f}"))
    rows.append(("exceptions on pages", str(result["exceptions"])))
    return rows


async def _restart(args, server) -> list[tuple[str, str]]:
    lesson = f"preset=ioffe-fig1&compare=1&steps={args.own_steps}"
    client, task = await _open(server, lesson)
    await _until(lambda: client.loaded, LOAD_TIMEOUT_S)
    await client.press("start")
    trained = time.time()
    finished = await _until(lambda: parse(client.state)[0] == "finished", 600)
    trained = time.time() - trained
    await client.close()
    await task
    if not finished:
        raise RuntimeError(f"the lesson run did not finish: {client.log[-3:]}")
    await asyncio.sleep(2)  # its run files are written in the background
    server.restart()
    client, task = await _open(server, lesson)
    await _until(lambda: client.loaded, LOAD_TIMEOUT_S)
    await client.press("start")
    pressed = time.time()
    reopened = await _until(lambda: parse(client.state)[0] == "finished", 60)
    seconds = time.time() - pressed
    await client.close()
    await task
    return [("cores", args.cores or "all"), ("load average", loadavg()),
            (f"lesson of {args.own_steps:,} steps trained in (s)", f"{trained:.1f}"),
            ("after a restart, Start -> the finished run on the page (s)",
             f"{seconds:.2f}" if reopened else "not reopened within 60 s")]


def run(args) -> int:
    server = server_for(args, f"classroom-{args.scenario}-server.log")
    with server:
        if args.scenario == "restart":
            rows = asyncio.run(_restart(args, server))
        else:
            rows = report(args, asyncio.run(_class(args, server)))
        errors = sum(not t.upstream_disconnect for t in serverctl.tracebacks(server.log(everything=True)))
    rows.append(("tracebacks in the server log", str(errors)))
    width = max(len(name) for name, _ in rows)
    print(f"\n{args.scenario}: {args.sessions} sessions, {args.duration:.0f} s")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return errors
