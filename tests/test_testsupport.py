"""The test-support parsers on hand-made input: what the browser, protocol and server clients read.

The classroom tests and benchmarks trust these to read the page's state, time the server's
refreshes and find tracebacks in its log; a parser that misread would make them pass or fail
for the wrong reason.
"""

import html
import json

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from testsupport import classroom_report, frames, serverctl, streamclient


def rerun(fragment: str = "", timer: bool = True) -> BackMsg:
    """A rerun request: of the page, or of a fragment on its timer (or, ``timer=False``, a click in it)."""
    message = BackMsg()
    message.rerun_script.query_string = ""
    if fragment:
        message.rerun_script.fragment_id = fragment
        message.rerun_script.is_auto_rerun = timer
    return message


def finished(status, *fragments) -> ForwardMsg:
    message = ForwardMsg()
    message.script_finished = status
    message.metadata.run.fragment_ids.extend(fragments)
    return message


def started(*fragments) -> ForwardMsg:
    """A run's new_session: of the page, or of ``fragments``."""
    message = ForwardMsg()
    message.new_session.page_script_hash = "page"
    message.metadata.run.fragment_ids.extend(fragments)
    return message


def test_refresh_timer_pairs_each_fragment_request_with_the_run_that_answered_it():
    fragment_done = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
    timer = frames.RefreshTimer()
    timer.sent(rerun("abc"), 10.0)
    timer.received(started("abc"), 10.1)
    timer.sent(rerun("abc"), 10.2)  # asked again while a run is under way: the next run answers it
    timer.sent(rerun("line"), 10.3)  # another fragment's timer
    timer.received(finished(fragment_done, "abc"), 10.5)
    timer.sent(rerun("abc"), 10.6)  # waits with the one from 10.2: one run answers both
    timer.received(started("abc"), 10.7)
    timer.received(finished(fragment_done, "abc"), 11.0)
    timer.received(started("line"), 11.1)
    timer.received(finished(fragment_done, "line"), 11.3)
    assert timer.times == [(10.5, pytest.approx(0.5)), (11.0, pytest.approx(0.8)), (11.0, pytest.approx(0.4)),
                           (11.3, pytest.approx(1.0))]
    timer.sent(rerun(), 12.0)  # a full rerun is not a live refresh
    timer.received(started(), 12.1)
    timer.received(finished(ForwardMsg.FINISHED_SUCCESSFULLY), 12.4)
    timer.sent(rerun("abc", timer=False), 12.5)  # nor a click on a button drawn in the fragment
    timer.received(started("abc"), 12.5)
    timer.received(finished(fragment_done, "abc"), 12.6)
    timer.sent(rerun("abc"), 13.0)
    timer.received(started(), 13.1)  # a full run takes the waiting request with it: untimed
    timer.received(finished(ForwardMsg.FINISHED_SUCCESSFULLY), 13.2)
    timer.received(started("abc"), 13.3)
    timer.received(finished(fragment_done, "abc"), 13.4)  # nothing was waiting
    assert len(timer.times) == 4
    assert timer.finished == [10.5, 11.0, 11.3, 12.6, 13.4]
    assert timer.between(9.0, 10.1) == [pytest.approx(0.5)] and timer.between(12.0, 20.0) == []


def test_frames_decode_what_they_can_and_nothing_else():
    assert frames.is_fragment_rerun(frames.back_message(rerun("x").SerializeToString()))
    assert not frames.is_fragment_rerun(frames.back_message(rerun().SerializeToString()))
    assert not frames.is_fragment_rerun(frames.back_message(rerun("x", timer=False).SerializeToString()))
    assert frames.fragment_finished(frames.forward_message(
        finished(ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY).SerializeToString()))
    assert frames.back_message(b"\xff\xff\xff") is None and frames.forward_message(b"\xff\xff\xff") is None


def status_html(state: str, ahead=None, runs=()) -> str:
    """The run status element's html, as ui.status.show writes it."""
    data = {"state": state, "ahead": ahead, "runs": [
        {"key": "k", "status": status, "step": step, "steps": steps, "watching": 1, "shared": True, "forked_at": None}
        for status, step, steps in runs]}
    return f'<div class="bnviz-status" hidden data-status="{html.escape(json.dumps(data), quote=True)}"></div>'


@pytest.mark.parametrize("bodies, state", [
    ([status_html("running", runs=[("running", 120, 1000)])], "running 120 1000"),
    ([status_html("done", runs=[("finished", 5, 50)])], "finished 5 50"),
    ([status_html("queued", ahead=3, runs=[("queued", 0, 50)])], "queued 3"),
    ([status_html("queued", ahead=0)], "queued 0"),
    ([status_html("idle")], "idle"),
    ([status_html("paused", runs=[("running", 9, 90)])], "paused 9 90"),  # a frozen picture of a running run
    ([status_html("reaped", runs=[("stopped", 7, 70)])], "reaped 7 70"),
    (["<p>step 5 of 50 · running</p>", "<div>other html</div>"], None),  # words are not the protocol
])
def test_the_protocol_client_reads_the_page_state_from_the_status_element(bodies, state):
    assert next(filter(None, map(streamclient.read_state, bodies)), None) == state


def test_states_parse_into_kind_and_numbers():
    assert classroom_report.parse("running 12 1000") == ("running", 12, 1000)
    assert classroom_report.parse("queued 3") == ("queued", 3, None)
    assert classroom_report.parse("idle") == ("idle", None, None)
    assert classroom_report.parse("") == ("", None, None)


def test_percentile_and_fairness():
    assert classroom_report.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert classroom_report.percentile([5], 95) == 5
    assert classroom_report.jain([10, 10, 10]) == pytest.approx(1.0)
    assert classroom_report.jain([1, 0, 0, 0]) == pytest.approx(0.25)


def test_tracebacks_are_found_with_their_last_line_and_origin():
    log = "\n".join([
        "INFO starting",
        "Traceback (most recent call last):",
        f'  File "{serverctl.REPO_ROOT}/bnviz/figures.py", line 3, in draw',
        "    raise ValueError('runs compared side by side must share bin edges')",
        "ValueError: runs compared side by side must share bin edges",
        "INFO more",
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3/site-packages/starlette_websocket.py", line 9, in receive',
        "RuntimeError: WebSocketDisconnected",
    ])
    found = serverctl.tracebacks(log)
    assert [t.last_line for t in found] == ["ValueError: runs compared side by side must share bin edges",
                                            "RuntimeError: WebSocketDisconnected"]
    assert [t.in_app for t in found] == [True, False]
    assert [t.upstream_disconnect for t in found] == [False, True]
