"""The server's time per live refresh, from Streamlit's websocket messages: one timer for every client.

A live page reruns its ``st.fragment`` on a timer: it sends a ``rerun_script`` BackMsg with a
fragment id, and the server answers with the fragment's elements and, last, a
``script_finished`` ForwardMsg. The time between the two is what the server spends on one
refresh. The protocol client (``streamclient``), the browser pages' DevTools listener
(``browserclient``) and ``benchmarks/bench_app.py`` all feed their messages to one
``RefreshTimer``, so the three measure the same thing the same way.
"""

from __future__ import annotations

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

FRAGMENT_DONE = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY


def back_message(data: bytes) -> BackMsg | None:
    """A frame the page sent, decoded; None if it is not a BackMsg."""
    message = BackMsg()
    try:
        message.ParseFromString(data)
    except Exception:  # protobuf's DecodeError, or a text frame
        return None
    return message


def forward_message(data: bytes) -> ForwardMsg | None:
    """A frame the server sent, decoded; None if it is not a ForwardMsg."""
    message = ForwardMsg()
    try:
        message.ParseFromString(data)
    except Exception:
        return None
    return message


def is_fragment_rerun(message: BackMsg | None) -> bool:
    """A fragment's rerun on its timer (not a click on a button drawn in a fragment, which also names it)."""
    return (message is not None and message.WhichOneof("type") == "rerun_script"
            and bool(message.rerun_script.fragment_id) and message.rerun_script.is_auto_rerun)


def fragment_finished(message: ForwardMsg | None) -> bool:
    return (message is not None and message.WhichOneof("type") == "script_finished"
            and message.script_finished == FRAGMENT_DONE)


class RefreshTimer:
    """Pairs each fragment rerun request with the next fragment run that finished.

    One request is timed at a time (the page has one in flight); a request sent while one is
    pending is the same refresh asked again. A run that ended otherwise (a full rerun asked
    for, an error) drops the pending request untimed. Times are in whatever clock the caller
    gives, as long as it gives one clock.
    """

    def __init__(self):
        self._pending: float | None = None
        self.times: list[tuple[float, float]] = []  # (when it finished, seconds from request to finish)
        self.finished: list[float] = []  # when each fragment run finished, asked for or not

    def sent(self, message: BackMsg | None, at: float) -> None:
        if is_fragment_rerun(message) and self._pending is None:
            self._pending = at

    def received(self, message: ForwardMsg | None, at: float) -> None:
        if message is None or message.WhichOneof("type") != "script_finished":
            return
        if fragment_finished(message):
            self.finished.append(at)
            if self._pending is not None:
                self.times.append((at, at - self._pending))
        self._pending = None

    def between(self, start: float, end: float) -> list[float]:
        """Seconds of the refreshes requested in [start, end)."""
        return [seconds for finished, seconds in self.times if start <= finished - seconds < end]
