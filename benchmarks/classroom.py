"""Classroom load and soak test: a class of browsers against one real bnviz server on this machine.

Load (default): starts ``streamlit run app.py`` on a free loopback port, opens N real Chromium
pages (one browser, one context each: N Streamlit sessions), presses Start on every page and
keeps them open for ``--duration`` seconds, then closes them all and watches the server give
back its trainer threads and memory. Soak (``--soak-steps``): one page trains one long run to
the end while the server's memory and the page's refresh are sampled every few seconds.

What is measured, and where:
- server RSS, peak RSS (VmHWM), thread count, CPU: ``/proc/<pid>/status`` and ``stat`` of the
  server. Python 3.11 does not name native threads, so the server is started through a
  launcher that does (``serverctl.LAUNCHER``): trainers are the ``bnviz-trainer-*`` threads.
  The baseline is the server after one page was served, trained briefly and closed;
- per page, in the browser: a 100 ms poll of the page's own words records each change of
  state: loaded, running ("step N of M"), queued ("N ahead of you"), finished, diverged, error,
  exception. "Progress interval" is the time between successive changes of the progress
  line on a running page: what a student sees as the refresh (±0.1 s);
- "server refresh time": per page, from the browser's websocket frames (Chrome DevTools
  protocol): the fragment rerun request sent -> that fragment's ``script_finished`` received.
  It is the server's time to run the live view once, plus loopback;
- errors: ``[data-testid='stException']`` on any page, "Traceback" in the server's log, and
  pages that did not load or did not react in time.

The browsers run on the same two cores as the server and its trainers, which costs the
trainers; a class's browsers run on the students' own laptops. So in load mode the pages do
not draw their charts (``serverctl.skip_drawing``: every message still arrives, every refresh
still runs on the server) unless ``--draw`` is given. Even so, thirty Chromium pages kept this
machine's load average near 18 and starved the server they measure; ``--clients stream``
replaces them by ``benchmarks/streamclient.py`` sessions, which speak Streamlit's websocket
protocol as the page does (fragment reruns on the page's timers, button triggers) and cost
almost nothing, so the figures are the server's.

    python -m benchmarks.classroom --clients stream --sessions 30 --duration 150
    python -m benchmarks.classroom --sessions 30 --duration 150    # real Chromium pages
    python -m benchmarks.classroom --soak-steps 200000
    python -m benchmarks.classroom --attacks --sessions 10 --duration 60   # issue 17's attacks
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from bnviz.serve.settings import DEFAULT_IDLE_TIMEOUT, REAP_SECONDS
from testsupport import serverctl
from testsupport.browserclient import CLICK_TIMEOUT_S, PAGE_LOAD_TIMEOUT_S, STATE_JS, open_page, press, wait_loaded
from testsupport.classroom_report import loadavg, ms, parse, percentile, report_load, report_soak, settle_threads, summarize
from testsupport.streamclient import StreamClient

DISCONNECTED_SESSION_TTL = 120.0  # Streamlit keeps a closed tab's session_state this long (its default)


def _server(args, log_name: str) -> serverctl.Server:
    """The server with the limits the arguments ask for, its log in test-artifacts/."""
    env = {"BNVIZ_IDLE_TIMEOUT": str(args.idle_timeout)}
    if args.max_running:
        env["BNVIZ_MAX_RUNNING"] = str(args.max_running)
    return serverctl.Server(env=env, log_path=serverctl.ARTIFACTS / log_name)


def watch_after_close(server, args, closed_at: float, samples: list) -> list:
    """(seconds after closing, Usage) every second to the end of the settle time: a queued entry
    of a closed tab can still be admitted (and start a trainer) until the reaper drops it."""
    after = []
    deadline = closed_at + max(args.settle, args.idle_timeout + REAP_SECONDS + 30)
    while time.time() < deadline:
        time.sleep(1.0)  # no session left to serve
        after.append((time.time() - closed_at, server.usage()))
        samples.append((closed_at + after[-1][0], after[-1][1]))
    return after


def load(args) -> int:
    """N pages press Start and stay; then all close. Prints the figures; returns the number of errors."""
    from playwright.sync_api import sync_playwright

    server = _server(args, "classroom-server.log")
    url_query = f"/?steps={args.steps}"
    samples = []  # (wall clock, Usage)
    started = time.time()
    with server, sync_playwright() as playwright:
        cold = server.usage()
        browser = serverctl.launch_chromium(playwright)
        try:
            # 1. One page trains briefly and closes: torch imported, MNIST loaded (kept for every
            #    later run), the pool and its reaper made. That is the server's resting state.
            warm = open_page(browser, server.url + url_query, -1, timers=False)
            wait_loaded([warm], PAGE_LOAD_TIMEOUT_S)
            if press(warm, "start"):
                warm.page.wait_for_function(f"() => /^running [1-9]/.test(({STATE_JS})())",
                                            timeout=CLICK_TIMEOUT_S * 1000)
                press(warm, "reset")
                warm.page.wait_for_timeout(1000)
            if warm.problems:
                raise RuntimeError(f"the warm-up page failed: {warm.problems}")
            warm.context.close()
            baseline = settle_threads(server)
            print(f"server up: cold {cold.rss_mb:.0f} MB / {cold.threads} threads; after a warm-up run "
                  f"{baseline.rss_mb:.0f} MB / {baseline.threads} threads; load average {loadavg()}", flush=True)

            # 2. The class opens the link within the same minute: all pages at once.
            sessions = [open_page(browser, server.url + url_query, i, timers=not args.no_timers, draw=args.draw)
                        for i in range(args.sessions)]
            wait_loaded(sessions, PAGE_LOAD_TIMEOUT_S)
            loaded_at = time.time()
            samples.append((loaded_at, server.usage()))
            print(f"{sum(s.loaded is not None for s in sessions)} of {len(sessions)} pages loaded in "
                  f"{loaded_at - sessions[0].opened:.1f} s", flush=True)

            # 3. Everyone presses Start.
            for session in sessions:
                if session.loaded is not None and press(session, "start"):
                    session.clicked = time.time()
            clicked_at = time.time()
            print(f"Start pressed on {sum(s.clicked is not None for s in sessions)} pages in "
                  f"{clicked_at - loaded_at:.1f} s", flush=True)

            # 4. Stay for the duration; the server is sampled from /proc.
            end = clicked_at + args.duration
            next_report = time.time() + 15
            while time.time() < end:
                sessions[0].page.wait_for_timeout(2000)  # Playwright's clock: events keep flowing
                samples.append((time.time(), server.usage()))
                for session in sessions:
                    session.collect()
                if time.time() >= next_report:
                    states = [parse(s.log[-1][1])[0] if s.log else "?" for s in sessions]
                    counts = {k: states.count(k) for k in sorted(set(states))}
                    print(f"  t+{time.time() - clicked_at:3.0f} s  RSS {samples[-1][1].rss_mb:.0f} MB  "
                          f"threads {samples[-1][1].threads}  pages {counts}", flush=True)
                    next_report += 15
            exceptions = sum(s.page.locator("[data-testid='stException']").count() for s in sessions)
            for session in sessions:
                session.collect()
            end_usage = server.usage()

            # 5. The class leaves: every tab closes mid-run.
            closed_at = time.time()
            for session in sessions:
                session.context.close()
            after = watch_after_close(server, args, closed_at, samples)
            settled = server.usage()
        finally:
            browser.close()
        log = server.log()
    return report_load(args, sessions, samples, cold, baseline, end_usage, settled, after,
                       exceptions, log, clicked_at, started)


@dataclass
class StreamSession:
    """One Streamlit session over the websocket protocol (benchmarks/streamclient.py), no browser."""

    index: int
    client: StreamClient
    opened: float
    clicked: float | None = None

    @property
    def loaded(self) -> float | None:
        return self.client.loaded

    @property
    def log(self) -> list[tuple[float, str]]:
        return self.client.log

    @property
    def problems(self) -> list[str]:
        return self.client.problems

    @property
    def refresh_times(self) -> list[tuple[float, float]]:
        return self.client.refresh.times


def load_stream(args) -> int:
    """The load mode with protocol clients: the same steps and figures as ``load``, no browser."""
    import asyncio

    server = _server(args, "classroom-server.log")
    with server:
        return asyncio.run(_stream_class(args, server))


async def _stream_class(args, server) -> int:
    import asyncio

    started, samples = time.time(), []
    url_query = f"steps={args.steps}"
    cold = server.usage()

    async def opened(index: int) -> tuple[StreamSession, asyncio.Task]:
        session = StreamSession(index, StreamClient(server.url, url_query), time.time())
        return session, asyncio.create_task(session.client.run())

    async def until(condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    # 1. One session trains briefly and leaves: the server's resting state (as in ``load``).
    warm, task = await opened(-1)
    if not await until(lambda: warm.loaded, PAGE_LOAD_TIMEOUT_S) or not await warm.client.press("start") or \
            not await until(lambda: parse(warm.client.state)[0] == "running", CLICK_TIMEOUT_S):
        raise RuntimeError(f"the warm-up session failed: {warm.problems} {warm.log}")
    await warm.client.press("reset")
    await asyncio.sleep(1)
    await warm.client.close()
    await task
    baseline = settle_threads(server)
    print(f"server up: cold {cold.rss_mb:.0f} MB / {cold.threads} threads; after a warm-up run "
          f"{baseline.rss_mb:.0f} MB / {baseline.threads} threads; load average {loadavg()}", flush=True)

    # 2. The class opens the link at once; 3. everyone presses Start.
    pairs = [await opened(i) for i in range(args.sessions)]
    sessions, tasks = [p[0] for p in pairs], [p[1] for p in pairs]
    await until(lambda: all(s.loaded for s in sessions), PAGE_LOAD_TIMEOUT_S)
    loaded_at = time.time()
    samples.append((loaded_at, server.usage()))
    print(f"{sum(s.loaded is not None for s in sessions)} of {len(sessions)} sessions loaded in "
          f"{loaded_at - sessions[0].opened:.1f} s", flush=True)
    for session in sessions:
        if session.loaded is not None and await session.client.press("start"):
            session.clicked = time.time()
    clicked_at = time.time()
    print(f"Start pressed in {sum(s.clicked is not None for s in sessions)} sessions", flush=True)

    # 4. Stay for the duration; the server is sampled from /proc.
    next_report = time.time() + 15
    while time.time() < clicked_at + args.duration:
        await asyncio.sleep(2)
        samples.append((time.time(), server.usage()))
        if time.time() >= next_report:
            states = [parse(s.client.state)[0] for s in sessions]
            counts = {k: states.count(k) for k in sorted(set(states))}
            print(f"  t+{time.time() - clicked_at:3.0f} s  RSS {samples[-1][1].rss_mb:.0f} MB  "
                  f"threads {samples[-1][1].threads}  sessions {counts}", flush=True)
            next_report += 15
    exceptions = sum(s.client.exceptions for s in sessions)
    end_usage = server.usage()

    # 5. The class leaves: every connection closes mid-run.
    closed_at = time.time()
    for session in sessions:
        await session.client.close()
    await asyncio.gather(*tasks)
    after = watch_after_close(server, args, closed_at, samples)  # every connection is closed: blocking is fine
    settled = server.usage()
    return report_load(args, sessions, samples, cold, baseline, end_usage, settled, after,
                       exceptions, server.log(), clicked_at, started)


def soak(args) -> int:
    """One page trains ``--soak-steps`` steps to the end; memory and refresh sampled all along."""
    from playwright.sync_api import sync_playwright

    server = _server(args, "classroom-soak-server.log")
    rows = [("t s", "step", "steps/s", "RSS MB", "+runs PSS MB", "threads", "progress p50/p95", "refresh p50/p95")]
    points = []  # (t, step, rss, interval p50, refresh p50)
    with server, sync_playwright() as playwright:
        browser = serverctl.launch_chromium(playwright)
        try:
            session = open_page(browser, f"{server.url}/?steps={args.soak_steps}", 0, timers=not args.no_timers)
            wait_loaded([session], PAGE_LOAD_TIMEOUT_S)
            before = settle_threads(server)
            if session.loaded is None or not press(session, "start"):
                print("the page did not load or Start could not be pressed:", session.problems)
                return 1
            session.clicked = t0 = time.time()
            deadline = t0 + args.soak_timeout
            seen_intervals, seen_refresh, last_step, last_t = 0, 0, 0, t0
            final = ""
            while time.time() < deadline:
                session.page.wait_for_timeout(args.sample * 1000)
                session.collect()
                usage, now = server.usage(), time.time()
                summary = summarize(session)
                intervals = summary.intervals[seen_intervals:]
                seen_intervals = len(summary.intervals)
                refresh = [t for _, t in session.timer.times[seen_refresh:]] if session.timer else []
                seen_refresh = len(session.timer.times) if session.timer else 0
                step = summary.last_step or 0
                rate = (step - last_step) / (now - last_t)
                last_step, last_t = step, now
                points.append((now - t0, step, usage.rss_mb, usage.threads, percentile(intervals, 50),
                               percentile(intervals, 95), percentile(refresh, 50), percentile(refresh, 95), usage))
                rows.append((f"{now - t0:.0f}", str(step), f"{rate:.0f}", f"{usage.rss_mb:.0f}", f"{usage.total_mb:.0f}",
                             str(usage.threads),
                             f"{ms(percentile(intervals, 50))}/{ms(percentile(intervals, 95))}",
                             f"{ms(percentile(refresh, 50))}/{ms(percentile(refresh, 95))}"))
                print("  ".join(rows[-1]), flush=True)
                final = summary.final
                if parse(final)[0] in ("finished", "diverged", "error", "stopped", "exception"):
                    break
            exceptions = session.page.locator("[data-testid='stException']").count()
            session.context.close()
        finally:
            browser.close()
        log = server.log()
    return report_soak(args, points, before, final, exceptions,
                       sum(not t.upstream_disconnect for t in serverctl.tracebacks(log)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="browser sessions at once (load mode)")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds every page stays after Start")
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps per run in load mode: short enough that queued pages get their turn")
    parser.add_argument("--max-running", type=int, default=0, help="BNVIZ_MAX_RUNNING (0: the app's default)")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
                        help=f"BNVIZ_IDLE_TIMEOUT seconds (app default {DEFAULT_IDLE_TIMEOUT:g})")
    parser.add_argument("--settle", type=float, default=DISCONNECTED_SESSION_TTL + 10,
                        help="seconds to watch the server after every tab closed (Streamlit drops a closed "
                             "tab's session after 120 s)")
    parser.add_argument("--soak-steps", type=int, default=0, help="soak mode: one page trains this many steps")
    parser.add_argument("--soak-timeout", type=float, default=3600.0, help="soak mode: give up after this many s")
    parser.add_argument("--sample", type=float, default=5.0, help="soak mode: seconds between samples")
    parser.add_argument("--clients", choices=("browser", "stream"), default="browser",
                        help="load mode: Chromium pages, or benchmarks/streamclient.py sessions (the websocket "
                             "protocol, no browser: thirty browsers on this machine's two cores starve the server)")
    parser.add_argument("--draw", action="store_true",
                        help="let every page draw its charts (default: serverctl.skip_drawing, as on students' "
                             "laptops the drawing is not the server's)")
    parser.add_argument("--no-timers", action="store_true", help="skip the websocket (CDP) refresh timing")
    parser.add_argument("--attacks", action="store_true",
                        help="issue 17's attacks under load (benchmarks/classroom_attacks.py): --sessions pages, "
                             "--duration s of the heaviest runs the budget admits, --rounds compare Starts")
    parser.add_argument("--rounds", type=int, default=6, help="attacks mode: Starts pressed by each compare tab")
    parser.add_argument("--scenario", choices=("link", "own", "mixed", "restart"),
                        help="issue 13's class figures (benchmarks/classroom_shared.py): everyone on the lesson "
                             "link, everyone on a run of their own, both, or a finished lesson after a restart")
    parser.add_argument("--cores", default="", help="with --scenario: hold the server and its runs to these cores "
                                                    "(taskset -c; '0' is one core)")
    parser.add_argument("--spread", type=float, default=0.0,
                        help="with --scenario: the sessions press Start one after another over this many seconds "
                             "(0: all at once)")
    parser.add_argument("--root", default="", help="with --scenario: serve another checkout's app.py (a git worktree "
                                                   "of an earlier commit), measured by this checkout's clients")
    parser.add_argument("--own-steps", type=int, default=2000,
                        help="with --scenario: steps of a run of one's own (short: the queue drains) and of the "
                             "restart scenario's lesson")
    args = parser.parse_args()
    if args.attacks:
        from benchmarks.classroom_attacks import attacks

        sys.exit(1 if attacks(args) else 0)
    if args.scenario:
        from benchmarks import classroom_shared

        sys.exit(1 if classroom_shared.run(args) else 0)
    errors = soak(args) if args.soak_steps else load_stream(args) if args.clients == "stream" else load(args)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
