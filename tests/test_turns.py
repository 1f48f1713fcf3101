"""ui/turns.py: one page's run at a time, first come first served, clicks before polls."""

from __future__ import annotations

import threading
import time

from ui.turns import Turns


def _line_up(turns: Turns, names, ahead=()):
    """Each name waits for its turn in a thread of its own, in this order, while the test holds the turn;
    returns the order in which they had it."""
    order, threads = [], []
    with turns.turn():
        for name in names:
            def take(name=name):
                with turns.turn(ahead=name in ahead):
                    order.append(name)
            threads.append(threading.Thread(target=take))
            threads[-1].start()
            while turns.waiting() < len(threads):  # in line before the next one comes
                time.sleep(0.001)
    for thread in threads:
        thread.join(5)
    return order


def test_turns_are_taken_in_the_order_asked():
    assert _line_up(Turns(), list(range(8))) == list(range(8))


def test_a_full_run_goes_ahead_of_the_waiting_polls():
    order = _line_up(Turns(), ["poll 1", "click 1", "poll 2", "click 2"], ahead={"click 1", "click 2"})
    assert order == ["click 1", "click 2", "poll 1", "poll 2"]


def test_a_turn_is_reentrant():
    turns = Turns()
    with turns.turn(ahead=True):
        with turns.turn():  # a fragment inside its page's full run
            pass
        assert turns._holder == threading.get_ident()
    assert turns._holder is None


def test_a_run_that_waits_for_a_trainer_lets_the_others_go_and_then_finishes_first():
    turns, order = Turns(), []
    released, waited = threading.Event(), threading.Event()

    def click():
        with turns.turn(ahead=True), turns.turn():
            order.append("click starts")
            with turns.released():  # e.g. for a fork's state
                released.set()
                waited.wait(5)
            order.append("click ends")

    def poll(name):
        with turns.turn():
            order.append(name)

    first = threading.Thread(target=click)
    first.start()
    released.wait(5)
    other = threading.Thread(target=poll, args=("a poll meanwhile",))
    other.start()
    other.join(5)  # it had its turn while the click waited
    with turns.turn():
        later = threading.Thread(target=poll, args=("a poll after",))
        later.start()
        while turns.waiting() < 1:
            time.sleep(0.001)
        waited.set()
        while turns.waiting() < 2:  # the click is back in line, at its front
            time.sleep(0.001)
    first.join(5)
    later.join(5)
    assert order == ["click starts", "a poll meanwhile", "click ends", "a poll after"]
    assert turns._holder is None and turns.waiting() == 0


def test_an_error_in_a_turn_gives_it_up():
    turns = Turns()
    try:
        with turns.turn():
            raise ValueError("the script stopped")
    except ValueError:
        pass
    assert _line_up(turns, ["next"]) == ["next"]


def test_the_busy_clock_runs_while_a_page_holds_a_turn_and_stops_while_it_steps_aside():
    now = [0.0]
    turns = Turns(clock=lambda: now[0])
    now[0] = 5.0  # nobody in line: not busy
    with turns.turn():
        now[0] = 7.0
        assert turns.busy() == 2.0  # a turn under way counts
        with turns.released():  # waiting for a trainer: the line is free
            now[0] = 10.0
        now[0] = 10.5
    now[0] = 20.0
    assert turns.busy() == 2.5
    handed = threading.Event()

    def second():
        with turns.turn():
            handed.set()
            now[0] = 21.0  # the next in line takes over the clock

    with turns.turn():
        thread = threading.Thread(target=second)
        thread.start()
        while turns.waiting() < 1:
            time.sleep(0.001)
        now[0] = 20.5
    thread.join(5)
    assert handed.is_set() and turns.busy() == 2.5 + 0.5 + 0.5
