"""A Streamlit session without a browser: Streamlit's own websocket protocol, as the page speaks it.

One ``StreamClient`` is one browser tab to the server: it opens ``/_stcore/stream``, asks for a
script run with the page's URL parameters, reads the ForwardMsgs that come back (the page's
elements, ``auto_rerun`` for each ``st.fragment(run_every=...)``, ``script_finished``) and,
like the page's JavaScript, sends a fragment rerun every ``interval`` seconds and a button's
trigger when asked to press it. Nothing is drawn, so thirty of them cost this machine almost
nothing: what is measured is the server. Used by ``benchmarks/classroom.py --clients stream``.

What it keeps: the page's machine-readable run status (``ui/status.py``) in words ("running 120
1000", "queued 3"), each change of it with its time, read as its element arrives, as a browser
shows the progress line before the run's charts (``log``; ``ended_log``: the same read at each
run's end), and each fragment rerun's server time (request sent -> its ``script_finished``).
"""

from __future__ import annotations

import asyncio
import time

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from testsupport.frames import RefreshTimer
from ui import status


class StreamClient:
    """One session over the websocket; ``run()`` until ``close()``."""

    def __init__(self, url: str, query: str):
        self.url = url.replace("http://", "ws://") + "/_stcore/stream"
        self.query = query
        self.buttons: dict[str, tuple[str, str]] = {}  # key -> (widget id, the fragment it is drawn in or "")
        self.state = "loading"
        self.log: list[tuple[float, str]] = [(time.time(), "loading")]  # (wall clock, state) at each change
        self.ended_log: list[tuple[float, str]] = list(self.log)  # the same, as of each run's end
        self._run_state: str | None = None  # the state the run under way has sent
        self.refresh = RefreshTimer()  # on the wall clock
        self.problems: list[str] = []
        self.exceptions = 0  # st.exception elements the server sent
        self.loaded: float | None = None  # wall clock of the first finished run
        self.full_runs = 0  # runs of the whole page that finished (the others: a fragment's)
        self._page_hash = ""
        self._fragments: dict[str, float] = {}  # fragment id -> interval, as the last full run asked
        self._asked: dict[str, float] = {}  # auto_rerun messages of the run under way
        self._pending = False  # a fragment rerun is in flight: the page sends one at a time
        self._in_fragment = False  # the run asked last is a fragment's (a poll, or a click in a fragment)
        self._socket = None
        self._closed = asyncio.Event()

    async def run(self) -> None:
        import websockets

        try:
            async with websockets.connect(self.url, subprotocols=["streamlit"], max_size=None,
                                          open_timeout=120, ping_interval=None) as socket:
                self._socket = socket
                await self._rerun()
                poller = asyncio.create_task(self._poll())
                try:
                    async for data in socket:
                        self._receive(data)
                finally:
                    poller.cancel()
        except Exception as error:  # a refused or dropped connection is a finding, not a crash
            if not self._closed.is_set():
                self.problems.append(f"connection: {type(error).__name__}: {error}")

    async def press(self, key: str) -> bool:
        """Click the keyed button (a rerun with its trigger set: of its fragment, if it is drawn in one, as
        the page asks); False if the page has none."""
        if key not in self.buttons:
            return False
        widget, fragment = self.buttons[key]
        await self._rerun(trigger=widget, clicked_in=fragment)
        return True

    async def close(self) -> None:
        self._closed.set()
        if self._socket is not None:
            await self._socket.close()

    async def _rerun(self, trigger: str | None = None, fragment: str | None = None, clicked_in: str = "") -> None:
        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query
        state.page_script_hash = self._page_hash
        if trigger is not None:
            widget = state.widget_states.widgets.add()
            widget.id, widget.trigger_value = trigger, True
            state.fragment_id = clicked_in
        self._in_fragment = bool(fragment or clicked_in)
        if fragment is not None:
            state.fragment_id, state.is_auto_rerun = fragment, True
            self._pending = True
        self.refresh.sent(message, time.time())
        await self._socket.send(message.SerializeToString())

    async def _poll(self) -> None:
        """The page's timers: each live fragment reruns every interval, one request in flight at a time."""
        next_due: dict[str, float] = {}
        timers: dict[str, float] = {}  # the interval each fragment's timer was set with
        while True:
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            for fragment, interval in list(self._fragments.items()):
                if timers.get(fragment) != interval:  # a new timer, as the page sets one
                    timers[fragment] = interval
                    next_due[fragment] = now + interval
                due = next_due[fragment]
                if now >= due and not self._pending:
                    next_due[fragment] = now + interval
                    await self._rerun(fragment=fragment)
            for fragment in set(next_due) - set(self._fragments):
                del next_due[fragment], timers[fragment]

    def _receive(self, data: bytes) -> None:
        message = ForwardMsg()
        message.ParseFromString(data)
        kind = message.WhichOneof("type")
        if kind == "new_session":  # sent at the start of every run, fragment runs too
            self._page_hash = message.new_session.page_script_hash
            self._run_state = None
        elif kind == "auto_rerun":  # the page's timer for that fragment, from now (a full run's replace them all)
            self._asked[message.auto_rerun.fragment_id] = message.auto_rerun.interval
            if self._in_fragment or message.auto_rerun.fragment_id in self._fragments:
                self._fragments[message.auto_rerun.fragment_id] = message.auto_rerun.interval
        elif kind == "stop_auto_rerun":  # those fragments' timers end
            for fragment in message.stop_auto_rerun.fragment_ids:
                self._asked.pop(fragment, None)
                self._fragments.pop(fragment, None)
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            self._element(message.delta.new_element, message.delta.fragment_id)
        elif kind == "script_finished":
            self.refresh.received(message, time.time())
            self._finished(message.script_finished)

    def _element(self, element, fragment: str) -> None:
        kind = element.WhichOneof("type")
        if kind == "button":
            key = element.button.id.rsplit("-", 1)[-1]  # "$$ID-<hash>-<key>"
            self.buttons[key] = (element.button.id, fragment)
        elif kind == "html":
            state = read_state(element.html.body)
            if state is not None:
                self._run_state = state
                self._log(self.log, state)
        elif kind == "exception":
            self.exceptions += 1

    def _finished(self, ended) -> None:
        if ended == ForwardMsg.FINISHED_SUCCESSFULLY:  # a full run: its timers replace the page's
            self._fragments = dict(self._asked)
            self.full_runs += 1
        self._asked = {}
        self._pending = False
        if self.loaded is None and ended == ForwardMsg.FINISHED_SUCCESSFULLY:
            self.loaded = time.time()
        if self._run_state is not None:
            self._log(self.ended_log, self._run_state)
        self._run_state = None

    def _log(self, log: list[tuple[float, str]], state: str) -> None:
        if state != log[-1][1]:
            log.append((time.time(), state))
        if log is self.log:
            self.state = state


def read_state(body: str) -> str | None:
    """The page's state in words (``ui.status.words``) if this html element's body is the status element."""
    data = status.read(body)
    return status.words(data) if data is not None else None
