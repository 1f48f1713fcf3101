"""ui.pacing: a training page's poll interval, from the pages training and the server's work per poll."""

from __future__ import annotations

import pytest

from ui.pacing import MEASURED_POLLS, PRIOR_SECONDS, Pacer, close_enough


class Clocks:
    """The wall clock and the server's work clock, moved by the test."""

    def __init__(self):
        self.now, self.work = 0.0, 0.0

    def pacer(self, share: float = 0.5, **settings) -> Pacer:
        return Pacer(clock=lambda: self.now, work=lambda: self.work, share=share, **settings)


def poll_for(clocks: Clocks, pacer: Pacer, pages: int, seconds: float, interval: float, work_per_poll: float) -> None:
    """``pages`` pages each poll every ``interval`` seconds for ``seconds``; each poll costs ``work_per_poll``."""
    for _ in range(round(seconds / interval)):
        for page in range(pages):
            clocks.now += interval / pages
            clocks.work += work_per_poll
            pacer.polled(f"p{page}")


def test_a_page_alone_polls_at_the_fastest_rate():
    clocks = Clocks()
    pacer = clocks.pacer()
    assert pacer.interval() == pacer.fastest  # nobody has polled yet
    poll_for(clocks, pacer, pages=1, seconds=10, interval=0.4, work_per_poll=0.05)
    assert pacer.pages() == 1 and pacer.cost == pytest.approx(0.05) and pacer.interval() == pacer.fastest


def test_a_class_pressing_start_together_is_paced_before_its_first_polls():
    clocks = Clocks()
    pacer = clocks.pacer(share=0.6)
    for page in range(30):
        pacer.training(f"p{page}")  # their Start's full runs
    assert pacer.pages() == 30 and pacer.interval() == pytest.approx(30 * PRIOR_SECONDS / 0.6, abs=0.05)


def test_a_class_is_slowed_to_what_the_server_can_serve_as_measured():
    """Thirty pages at 48 ms of the server's work a poll, 0.6 of it for them: 2.4 s between polls."""
    clocks = Clocks()
    pacer = clocks.pacer(share=0.6)
    poll_for(clocks, pacer, pages=30, seconds=20, interval=2.0, work_per_poll=0.048)
    assert pacer.pages() == 30 and pacer.cost == pytest.approx(0.048)
    assert pacer.interval() == pytest.approx(2.4)
    assert 30 * pacer.cost / pacer.interval() <= 0.6 + 1e-9  # the polls together take at most the share


def test_the_cost_follows_the_window_and_needs_enough_polls():
    clocks = Clocks()
    pacer = clocks.pacer(window=10.0)
    poll_for(clocks, pacer, pages=1, seconds=MEASURED_POLLS - 1, interval=1.0, work_per_poll=0.5)
    assert pacer.cost == PRIOR_SECONDS  # too few polls to say
    poll_for(clocks, pacer, pages=10, seconds=20, interval=0.5, work_per_poll=0.5)
    assert pacer.cost == pytest.approx(0.5) and pacer.interval() == pacer.longest  # however busy, pages move
    poll_for(clocks, pacer, pages=10, seconds=20, interval=0.5, work_per_poll=0.01)
    assert pacer.cost == pytest.approx(0.01)  # the slow polls are out of the window
    assert pacer.interval() == pacer.fastest


def test_pages_that_stop_polling_leave_the_count():
    clocks = Clocks()
    pacer = clocks.pacer(window=10.0)
    for page in range(30):
        pacer.training(f"p{page}")
    clocks.now = 5.0
    pacer.polled("p0")
    clocks.now = 12.0  # the class left, p0 stays
    assert pacer.pages() == 1 and pacer.interval() == pacer.fastest


def test_a_page_keeps_its_interval_within_the_band_and_redraws_outside_it():
    assert not close_enough(0.4, 2.4)  # far too fast: redraw at the new pace
    assert close_enough(2.0, 2.4) and close_enough(3.0, 2.4)  # near enough: no redraw for a small move
    assert not close_enough(4.0, 2.4)  # the class has partly left: a third faster
    assert not close_enough(6.0, 2.4)  # the class has mostly left: faster again
    assert close_enough(None, None) and not close_enough(None, 0.4)  # a finished page does not poll


def test_two_cores_are_paced_by_the_turns_time_and_one_core_by_the_cpu(monkeypatch):
    import time

    from ui import pacing, turns

    monkeypatch.setattr(pacing, "cores", lambda: 2)
    two = pacing.pacer.__wrapped__()
    assert two.share == pacing.SHARE and two._work == turns.turns().busy
    monkeypatch.setattr(pacing, "cores", lambda: 1)
    one = pacing.pacer.__wrapped__()
    assert one.share == pacing.ONE_CORE_SHARE < pacing.SHARE and one._work is time.process_time
