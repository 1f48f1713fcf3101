"""The classroom script's figures: what each session went through, and the tables it prints."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bnviz.serve.settings import REAP_SECONDS  # how often the server sweeps for abandoned runs
from testsupport import serverctl


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    values = sorted(values)
    if not values:
        return math.nan
    position = (len(values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def parse(state: str) -> tuple[str, int | None, int | None]:
    """'running 12 1000' -> ('running', 12, 1000); 'queued 3' -> ('queued', 3, None)."""
    parts = state.split()
    numbers = [int(p) for p in parts[1:] if p.isdigit()]
    return parts[0] if parts else "", *(numbers + [None, None])[:2]


@dataclass
class Summary:
    """What one page went through."""

    kinds: set[str]
    max_ahead: int | None
    started_after: float | None  # seconds from Start pressed to the first step shown
    first_step: int | None
    last_step: int | None
    rate: float | None  # steps/s while shown running, over at least RATE_MIN_S
    intervals: list[float]  # seconds between successive progress-line changes while running
    final: str


RATE_MIN_S = 5.0


def summarize(session) -> Summary:
    """A browser or protocol session's log of states, summed up."""
    kinds, ahead, running, intervals = set(), [], [], []
    previous = None
    for when, state in session.log:
        kind, a, _ = parse(state)
        kinds.add(kind)
        if kind == "queued":
            ahead.append(a)
        if kind == "running" and a is not None:
            if previous is not None:
                intervals.append(when - previous)
            previous = when
            running.append((when, a))
        else:
            previous = None
    rate = None
    if len(running) >= 2 and running[-1][0] - running[0][0] >= RATE_MIN_S:
        rate = (running[-1][1] - running[0][1]) / (running[-1][0] - running[0][0])
    started = next((when for when, state in session.log if parse(state)[0] == "running"), None)
    steps = [step for _, step in running] + [parse(s)[1] for _, s in session.log if parse(s)[0] in ("finished",)]
    return Summary(kinds, max(ahead) if ahead else None,
                   None if started is None or session.clicked is None else started - session.clicked,
                   min(steps) if steps else None, max(steps) if steps else None, rate, intervals,
                   session.log[-1][1] if session.log else "nothing recorded")


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when every trainer got the same rate, 1/n when one got everything."""
    values = [v for v in values if v is not None]
    if not values or not any(values):
        return math.nan
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def own_threads(usage: serverctl.Usage) -> int:
    """Threads other than Streamlit's pools, which grow on demand (``serverctl.Usage.worker_threads``)."""
    return usage.threads - usage.worker_threads


