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
    """Pairs each fragment rerun request with the fragment run that answered it.

    The page sends a fragment's rerun on its timer whether or not one is under way; the server
    runs it after the run under way, and folds the requests that wait into one run. So a request
    is answered by the first run of its fragment that started after it was sent (the run's
    ``new_session``, which names the fragments it runs), and timed to that run's
    ``script_finished``. A run that ended otherwise (a full rerun, which takes the waiting
    requests with it; an error) drops its requests untimed. Times are in whatever clock the
    caller gives, as long as it gives one clock.
    """

    def __init__(self):
        self._asked: dict[str, list[float]] = {}  # fragment -> requests sent and not yet taken by a run
        self._answering: list[float] = []  # the requests the run under way answers
        self.times: list[tuple[float, float]] = []  # (when it finished, seconds from request to finish)
        self.finished: list[float] = []  # when each fragment run finished, asked for or not

    def sent(self, message: BackMsg | None, at: float) -> None:
        if is_fragment_rerun(message):
            self._asked.setdefault(message.rerun_script.fragment_id, []).append(at)

    def received(self, message: ForwardMsg | None, at: float) -> None:
        kind = message.WhichOneof("type") if message is not None else None
        if kind == "new_session":
            fragments = message.metadata.run.fragment_ids or list(self._asked)  # a full run takes them all
            self._answering = sorted(at for fragment in fragments for at in self._asked.pop(fragment, ()))
        elif kind == "script_finished":
            if fragment_finished(message):
                self.finished.append(at)
                self.times.extend((at, at - asked) for asked in self._answering)
            self._answering = []

    def between(self, start: float, end: float) -> list[float]:
        """Seconds of the refreshes requested in [start, end)."""
        return [seconds for finished, seconds in self.times if start <= finished - seconds < end]
