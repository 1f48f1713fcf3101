"""Issue 17's attacks that run fast, as tests (the load ones are in benchmarks/classroom.py):
one visitor's runs beyond the budget are refused in words at every entry point, what the URL
sets the page shows, a comparison whose runs start at different times draws no traceback, the
published result and the URL's repeated keys. The app through AppTest, runs in real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from test_app import owner, texts, wait_for

from bnviz import budget
from ui import actions, controls, live, session

AT_THE_LIMITS = dict(depth="20", width="1024", batch_size="2048", steps="200000")  # one run took 847 MB here
HEAVY_TAB = dict(preset="noisy-bn", compare="1", width="1024", depth="10", batch_size="16", steps="1000")


def literal(text: str) -> str:
    """A message as the page shows it: without the backslashes that keep markdown from acting on it."""
    return text.replace("\\", "")


def refusals(at) -> list[str]:
    return [literal(e.value) for e in at.error if literal(e.value).startswith("Not started.")]


def test_a_run_at_every_limit_is_refused_in_words_before_and_at_start_and_step(app):
    at = app(**AT_THE_LIMITS)
    assert any("This run needs ~" in literal(w.value) for w in at.sidebar.warning)  # said before anyone presses Start
    for button in ("start", "step"):
        at.button(key=button).click().run()
        assert not at.exception and session.pool().get(owner(at)) is None
        (refused,) = refusals(at)
        assert "this server allows 400 MB per run: a smaller batch or fewer units" in refused


def test_a_comparison_is_refused_when_its_runs_together_exceed_a_tab_s_budget(app):
    at = app(**HEAVY_TAB)
    at.button(key="start").click().run()
    assert not at.exception and session.pool().get(owner(at)) is None
    assert any("4 runs side by side need ~" in text and "per tab: turn off the comparison" in text
               for text in map(literal, texts(at)))
    at.toggle(key="compare").set_value(False).run()  # one of them alone fits
    at.button(key="start").click().run()
    assert not refusals(at) and session.pool().get(owner(at)) is not None


def test_a_restart_with_settings_beyond_the_budget_is_refused_and_the_run_kept(app):
    at = app(steps="200000")
    at.button(key="start").click().run()
    entry = session.pool().get(owner(at))
    at.select_slider(key="batch_size").set_value(2048).run()
    at.slider(key="depth").set_value(20).run()
    at.select_slider(key="width").set_value(1024).run()
    at.button(key="restart").click().run()
    assert not at.exception and refusals(at)
    assert session.pool().get(owner(at)) is entry and entry.trainers[0].alive


def test_settings_only_a_link_used_to_set_are_shown_and_budgeted(app):
    at = app(optimizer="adam", landscape_every="1", eval_every="1", record_every="5", noise_std="2.5", **AT_THE_LIMITS)
    assert not at.exception
    shown = {w.key: w.value for w in at.number_input}
    assert (shown["landscape_every"], shown["eval_every"], shown["record_every"], shown["noise_std"]) == (1, 1, 5, 2.5)
    assert at.expander[-1].proto.expanded  # the advanced section opens when a link set one of its settings
    warned = literal(" ".join(w.value for w in at.sidebar.warning))
    assert "landscape_every" in warned and "eval_every" in warned and "SGD instead of adam" in warned
    at.number_input(key="landscape_every").set_value(0).run()
    assert at.session_state["choice"].config.landscape_every == 0 and "landscape_every" not in at.query_params


def test_every_config_field_has_a_widget():
    from bnviz.config import field_names

    assert set(controls.SETTINGS) == set(field_names())


def test_a_repeated_url_key_is_named_in_a_warning(app):
    at = app(lr=["1", "0.2"])
    assert at.session_state["choice"].config.lr == 0.2
    assert any("lr appears 2 times" in w.value and "using the last, 0\\.2" in w.value for w in at.warning)


def test_the_live_view_draws_only_runs_that_are_ready():
    from bnviz.config import RunConfig
    from bnviz.snapshot import Snapshot

    assert not actions.ready(Snapshot(config=RunConfig()))  # starting: no steps, no bin edges


def test_a_comparison_started_under_cpu_load_never_shows_an_exception(app):
    """The traceback of issue 17: one run of a comparison had steps while another was still starting."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        at = app(preset="noisy-bn", compare="1", steps="3000")
        for _ in range(3):
            at.button(key="start").click().run()
            assert not at.exception
            trainers = session.pool().get(owner(at)).trainers
            deadline = time.monotonic() + 60
            while not all(len(t.snapshot().column("steps")) for t in trainers) and time.monotonic() < deadline:
                at.run()
                assert not at.exception, at.exception
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_the_published_result_shows_the_numbers_the_charts_show(app):
    at = app(preset="fastai-collapse", steps="20", eval_every="10")
    at.button(key="start").click().run()
    trainer = session.pool().get(owner(at)).trainers[0]
    wait_for(lambda: trainer.snapshot().done, timeout=300)
    at.run()  # one rerun: before the fix the box read the snapshot of the rerun before
    final = trainer.snapshot().accuracy[-1]
    assert any(f"this run **{final:.2%}**" in text for text in texts(at))


def test_the_default_budget_is_stated():
    assert budget.Budget().describe() == "400 MB a run, 800 MB a tab, 250 ms a step and 30 minutes a run"