def settle_threads(server, quiet: float = 3.0, timeout: float = 30.0):
    """The server's usage once no trainer is left and its own threads have not changed for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    last, since = server.usage(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)  # outside any browser: nothing to wait on but the clock
        now = server.usage()
        if own_threads(now) != own_threads(last) or now.trainer_threads:
            since = time.monotonic()
        last = now
        if time.monotonic() - since >= quiet:
            break
    return last


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def report_load(args, sessions, samples, cold, baseline, end_usage, settled, after,
                exceptions, log, clicked_at, started) -> int:
    summaries = [summarize(s) for s in sessions]
    found = serverctl.tracebacks(log)
    upstream = [t for t in found if t.upstream_disconnect]
    tracebacks = len(found) - len(upstream)
    busy_after = [t for t, u in after if u.trainer_threads]  # seconds after closing with a trainer alive
    runs_gone = (busy_after[-1] + 1) if busy_after else 0.0  # to the next 1 s sample
    restarted = sum(max(0, b.trainer_threads - a.trainer_threads) for (_, a), (_, b) in zip(after, after[1:]))
    own_back = next((t for t, u in after if own_threads(u) <= own_threads(baseline) and t >= runs_gone), None)
    driver_problems = [f"page {s.index}: {p}" for s in sessions for p in s.problems]
    served = sum(s.loaded is not None for s in sessions)
    ran = [m for m in summaries if "running" in m.kinds or "finished" in m.kinds]
    queued = [m for m in summaries if "queued" in m.kinds]
    queued_then_ran = [m for m in queued if "running" in m.kinds or "finished" in m.kinds]
    advanced = [m for m in ran if m.last_step is not None and m.first_step is not None and m.last_step > m.first_step]
    intervals = [i for m in summaries for i in m.intervals]
    refresh = [t for s in sessions for when, t in s.refresh_times if clicked_at <= when]
    rates = [m.rate for m in ran if m.rate is not None]
    during = [(when, u) for when, u in samples if when <= clicked_at + args.duration]
    load_samples = [u for _, u in during]
    reaped = [m for m in summaries if "reaped" in m.kinds]
    errors = exceptions + tracebacks + len(driver_problems) + sum("exception" in m.kinds for m in summaries)
    rows = [
        ("figure", "value", "how"),
        ("sessions served", f"{served} of {len(sessions)}", f"{args.clients}: Start button drawn within the page-load timeout"),
        ("page load p50 / max", f"{percentile([s.loaded - s.opened for s in sessions if s.loaded], 50):.1f} s / "
                                f"{max((s.loaded - s.opened for s in sessions if s.loaded), default=math.nan):.1f} s",
         "all pages opened at once"),
        ("errors", str(errors), f"{exceptions} stException, {tracebacks} tracebacks in the server log, "
                                f"{len(driver_problems)} driver problems"),
        ("  Streamlit websocket-close tracebacks", str(len(upstream)),
         "upstream: a tab closed mid-handshake (serverctl.UPSTREAM_DISCONNECT); not counted above"),
        ("trained", f"{len(ran)} sessions", f"max running {args.max_running or 'default (4)'}; {args.steps} steps each"),
        ("steps advanced on screen", f"{len(advanced)} of {len(ran)}", "progress line's step grew"),
        ("runs reaped while the tab was open", str(len(reaped)),
         f"page did not poll for {args.idle_timeout:.0f} s (its refresh stalled): 'stopped because the page ...'"),
        ("saw 'N ahead of you'", f"{len(queued)} sessions, max {max((m.max_ahead or 0 for m in queued), default=0)} ahead",
         "queue message on the page"),
        ("queued, then started", f"{len(queued_then_ran)} of {len(queued)}", f"within {args.duration:.0f} s"),
        ("wait to start p50 / max", f"{percentile([m.started_after for m in ran if m.started_after is not None], 50):.1f} s / "
                                    f"{max((m.started_after for m in ran if m.started_after is not None), default=math.nan):.1f} s",
         "Start pressed -> first step on screen"),
        ("steps/s per trainer p50 (min-max)", f"{percentile(rates, 50):.0f} ({min(rates, default=math.nan):.0f}-"
                                              f"{max(rates, default=math.nan):.0f})", "on screen, while running"),
        ("fairness (Jain index)", f"{jain(rates):.2f}", "1 = every trainer the same rate"),
        ("progress interval p50 / p95", f"{ms(percentile(intervals, 50))} / {ms(percentile(intervals, 95))}",
         f"page: time between progress-line updates ({len(intervals)} updates)"),
        ("server refresh time p50 / p95", f"{ms(percentile(refresh, 50))} / {ms(percentile(refresh, 95))}",
         f"websocket: fragment rerun sent -> finished ({len(refresh)} refreshes, all pages)"),
        ("server RSS cold / baseline", f"{cold.rss_mb:.0f} / {baseline.rss_mb:.0f} MB",
         "no page yet / one page trained briefly and closed"),
        ("server RSS peak", f"{max(u.peak_rss_mb for u in load_samples + [end_usage]):.0f} MB", "VmHWM"),
        ("server RSS end of load", f"{end_usage.rss_mb:.0f} MB", ""),
        ("server RSS after close", f"{settled.rss_mb:.0f} MB",
         f"{args.settle:.0f} s after every tab closed"),
        ("server + runs PSS baseline / peak / end / after close",
         f"{baseline.total_mb:.0f} / {max(u.total_mb for u in load_samples + [end_usage]):.0f} / "
         f"{end_usage.total_mb:.0f} / {settled.total_mb:.0f} MB",
         "runs train in child processes: PSS of the server, fork server and runs (shared pages once)"),
        ("run processes peak / end / after close", f"{max(u.run_processes for u in load_samples)} / "
                                                   f"{end_usage.run_processes} / {settled.run_processes}",
         "named bnviz-run"),
        ("threads baseline / peak / end of load", f"{baseline.threads} / {max(u.threads for u in load_samples)} / "
                                                  f"{end_usage.threads}", "/proc Threads, all"),
        ("  trainer threads peak / end", f"{max(u.trainer_threads for u in load_samples)} / "
                                         f"{end_usage.trainer_threads}",
         "named bnviz-trainer-* (serverctl.LAUNCHER names threads)"),
        ("  Streamlit pool threads peak / end", f"{max(u.worker_threads for u in load_samples)} / "
                                              f"{end_usage.worker_threads}", "AnyIO (at most 40) + file watcher (at most 4)"),
        ("trainer threads gone for good after close", f"{runs_gone:.0f} s" if not after or not after[-1][1].trainer_threads
         else f"still {after[-1][1].trainer_threads} after {after[-1][0]:.0f} s",
         f"idle timeout {args.idle_timeout:.0f} s + reaper sweep {REAP_SECONDS:.0f} s"),
        ("trainers started after every tab closed", str(restarted),
         "queued entries of closed tabs admitted before the reaper dropped them"),
        ("threads (w/o Streamlit's pools) back to baseline", "never" if own_back is None else f"{own_back:.0f} s",
         f"{own_threads(baseline)} at baseline; {own_threads(settled)} at the end"),
        ("threads all, after close", f"{settled.threads}", f"{settled.worker_threads} of them Streamlit's pools"),
        ("server CPU during load", f"{cpu_share(during):.0%} of one core", "/proc utime+stime, the web server"),
        ("server + runs CPU during load", f"{cpu_share(during, total=True):.0%} of one core",
         "the web server, the fork server and its runs, ended ones included"),
        ("machine load average (1 min) at the end", loadavg(), "other work on this machine skews every figure"),
        ("wall time", f"{time.time() - started:.0f} s", ""),
    ]
    print()
    print(table(rows))
    print()
    per_page = [("page", "load s", "states seen", "max ahead", "start s", "steps", "steps/s", "last state")]
    for s, m in zip(sessions, summaries):
        per_page.append((str(s.index), f"{s.loaded - s.opened:.1f}" if s.loaded else "-", ",".join(sorted(m.kinds)),
                         "-" if m.max_ahead is None else str(m.max_ahead),
                         "-" if m.started_after is None else f"{m.started_after:.1f}",
                         "-" if m.last_step is None else f"{m.first_step}-{m.last_step}",
                         "-" if m.rate is None else f"{m.rate:.0f}", m.final))
    print(wide_table(per_page))
    for problem in driver_problems:
        print("problem:", problem)
    for traceback in found:
        kind = "upstream websocket close" if traceback.upstream_disconnect else "APP" if traceback.in_app else "other"
        print(f"server traceback ({kind}): {traceback.last_line[:160]}")
    if found:
        print("server log:", serverctl.ARTIFACTS / "classroom-server.log")
    return errors


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def wide_table(rows) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def cpu_share(samples: list[tuple[float, serverctl.Usage]], total: bool = False) -> float:
    """CPU seconds per wall second between the first and last sample (1.0 = one core busy): the
    server process's, or with ``total`` the server's and its run processes' together."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return math.nan
    (start, first), (end, last) = samples[0], samples[-1]
    used = last.total_cpu_s - first.total_cpu_s if total else last.cpu_s - first.cpu_s
    return used / (end - start)


