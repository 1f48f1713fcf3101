"""A Streamlit session without a browser: Streamlit's own websocket protocol, as the page speaks it.

One ``StreamClient`` is one browser tab to the server: it opens ``/_stcore/stream``, asks for a
script run with the page's URL parameters, reads the ForwardMsgs that come back (the page's
elements, ``auto_rerun`` for each ``st.fragment(run_every=...)``, ``script_finished``) and,
like the page's JavaScript, sends a fragment rerun every ``interval`` seconds and a button's
trigger when asked to press it. Nothing is drawn, so thirty of them cost this machine almost
nothing: what is measured is the server. Used by ``benchmarks/classroom.py --clients stream``.

Like the page, it keeps the large elements it was sent (Streamlit's message cache, ``MessageCache``)
and names them in each rerun request, so the server sends an unchanged chart as a reference to
it, as it does to a browser.

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
        self._timers: dict[str, tuple[float, float]] = {}  # fragment id -> (interval, when it fires next)
        self.cache = MessageCache()
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
        state.cached_message_hashes.extend(self.cache.hashes())
        if trigger is not None:
            widget = state.widget_states.widgets.add()
            widget.id, widget.trigger_value = trigger, True
            state.fragment_id = clicked_in
        if fragment is not None:
            state.fragment_id, state.is_auto_rerun = fragment, True
        self.refresh.sent(message, time.time())
        await self._socket.send(message.SerializeToString())

    async def _poll(self) -> None:
        """The page's timers: each fragment reruns every interval, on the grid its timer was set on, whether
        or not a run is under way (the page's ``setInterval``; the server folds the waiting requests into one)."""
        while True:
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            for fragment, (interval, due) in list(self._timers.items()):
                if now >= due:
                    while due <= now:
                        due += interval
                    self._timers[fragment] = (interval, due)
                    await self._rerun(fragment=fragment)

    def _receive(self, data: bytes) -> None:
        message = ForwardMsg()
        message.ParseFromString(data)
        kind = message.WhichOneof("type")
        if not self.cache.received(message):
            self.problems.append(f"a reference to a message this page does not hold: {message.ref_hash}")
        if kind == "new_session":  # sent at the start of every run, fragment runs too
            self._page_hash = message.new_session.page_script_hash
            self._run_state = None
            if not message.metadata.run.fragment_ids:  # a run of the whole page: the page clears its timers
                self._timers.clear()
            self.cache.max_age = message.new_session.config.max_cached_message_age or self.cache.max_age
        elif kind == "auto_rerun":  # the page's timer for that fragment, from now; the same interval: kept as is
            fragment, interval = message.auto_rerun.fragment_id, message.auto_rerun.interval
            if self._timers.get(fragment, (None,))[0] != interval:
                self._timers[fragment] = (interval, time.perf_counter() + interval)
        elif kind == "stop_auto_rerun":  # those fragments' timers end
            for fragment in message.stop_auto_rerun.fragment_ids:
                self._timers.pop(fragment, None)
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            self._element(message.delta.new_element, message.delta.fragment_id)
        if kind in ("new_session", "script_finished"):
            self.refresh.received(message, time.time())
        if kind == "script_finished":
            self._finished(message.script_finished, message.metadata.run.fragment_ids)

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

    def _finished(self, ended, fragments) -> None:
        if ended != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
            self.cache.run_finished(fragments)
        if ended == ForwardMsg.FINISHED_SUCCESSFULLY:
            self.full_runs += 1
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


class MessageCache:
    """The page's cache of large elements, as Streamlit's frontend keeps it (its ``ForwardMsgCache``): an
    element the server marks cacheable is kept by its hash; the page names every hash it keeps in each rerun
    request, and the server then sends that element again as a reference (``ref_hash``). An element not used
    for ``max_age`` runs is dropped (a fragment's run ages only that fragment's elements). A reference is
    not read again: the elements this client reads (buttons, the run status) are too small to be cached."""

    def __init__(self):
        self.max_age = 2  # the server's global.maxCachedMessageAge, from its new_session
        self._runs = 0  # runs finished
        self._kept: dict[str, tuple[int, str]] = {}  # hash -> (runs finished when it was last used, its fragment)

    def hashes(self) -> list[str]:
        return list(self._kept)

    def received(self, message: ForwardMsg) -> bool:
        """Keep or use ``message``; False for a reference to an element this page does not hold (a browser
        would fail there)."""
        if message.WhichOneof("type") == "ref_hash":
            kept = self._kept.get(message.ref_hash)
            if kept is None:
                return False
            self._kept[message.ref_hash] = (self._runs, kept[1])
        elif message.metadata.cacheable and message.hash:
            self._kept[message.hash] = (self._runs, message.delta.fragment_id)
        return True

    def run_finished(self, fragments) -> None:
        """A run ended: of the page, or of ``fragments`` (its ``script_finished``'s run identity)."""
        self._runs += 1
        for key, (used, fragment) in list(self._kept.items()):
            if fragments and fragment not in fragments:
                continue  # another fragment's, or the page's: not aged by this fragment's run
            if self._runs - used > self.max_age:
                del self._kept[key]


def read_state(body: str) -> str | None:
    """The page's state in words (``ui.status.words``) if this html element's body is the status element."""
    data = status.read(body)
    return status.words(data) if data is not None else None
