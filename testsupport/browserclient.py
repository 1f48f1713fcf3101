"""Real browser sessions for the classroom script: Debian's Chromium pages that record their own state.

A page's state is read from its machine-readable run status (``ui/status.py``, ``STATUS_JS``) and
logged as words (``STATE_JS``, the same as ``ui.status.words``): "running 120 1000", "queued 3",
"finished ...", "idle"; ``RECORDER_JS`` runs in every page and logs each change with its time.
``FragmentTimer`` reads the page's websocket frames (Chrome DevTools protocol) for the
server's time per live refresh (``testsupport.frames``). ``testsupport/streamclient.py`` is the same session without
a browser.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from testsupport import frames, serverctl

PAGE_LOAD_TIMEOUT_S = 240  # thirty pages at once on a fresh 2-core server
CLICK_TIMEOUT_S = 60
VIEWPORT = {"width": 1000, "height": 700}  # small: rendering thirty pages shares the server's two cores
RECORD_MS = 100  # how often each page records its own state

# The page's machine-readable run status (ui/status.py): the JSON object, or null before the live view drew.
STATUS_JS = r"""() => {
  const el = document.querySelector('.st-key-run-status .bnviz-status');
  return el ? JSON.parse(el.dataset.status) : null;
}"""

# The page's state in words, from that status: "running 120 1000" (status, step, of), "queued 3" (runs
# ahead), "finished 1000 1000", "paused 80 1000", "idle", "reaped 120 1000" (the pool stopped the run
# because the page had not polled for the idle timeout); "loaded"/"loading" before the live view drew.
STATE_JS = r"""() => {
  if (document.querySelector('[data-testid="stException"]')) return 'exception';
  const status = (""" + STATUS_JS + r""")();
  if (status) {
    const runs = status.runs, first = runs[0];
    if (status.state === 'queued') return `queued ${status.ahead || 0}`;
    if (status.state === 'idle' || !first) return status.state;
    const shown = ['reaped', 'paused'].includes(status.state) ? status.state : first.status;
    return `${shown} ${first.step} ${first.steps}`;
  }
  return document.querySelector('.st-key-start button') ? 'loaded' : 'loading';
}"""

# The first live Plotly chart (the map view's are not) is the heatmap figure: [sum of every z cell,
# number of cells, traces]. z arrives base64-encoded; Plotly keeps the decoded typed array in z._inputArray.
HEATMAP_JS = """() => {
  const chart = [...document.querySelectorAll('.js-plotly-plot')].find((el) => !el.closest('.st-key-map-view'));
  if (!chart || !chart.data) return null;
  let total = 0, cells = 0;
  const add = (a) => {
    if (typeof a === 'number') { total += a; cells += 1; }
    else if (a) for (const v of a) add(v);
  };
  for (const trace of chart.data) if (trace.z) add(trace.z._inputArray || trace.z);
  return cells ? [total, cells, chart.data.length] : null;
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
    """Server time per live refresh, from one page's websocket frames (Chrome DevTools protocol),
    timed by ``frames.RefreshTimer`` on the browser's own event clock. Large frames (the charts)
    are skipped undecoded: a run's first and last messages (``new_session``, ``script_finished``) are small."""

    SMALL = 1000  # base64 characters: new_session is ~400 bytes, script_finished ~80, a chart is kilobytes

    def __init__(self, page):
        self.timer = frames.RefreshTimer()
        self._offset: float | None = None  # wall clock minus the browser's event clock
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.webSocketFrameSent", self._sent)
        cdp.on("Network.webSocketFrameReceived", self._received)

    @property
    def times(self) -> list[tuple[float, float]]:
        """(wall clock when it finished, seconds) of each timed refresh."""
        return [(finished + self._offset, seconds) for finished, seconds in self.timer.times]

    def _payload(self, event, limit: int | None = None) -> bytes | None:
        frame = event["response"]
        if frame.get("opcode") != 2 or (limit is not None and len(frame["payloadData"]) > limit):
            return None
        return base64.b64decode(frame["payloadData"])

    def _sent(self, event) -> None:
        data = self._payload(event)  # requests carry the widget states: small, but not tiny
        if data is not None:
            self.timer.sent(frames.back_message(data), event["timestamp"])

    def _received(self, event) -> None:
        # Playwright hands events over late while the driver waits: the smallest delay is the truest.
        offset = time.time() - event["timestamp"]
        self._offset = offset if self._offset is None else min(self._offset, offset)
        data = self._payload(event, self.SMALL)
        if data is not None:
            self.timer.received(frames.forward_message(data), event["timestamp"])


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
