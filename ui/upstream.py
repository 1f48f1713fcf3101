"""What the page needs from Streamlit 1.67's insides: a fix for a bug that turned a training page
white (reference messages a fragment rerun should have dropped), and a way for a polling
fragment to change its own interval (``set_run_every``).

A fragment that polls (``st.fragment(run_every=...)``) starts its next run as soon as the last
one ends when a run takes longer than the poll, as the live view's do on a busy server. The new
run's start clears the session's unsent messages of that fragment (``ForwardMsgQueue.clear``,
Streamlit 1.67), since it will write them all again. It recognizes them by ``delta.fragment_id``.
A chart the browser already holds is not sent again but as a *reference* (``ref_hash``), which has
no delta and so no fragment id: the clear keeps it while it drops the container the chart goes
into. If that run had moved things (a line of text appeared above the charts), the browser gets a
chart for a container it does not have, throws "Cannot set a node at a delta path" (or "'setIn'
cannot be called on an ElementNode") and shows a white page until it is reloaded.

The fix: a reference goes with the delta queued before it. A chart's reference follows its own
container's or its sibling's delta, so it is dropped when they are; a reference after a kept
delta (one of the main script's) is kept, as before, and so is one with no delta before it in the
queue (what it goes into has been sent). ``install`` patches the queue class once
per process; tests/test_upstream.py shows the bug on Streamlit's own class and the fix.

A fragment's interval is set when the main script defines it (``st.fragment(run_every=...)``),
and Streamlit has no call to change it from the fragment's own run: only a full rerun would,
and thirty pages rerunning whole at once, as a class's pace moves, is the load the pace is
there to avoid. The browser keys each fragment's timer by the fragment's id and replaces it
when an ``auto_rerun`` message brings another interval (what a nested fragment's definition
sends on each run); ``set_run_every`` sends that message for the fragment running now, or the
``stop_auto_rerun`` that Streamlit sends for a polling fragment that is gone.

``st.plotly_chart`` encodes its figure to JSON at every call (``plotly.io.to_json``), also a figure
it sent before: then it sends only a reference, but after encoding it. A page draws ten to twelve
charts a refresh, most of them unchanged, and every full run encodes the trainability map again.
Streamlit turns the figure into a dict (``to_dict``), then encodes that; a figure whose ``to_dict``
returns the same ``KeptJson`` dict each time (one bnviz never changes after building it,
``ui.charts.serialized_once``) is encoded once, the JSON kept on the dict; ``install`` wraps
``plotly.io.to_json`` for that, once per process.
"""

from __future__ import annotations

import plotly.io
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState, get_script_run_ctx

_original_clear = ForwardMsgQueue.clear
_original_to_json = plotly.io.to_json


def install() -> None:
    """Make every session's queue drop the references that belong to the messages it drops, and
    Streamlit encode a kept figure once (idempotent)."""
    ForwardMsgQueue.clear = _clear
    plotly.io.to_json = _to_json


class KeptJson(dict):
    """A figure's dict (``to_dict``) that keeps the JSON Streamlit made of it: Streamlit turns the figure
    into this dict, then encodes the dict. The dict must not change once it is encoded."""

    __slots__ = ("json",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.json: str | None = None


def _to_json(fig, *args, **kwargs) -> str:
    if type(fig) is not KeptJson or args or kwargs != {"validate": False}:  # not Streamlit's call on a kept dict
        return _original_to_json(fig, *args, **kwargs)
    if fig.json is None:
        fig.json = _original_to_json(fig, validate=False)
    return fig.json


def orphaned_references(queue: list, fragment_ids: list[str]) -> set[int]:
    """The ids of the reference messages in ``queue`` that follow a delta of one of ``fragment_ids``."""
    orphans, dropped = set(), False
    for msg in queue:
        if msg.HasField("ref_hash"):
            if dropped:
                orphans.add(id(msg))
        elif msg.HasField("delta"):
            dropped = msg.delta.fragment_id in fragment_ids
    return orphans


def _clear(self: ForwardMsgQueue, retain_lifecycle_msgs: bool = False,
           fragment_ids_this_run: list[str] | None = None) -> None:
    if not (retain_lifecycle_msgs and fragment_ids_this_run):
        _original_clear(self, retain_lifecycle_msgs, fragment_ids_this_run)
        return
    queued = self._queue  # held, so that the ids below stay the messages' own
    orphans = orphaned_references(queued, fragment_ids_this_run)
    _original_clear(self, retain_lifecycle_msgs, fragment_ids_this_run)
    self._queue = [msg for msg in self._queue if id(msg) not in orphans]


def set_run_every(seconds: float | None) -> None:
    """From inside a fragment's run: rerun this fragment every ``seconds`` from now on, or (None) no more
    (this page only)."""
    ctx, fragment_id = get_script_run_ctx(), ThreadState.get().fragment_id
    if ctx is None or fragment_id is None:
        raise RuntimeError("set_run_every is called from inside a fragment's run")
    message = ForwardMsg()
    if seconds is None:
        message.stop_auto_rerun.fragment_ids.append(fragment_id)
    else:
        message.auto_rerun.interval = seconds
        message.auto_rerun.fragment_id = fragment_id
    ctx.enqueue(message)