def report_soak(args, points, before, final, exceptions, tracebacks) -> int:
    if not points:
        print("no samples")
        return 1
    tenth = max(1, len(points) // 10)
    early, late = points[:tenth], points[-tenth:]
    span_min = (points[-1][0] - points[0][0]) / 60 or math.nan
    rss = [p[2] for p in points]
    rows = [
        ("figure", "value", "how"),
        ("run", final, f"?steps={args.soak_steps}, one page"),
        ("duration / mean steps/s", f"{points[-1][0]:.0f} s / {points[-1][1] / points[-1][0]:.0f}", "on screen"),
        ("errors", str(exceptions + tracebacks), f"{exceptions} stException, {tracebacks} Traceback in server log"),
        ("RSS before start", f"{before.rss_mb:.0f} MB", "page loaded, nothing training"),
        ("RSS first 10% / last 10% of the run", f"{statistics.mean(p[2] for p in early):.0f} / "
                                                f"{statistics.mean(p[2] for p in late):.0f} MB", "mean of the samples"),
        ("RSS peak", f"{max(p[8].peak_rss_mb for p in points):.0f} MB", "VmHWM"),
        ("RSS drift after the first 10%", f"{(rss[-1] - statistics.mean(p[2] for p in early)) / span_min:+.1f} MB/min",
         ""),
        ("server + run PSS first 10% / last 10% / peak", f"{statistics.mean(p[8].total_mb for p in early):.0f} / "
                                                      f"{statistics.mean(p[8].total_mb for p in late):.0f} / "
                                                      f"{max(p[8].total_mb for p in points):.0f} MB",
         "the web server, the fork server and the run's process"),
        ("server + run PSS drift after the first 10%",
         f"{(points[-1][8].total_mb - statistics.mean(p[8].total_mb for p in early)) / span_min:+.1f} MB/min", ""),
        ("threads before / during", f"{before.threads} / {max(p[3] for p in points)}", ""),
        ("progress interval p50 early / late", f"{ms(_nanmedian(p[4] for p in early))} / "
                                               f"{ms(_nanmedian(p[4] for p in late))}", "browser, per sample window"),
        ("progress interval p95 early / late", f"{ms(_nanmedian(p[5] for p in early))} / "
                                               f"{ms(_nanmedian(p[5] for p in late))}", ""),
        ("server refresh p50 early / late", f"{ms(_nanmedian(p[6] for p in early))} / "
                                            f"{ms(_nanmedian(p[6] for p in late))}", "fragment rerun sent -> finished"),
        ("server refresh p95 early / late", f"{ms(_nanmedian(p[7] for p in early))} / "
                                            f"{ms(_nanmedian(p[7] for p in late))}", ""),
        ("machine load average (1 min) at the end", loadavg(), "other work on this machine skews every figure"),
    ]
    print()
    print(table(rows))
    return exceptions + tracebacks + (0 if parse(final)[0] == "finished" else 1)


def _nanmedian(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan
