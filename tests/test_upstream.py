"""ui.upstream: Streamlit's queue keeps a chart's reference when a fragment rerun drops the chart's container.

The messages are those of the white page caught in the act (benchmarks' classroom, five tabs): the live
fragment's run had sent its first elements, a line of text had moved the charts down one place, and the
next run of the fragment began before the rest went out.
"""

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

from ui import upstream

LIVE = "6126efac8975ceb3126548e98485ce1e"  # the live view's fragment


def _delta(path: list[int], fragment_id: str = "", block: bool = False) -> ForwardMsg:
    msg = ForwardMsg()
    msg.metadata.delta_path[:] = path
    if block:
        msg.delta.add_block.vertical.SetInParent()
    else:
        msg.delta.new_element.markdown.body = "text"
    msg.delta.fragment_id = fragment_id
    return msg


def _reference(path: list[int]) -> ForwardMsg:
    msg = ForwardMsg()
    msg.ref_hash = f"hash-of-{path}"
    msg.metadata.delta_path[:] = path
    return msg


def _finished() -> ForwardMsg:
    msg = ForwardMsg()
    msg.script_finished = ForwardMsg.ScriptFinishedStatus.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
    return msg


def _queue() -> ForwardMsgQueue:
    """A full run's map chart (kept: not the fragment's), then the unsent end of a run of the live fragment."""
    queue = ForwardMsgQueue()
    for msg in (_delta([0, 6]), _reference([0, 6, 0]),  # the main script's block and a chart in it
                _delta([0, 4, 5], LIVE, block=True), _reference([0, 4, 5, 0]),  # the heatmaps' slots:
                _delta([0, 4, 5, 1], LIVE), _reference([0, 4, 7, 0, 0, 0]),     # one new, one the browser has
                _finished()):
        queue.enqueue(msg)
    return queue


def _kept(queue: ForwardMsgQueue) -> list[str]:
    return [f"{msg.WhichOneof('type')} {list(msg.metadata.delta_path)}" for msg in queue._queue]


def test_streamlit_alone_keeps_the_reference_whose_container_it_drops():
    queue = _queue()
    upstream._original_clear(queue, retain_lifecycle_msgs=True, fragment_ids_this_run=[LIVE])
    assert _kept(queue) == ["delta [0, 6]", "ref_hash [0, 6, 0]", "ref_hash [0, 4, 5, 0]",
                            "ref_hash [0, 4, 7, 0, 0, 0]", "script_finished []"]


def test_installed_the_references_go_with_the_fragment_and_the_main_scripts_stay():
    upstream.install()
    upstream.install()  # twice is harmless
    queue = _queue()
    queue.clear(retain_lifecycle_msgs=True, fragment_ids_this_run=[LIVE])
    assert _kept(queue) == ["delta [0, 6]", "ref_hash [0, 6, 0]", "script_finished []"]
    assert queue._queue[-1].script_finished == ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN


def test_installed_a_full_runs_clear_and_a_flush_are_streamlits_own():
    upstream.install()
    queue = _queue()
    queue.clear(retain_lifecycle_msgs=True)  # a full run's start: only lifecycle messages stay
    assert _kept(queue) == ["script_finished []"]
    queue = _queue()
    assert len(queue.flush()) == 7 and queue.is_empty()


def test_a_fragment_sets_its_own_interval_from_inside_its_run(tmp_path, monkeypatch):
    """What the browser keys its timers by: the same fragment id, first with the interval it was
    defined with, then with the one its run asked for."""
    from streamlit.testing.v1 import AppTest
    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    page = tmp_path / "page.py"
    page.write_text("import streamlit as st\nfrom ui import upstream\n\n"
                    "@st.fragment(run_every=0.4)\ndef poll():\n    upstream.set_run_every(2.5)\n    st.write('polled')\n\n"
                    "poll()\n")
    sent = []
    original = LocalScriptRunner.forward_msgs
    monkeypatch.setattr(LocalScriptRunner, "forward_msgs", lambda self: sent.extend(original(self)) or original(self))
    at = AppTest.from_file(str(page)).run()
    assert not at.exception and at.markdown[0].value == "polled"
    timers = [(m.auto_rerun.fragment_id, m.auto_rerun.interval) for m in sent if m.WhichOneof("type") == "auto_rerun"]
    assert [interval for _, interval in timers] == pytest.approx([0.4, 2.5]) and timers[0][0] == timers[1][0] != ""
    page.write_text("import streamlit as st\nfrom ui import upstream\n\n"
                    "@st.fragment(run_every=0.4)\ndef poll():\n    upstream.set_run_every(None)\n\npoll()\n")
    sent.clear()
    AppTest.from_file(str(page)).run()
    stops = [list(m.stop_auto_rerun.fragment_ids) for m in sent if m.WhichOneof("type") == "stop_auto_rerun"]
    assert stops == [[timers[0][0]]]  # None: the same fragment's timer stops


def test_set_run_every_outside_a_fragment_says_so(tmp_path):
    from streamlit.testing.v1 import AppTest

    page = tmp_path / "page.py"
    page.write_text("from ui import upstream\nupstream.set_run_every(1.0)\n")
    at = AppTest.from_file(str(page)).run()
    assert "inside a fragment" in at.exception[0].message
