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

    python benchmarks/classroom.py --clients stream --sessions 30 --duration 150
    python benchmarks/classroom.py --sessions 30 --duration 150    # real Chromium pages
    python benchmarks/classroom.py --soak-steps 200000
"""

from __future__ import annotations

import argparse
import base64
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import serverctl  # noqa: E402  (after the path is set, so the script runs from anywhere)
from benchmarks.streamclient import StreamClient  # noqa: E402
from ui.session import REAP_SECONDS  # noqa: E402  (how often the server sweeps for abandoned runs)

ARTIFACTS = ROOT / "test-artifacts"
DISCONNECTED_SESSION_TTL = 120.0  # Streamlit keeps a closed tab's session_state this long (its default)
PAGE_LOAD_TIMEOUT_S = 240  # thirty pages at once on a fresh 2-core server
CLICK_TIMEOUT_S = 60
VIEWPORT = {"width": 1000, "height": 700}  # small: rendering thirty pages shares the server's two cores
RECORD_MS = 100  # how often each page records its own state

# The page's state in words: "running 120 1000" (step, of), "queued 3", "finished 1000 1000", "idle",
# "reaped 120 1000" (the pool stopped the run because the page had not polled for the idle timeout), ...
STATE_JS = r"""() => {
  if (document.querySelector('[data-testid="stException"]')) return 'exception';
  const texts = [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')].map(el => el.textContent);
  const reaped = texts.some(text => text.includes('stopped because the page stopped checking'));
  let state = null;
  for (const text of texts) {
    let m = text.match(/^step (\d+) of (\d+)(?: · .*)? · (\w+)$/);
    if (m) return `${reaped ? 'reaped' : m[3]} ${m[1]} ${m[2]}`;
    m = text.match(/(\d+) ahead of you/);
    if (m) state = `queued ${m[1]}`;
    else if (text.includes('you are next')) state = 'queued 0';
    else if (text.startsWith('Press Start to train')) state = state || 'idle';
  }
  if (state) return state;
  return document.querySelector('.st-key-start button') ? 'loaded' : 'loading';
}"""

# Installed before the page's own scripts: records [Date.now(), state] at every change.
RECORDER_JS = f"""(() => {{
  const read = {STATE_JS};
  const box = window.__classroom = {{log: [], last: null}};
  setInterval(() => {{
    let state;
    try {{ state = read(); }} catch (e) {{ state = 'recorder-error'; }}
    if (state !== box.last) {{ box.log.push([Date.now(), state]); box.last = state; }}
  }}, {RECORD_MS});
}})();"""


class FragmentTimer:
    """Server time per live refresh, from one page's websocket frames (CDP).

    A fragment rerun request (BackMsg rerun_script with a fragment id) sent, then the next
    ``script_finished: FINISHED_FRAGMENT_RUN_SUCCESSFULLY`` received. Large frames (the
    charts) are skipped undecoded: the end-of-run message is a few bytes.
    """

    SMALL = 1000  # base64 characters: script_finished is ~10 bytes, a chart is kilobytes

    def __init__(self, page):
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._back, self._forward = BackMsg, ForwardMsg
        self._done = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
        self._pending: float | None = None
        self.times: list[tuple[float, float]] = []  # (wall clock when it finished, seconds)
        self._offset: float | None = None  # wall clock minus the browser's event clock
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.webSocketFrameSent", self._sent)
        cdp.on("Network.webSocketFrameReceived", self._received)

    def _payload(self, event, limit: int | None = None) -> bytes | None:
        frame = event["response"]
        if frame.get("opcode") != 2 or (limit is not None and len(frame["payloadData"]) > limit):
            return None
        return base64.b64decode(frame["payloadData"])

    def _sent(self, event) -> None:
        data = self._payload(event)  # requests carry the widget states: small, but not tiny
        if data is None:
            return
        message = self._back()
        try:
            message.ParseFromString(data)
        except Exception:  # not a BackMsg: nothing to time
            return
        if message.WhichOneof("type") == "rerun_script" and message.rerun_script.fragment_id:
            if self._pending is None:
                self._pending = event["timestamp"]

    def _received(self, event) -> None:
        # Playwright hands events over late while the driver waits: the smallest delay is the truest.
        offset = time.time() - event["timestamp"]
        self._offset = offset if self._offset is None else min(self._offset, offset)
        if self._pending is None:
            return
        data = self._payload(event, self.SMALL)
        if data is None:
            return
        message = self._forward()
        try:
            message.ParseFromString(data)
        except Exception:
            return
        if message.WhichOneof("type") == "script_finished" and message.script_finished == self._done:
            self.times.append((event["timestamp"] + self._offset, event["timestamp"] - self._pending))
            self._pending = None


@dataclass
class Session:
    """One browser context = one Streamlit session."""

    index: int
    context: object
    page: object
    timer: FragmentTimer | None
    opened: float  # wall clock when the page was asked for
    loaded: float | None = None
    clicked: float | None = None
    problems: list[str] = field(default_factory=list)
    log: list[tuple[float, str]] = field(default_factory=list)  # (wall clock, state)

    @property
    def refresh_times(self) -> list[tuple[float, float]]:
        return self.timer.times if self.timer else []

    def state(self) -> str:
        try:
            return self.page.evaluate(STATE_JS)
        except Exception as error:  # a crashed or closed page
            return f"unreadable ({type(error).__name__})"

    def collect(self) -> None:
        """Move the page's recorded states into ``log`` (the page keeps only what is new)."""
        try:
            entries = self.page.evaluate("() => window.__classroom ? window.__classroom.log.splice(0) : []")
        except Exception as error:
            self.problems.append(f"recorder unreadable: {type(error).__name__}")
            return
        self.log.extend((ms / 1000, state) for ms, state in entries)


def open_page(browser, url: str, index: int, timers: bool, draw: bool = True) -> Session:
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RECORDER_JS)
    if not draw:
        serverctl.skip_drawing(context)
    page = context.new_page()
    timer = FragmentTimer(page) if timers else None
    session = Session(index, context, page, timer, time.time())
    page.goto(url, wait_until="commit", timeout=PAGE_LOAD_TIMEOUT_S * 1000)
    return session


def wait_loaded(sessions: list[Session], timeout: float) -> None:
    """Wait (in the browser's time) until each page has drawn its Start button."""
    deadline = time.monotonic() + timeout
    for session in sessions:
        remaining = max(1.0, deadline - time.monotonic())
        try:
            session.page.locator(".st-key-start button:visible").wait_for(timeout=remaining * 1000)
        except Exception as error:
            session.problems.append(f"page did not load: {type(error).__name__}")
            continue
        session.collect()  # when the page itself first showed more than "loading" (pages load in parallel)
        session.loaded = next((when for when, state in session.log if state != "loading"), time.time())


def press(session: Session, key: str) -> bool:
    """Click a keyed button (force: the charts redraw under the pointer; see tests/test_browser.py)."""
    try:
        button = session.page.locator(f".st-key-{key} button:visible")
        button.wait_for(timeout=CLICK_TIMEOUT_S * 1000)
        button.click(force=True, timeout=CLICK_TIMEOUT_S * 1000)
        return True
    except Exception as error:
        session.problems.append(f"could not press {key}: {type(error).__name__}")
        return False


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


def summarize(session: Session) -> Summary:
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
    """Threads other than Streamlit's AnyIO worker pool (which grows under load and idles down on its own)."""
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


def load(args) -> int:
    """N pages press Start and stay; then all close. Prints the figures; returns the number of errors."""
    from playwright.sync_api import sync_playwright

    env = {"BNVIZ_IDLE_TIMEOUT": str(args.idle_timeout)}
    if args.max_running:
        env["BNVIZ_MAX_RUNNING"] = str(args.max_running)
    server = serverctl.Server(env=env, log_path=ARTIFACTS / "classroom-server.log")
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
            # Watched to the end of the settle time: a queued entry of a closed tab can still be
            # admitted (and start a trainer) until the reaper drops it.
            after = []  # (seconds after closing, Usage)
            deadline = closed_at + max(args.settle, args.idle_timeout + REAP_SECONDS + 30)
            while time.time() < deadline:
                time.sleep(1.0)  # no page left to wait on
                after.append((time.time() - closed_at, server.usage()))
                samples.append((closed_at + after[-1][0], after[-1][1]))
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
        return self.client.refresh_seconds


def load_stream(args) -> int:
    """The load mode with protocol clients: the same steps and figures as ``load``, no browser."""
    import asyncio

    env = {"BNVIZ_IDLE_TIMEOUT": str(args.idle_timeout)}
    if args.max_running:
        env["BNVIZ_MAX_RUNNING"] = str(args.max_running)
    server = serverctl.Server(env=env, log_path=ARTIFACTS / "classroom-server.log")
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
    after = []
    deadline = closed_at + max(args.settle, args.idle_timeout + REAP_SECONDS + 30)
    while time.time() < deadline:
        await asyncio.sleep(1.0)
        after.append((time.time() - closed_at, server.usage()))
        samples.append((closed_at + after[-1][0], after[-1][1]))
    settled = server.usage()
    return report_load(args, sessions, samples, cold, baseline, end_usage, settled, after,
                       exceptions, server.log(), clicked_at, started)


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
        ("threads baseline / peak / end of load", f"{baseline.threads} / {max(u.threads for u in load_samples)} / "
                                                  f"{end_usage.threads}", "/proc Threads, all"),
        ("  trainer threads peak / end", f"{max(u.trainer_threads for u in load_samples)} / "
                                         f"{end_usage.trainer_threads}",
         "named bnviz-trainer-* (serverctl.LAUNCHER names threads)"),
        ("  AnyIO worker threads peak / end", f"{max(u.worker_threads for u in load_samples)} / "
                                              f"{end_usage.worker_threads}", "Streamlit's own pool (at most 40)"),
        ("trainer threads gone for good after close", f"{runs_gone:.0f} s" if not after or not after[-1][1].trainer_threads
         else f"still {after[-1][1].trainer_threads} after {after[-1][0]:.0f} s",
         f"idle timeout {args.idle_timeout:.0f} s + reaper sweep {REAP_SECONDS:.0f} s"),
        ("trainers started after every tab closed", str(restarted),
         "queued entries of closed tabs admitted before the reaper dropped them"),
        ("threads (w/o AnyIO pool) back to baseline", "never" if own_back is None else f"{own_back:.0f} s",
         f"{own_threads(baseline)} at baseline; {own_threads(settled)} at the end"),
        ("threads all, after close", f"{settled.threads}", f"{settled.worker_threads} of them idle AnyIO workers"),
        ("server CPU during load", f"{cpu_share(during):.0%} of one core", "/proc utime+stime"),
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
        print("server log:", ARTIFACTS / "classroom-server.log")
    return errors


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def wide_table(rows) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def cpu_share(samples: list[tuple[float, serverctl.Usage]]) -> float:
    """The server's CPU seconds per wall second between the first and last sample (1.0 = one core busy)."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return math.nan
    return (samples[-1][1].cpu_s - samples[0][1].cpu_s) / (samples[-1][0] - samples[0][0])


def soak(args) -> int:
    """One page trains ``--soak-steps`` steps to the end; memory and refresh sampled all along."""
    from playwright.sync_api import sync_playwright

    env = {"BNVIZ_IDLE_TIMEOUT": str(args.idle_timeout)}
    if args.max_running:
        env["BNVIZ_MAX_RUNNING"] = str(args.max_running)
    server = serverctl.Server(env=env, log_path=ARTIFACTS / "classroom-soak-server.log")
    rows = [("t s", "step", "steps/s", "RSS MB", "threads", "progress p50/p95", "refresh p50/p95")]
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
                rows.append((f"{now - t0:.0f}", str(step), f"{rate:.0f}", f"{usage.rss_mb:.0f}", str(usage.threads),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="browser sessions at once (load mode)")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds every page stays after Start")
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps per run in load mode: short enough that queued pages get their turn")
    parser.add_argument("--max-running", type=int, default=0, help="BNVIZ_MAX_RUNNING (0: the app's default)")
    parser.add_argument("--idle-timeout", type=float, default=60.0, help="BNVIZ_IDLE_TIMEOUT seconds (app default 60)")
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
    args = parser.parse_args()
    errors = soak(args) if args.soak_steps else load_stream(args) if args.clients == "stream" else load(args)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
