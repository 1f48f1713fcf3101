"""The page through Streamlit's AppTest: widgets by key, URL parameters, the run pool.

AppTest never ticks ``run_every``: each ``at.run()`` is one full rerun (fragments included).
Runs here are long (``steps`` large) so that they are still alive when a test looks; the
``app`` fixture stops every trainer the test started and waits for its thread.
"""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bnviz import runfile
from bnviz.presets import DEFAULT_PRESET, PRESETS
from bnviz.reproduce import registry
from bnviz.serve.process import TrainerProcess
from bnviz.serve.settings import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RUNNING
from bnviz.trainer import Trainer
from ui import controls, session, status
from ui.charts import serialized_once
from ui.shared_figures import HOLD_SECONDS
from ui.state import MAP

LONG = "200000"  # steps: still training while the test looks
BAD = {"lr": "abc", "depth": "999", "norm": "<script>alert(1)</script>", "unknown": "1"}




def owner(at: AppTest) -> str:
    return at.session_state["owner"]


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def texts(at: AppTest) -> list[str]:
    return [e.value for kind in ("markdown", "info", "warning", "error", "caption") for e in at.get(kind)]


def run_status(at: AppTest) -> dict:
    """The page's machine-readable run status (ui.status), as a client reads it."""
    found = [data for element in at.get("html") if (data := status.read(element.proto.body)) is not None]
    assert len(found) == 1, found
    return found[0]


def charts(at: AppTest) -> list[dict]:
    """The live view's charts (the trainability map's, under them, are tests/test_map_view.py's)."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart") if MAP not in chart.proto.id]


def points(values) -> np.ndarray:
    """A trace's x or y as sent: a list, or Plotly's base64 typed array {"dtype", "bdata"}."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def test_the_page_renders_on_defaults(app):
    at = app()
    assert not at.exception
    assert not at.warning
    assert at.query_params["preset"] == DEFAULT_PRESET
    for key in ("start", "pause", "resume", "step", "reset"):
        assert at.button(key=key)
    assert at.session_state["choice"].config == PRESETS[DEFAULT_PRESET].config


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_renders_from_the_url(app, name):
    at = app(preset=name)
    assert not at.exception and not at.warning
    assert at.session_state["choice"].config == PRESETS[name].config
    assert at.selectbox(key="preset").value == name
    assert at.select_slider(key="steps").value == PRESETS[name].config.steps


def test_the_preset_box_loads_each_preset(app):
    at = app()
    for name in PRESETS:
        at.selectbox(key="preset").set_value(name).run()
        assert not at.exception
        assert at.session_state["choice"].config == PRESETS[name].config
        assert at.radio(key="norm").value == PRESETS[name].config.norm
        assert at.query_params["preset"] == name


def test_controls_change_the_config_and_the_url(app):
    at = app()
    at.radio(key="norm").set_value("batchnorm").run()
    at.select_slider(key="lr").set_value(0.1).run()
    at.slider(key="depth").set_value(5).run()
    at.number_input(key="seed").set_value(7).run()
    config = at.session_state["choice"].config
    assert (config.norm, config.lr, config.depth, config.seed) == ("batchnorm", 0.1, 5, 7)
    assert {key: at.query_params[key] for key in ("norm", "lr", "depth", "seed")} == {
        "norm": "batchnorm", "lr": "0.1", "depth": "5", "seed": "7"}


def test_a_shared_link_restores_every_setting(app):
    at = app(preset="noisy-bn", norm="batchnorm", lr="0.055", seed="3", activation="sigmoid", compare="1")
    assert not at.warning
    choice = at.session_state["choice"]
    assert choice.config == PRESETS["noisy-bn"].config.replace(norm="batchnorm", lr=0.055, seed=3, activation="sigmoid")
    assert choice.compare
    assert at.select_slider(key="lr").value == 0.055  # off the slider's grid, still exact


@pytest.mark.parametrize("name", PRESETS)
def test_url_round_trip_relative_to_the_preset(name):
    preset = PRESETS[name]
    for changes in ({}, {"activation": "sigmoid", "norm": "batchnorm"}, {"lr": 0.003, "seed": 9, "steps": 123}):
        choice = controls.Choice(preset, preset.config.replace(**changes), compare=True, hidden=("lr", "seed"))
        assert controls.read_query(controls.write_query(choice)) == choice


def test_bad_url_parameters_become_warnings_with_a_fallback(app):
    at = app(**BAD)
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 4
    for name in ("lr", "depth", "norm", "unknown"):
        assert any(name in w for w in warnings), name
    assert at.session_state["choice"].config == PRESETS[DEFAULT_PRESET].config
    assert all("<script>" not in text for text in texts(at))  # shown as literal text, never markup
    assert not set(BAD) & set(at.query_params)  # the URL now holds the fallbacks


def test_an_unknown_preset_falls_back(app):
    at = app(preset="nope")
    assert not at.exception and len(at.warning) == 1 and "preset" in at.warning[0].value
    assert at.query_params["preset"] == DEFAULT_PRESET


def test_hide_hides_the_chosen_controls(app):
    at = app(hide="lr,norm", lr="0.2")
    keys = {w.key for kind in ("radio", "select_slider", "selectbox", "slider") for w in at.get(kind)}
    assert "lr" not in keys and "norm" not in keys
    assert {"activation", "depth", "preset"} <= keys
    assert at.session_state["choice"].config.lr == 0.2  # still set by the URL
    assert at.query_params["hide"] == "lr,norm"


def test_start_creates_one_entry_and_reruns_do_not_start_another(app):
    at = app(steps=LONG)
    pool = session.pool()
    assert pool.get(owner(at)) is None
    at.button(key="start").click().run()
    entry = pool.get(owner(at))
    assert entry is not None and len(entry.trainers) == 1
    for _ in range(3):
        at.run()
    assert pool.get(owner(at)) is entry
    assert pool.counts()["alive_trainers"] == 1


def test_two_tabs_on_one_link_watch_one_run_and_the_page_says_how_many(app):
    first, second = app(steps=LONG), app(steps=LONG)
    for at in (first, second):
        at.button(key="start").click().run()
    pool = session.pool()
    run = pool.get(owner(first)).runs[0]
    assert pool.get(owner(second)).runs[0] is run and pool.counts()["alive_trainers"] == 1
    wait_for(lambda: run.snapshot().step > 0, timeout=90)  # a fresh fork server's first run, on a busy machine
    for at in (first, second):
        at.run()
        data = run_status(at)
        assert data["state"] == "running" and data["runs"][0]["key"] == run.key == run.config.key()
        assert data["runs"][0]["watching"] == 2 and data["runs"][0]["shared"]
        assert any(" · 2 watching" in text for text in texts(at))


def test_a_page_from_before_a_server_restart_says_its_run_is_gone(app):
    at = app(steps=LONG, server="0ld5erv3")  # the marker an earlier server left in the URL
    assert any(text.startswith(session.RESTARTED) for text in texts(at)) and not at.exception  # then the runs lost
    assert "server" not in at.query_params  # no run here: no marker
    at.button(key="start").click().run()
    assert not any(text.startswith(session.RESTARTED) for text in texts(at))
    assert at.query_params["server"] == session.shared().server_id  # while it has a run, the URL says where
    at.button(key="reset").click().run()
    assert "server" not in at.query_params


def test_a_link_from_this_server_is_not_a_restart(app):
    at = app(steps=LONG, server=session.shared().server_id)
    assert not any(text.startswith(session.RESTARTED) for text in texts(at)) and not at.warning


def test_compare_runs_configs_that_differ_only_in_norm(app):
    at = app(steps=LONG, compare="1", preset="noisy-bn")
    at.button(key="start").click().run()
    entry = session.pool().get(owner(at))
    norms = [config.norm for config in entry.configs]
    assert norms == list(PRESETS["noisy-bn"].compare)
    first = entry.configs[0]
    assert all(config.replace(norm=first.norm) == first for config in entry.configs)
    assert len(entry.trainers) == len(norms)


def test_the_live_view_draws_heatmaps_first(app):
    at = app(steps=LONG)
    at.button(key="start").click().run()
    trainer = session.pool().get(owner(at)).trainers[0]
    wait_for(lambda: len(trainer.snapshot().column("steps")) > 0)
    at.run()
    drawn = charts(at)
    assert drawn[0]["data"][0]["type"] == "heatmap"
    assert drawn[0]["data"][0]["z"]["dtype"] == "u1"
    assert len(drawn) == 2 * 5  # while training every chart has two slots (ui/charts.py)
    assert any(text.startswith("**step ") and " of 200000" in text for text in texts(at))


def test_a_live_chart_changes_one_slot_per_refresh(app):
    at = app(steps=LONG)
    at.button(key="start").click().run()
    trainer = session.pool().get(owner(at)).trainers[0]
    wait_for(lambda: len(trainer.snapshot().column("steps")) > 0)
    at.run()
    before = [chart.proto.spec for chart in at.get("plotly_chart")[:2]]
    assert len(before) == 2
    version = trainer.snapshot().version
    wait_for(lambda: trainer.snapshot().version > version)
    time.sleep(HOLD_SECONDS)  # the pages' shared sample of the run is renewed after the hold
    at.run()
    after = [chart.proto.spec for chart in at.get("plotly_chart")[:2]]
    assert sum(a != b for a, b in zip(before, after)) == 1  # the new figure replaced the older slot
    assert set(after) & set(before)  # the other slot kept its figure: no redraw in the browser


def test_a_new_learning_rate_forks_a_private_run_and_other_changes_wait(app):
    at, other = app(steps=LONG), app(steps=LONG)
    for page in (at, other):
        page.button(key="start").click().run()
    pool = session.pool()
    shared = pool.get(owner(at)).runs[0]
    wait_for(lambda: shared.snapshot().step > 10)
    at.select_slider(key="lr").set_value(0.2).run()
    entry = pool.get(owner(at))
    fork = entry.runs[0]
    assert fork is not shared and fork.controller == owner(at) and pool.get(owner(other)).runs[0] is shared
    wait_for(lambda: fork.snapshot().lr_events)
    assert fork.snapshot().lr_events == ((fork.snapshot().forked_at, 0.2),) and fork.snapshot().forked_at >= 10
    assert any("private copy" in info.value for info in at.info)
    wait_for(lambda: shared.snapshot().step > fork.snapshot().forked_at + 10)
    assert shared.snapshot().lr_events == ()  # the other tab's run did not change
    at.select_slider(key="lr").set_value(0.3).run()  # its own run now: the change applies in place
    assert pool.get(owner(at)).runs[0] is fork
    wait_for(lambda: fork.snapshot().lr_events[-1][1] == 0.3)
    at.slider(key="depth").set_value(5).run()
    assert any("settings changed" in info.value and "depth 3 → 5" in info.value for info in at.info)
    assert session.pool().get(owner(at)).runs == (fork,) and fork.config.depth == 3
    at.button(key="restart").click().run()
    restarted = session.pool().get(owner(at))
    assert restarted.runs != (fork,) and restarted.configs[0].depth == 5


def test_pause_freezes_this_tabs_picture_of_a_shared_run_and_step_forks_it(app):
    at = app(steps=LONG)
    at.button(key="start").click().run()
    shared = session.pool().get(owner(at)).runs[0]
    wait_for(lambda: shared.snapshot().step > 20)
    at.button(key="pause").click().run()
    frozen = run_status(at)
    assert frozen["state"] == "paused" and frozen["runs"][0]["shared"]
    wait_for(lambda: shared.snapshot().step > frozen["runs"][0]["step"] + 20)  # it goes on
    at.run()
    assert run_status(at)["runs"][0]["step"] == frozen["runs"][0]["step"]  # this tab's picture does not
    at.button(key="resume").click().run()
    assert run_status(at)["state"] == "running" and run_status(at)["runs"][0]["step"] > frozen["runs"][0]["step"]
    at.button(key="step").click().run()  # a private copy, paused after one step
    fork = session.pool().get(owner(at)).runs[0]
    assert fork is not shared and fork.snapshot().status == "paused"
    assert fork.snapshot().step == fork.snapshot().forked_at + 1
    assert run_status(at)["runs"][0]["forked_at"] == fork.snapshot().forked_at


def test_pause_step_resume_and_scrub_on_a_private_run(app):
    at = app(steps=LONG)
    at.button(key="step").click().run()  # Step from nothing: a private run, paused after its first step
    trainer = session.pool().get(owner(at)).trainers[0]
    wait_for(lambda: trainer.snapshot().step == 1 and trainer.snapshot().status == "paused")
    at.run()
    at.button(key="resume").click().run()
    wait_for(lambda: trainer.snapshot().step > 20)
    at.button(key="pause").click().run()
    assert trainer.snapshot().status == "paused"
    before = trainer.snapshot().step
    at.button(key="step").click().run()
    assert trainer.snapshot().step == before + 1
    assert any(f"step {before + 1} of" in text for text in texts(at))
    at.slider(key="scrub").set_value(10).run()
    heatmap = charts(at)[0]["data"][0]
    columns = int(heatmap["z"]["shape"].split(",")[1])
    assert heatmap["x0"] + (columns - 0.5) * heatmap["dx"] == 10  # cut at the scrub step
    at.button(key="resume").click().run()
    assert trainer.snapshot().status == "running"
    at.button(key="reset").click().run()
    assert session.pool().get(owner(at)) is None


def test_a_diverged_run_says_so_and_keeps_its_pictures(app):
    at = app(activation="relu", init="gaussian", init_sigma="1.0", lr="10.0", depth="5")
    at.button(key="start").click().run()
    trainer = session.pool().get(owner(at)).trainers[0]
    wait_for(lambda: trainer.snapshot().done)
    at.run()
    assert not at.exception
    assert any("diverged at step" in error.value for error in at.error)
    assert charts(at)[0]["data"][0]["type"] == "heatmap"


def test_the_reproduce_view_checks_the_published_claims_on_the_paired_runs(app):
    at = app(preset="ioffe-fig1", compare="1", steps="300")
    assert not any("Reproduce view" in text for text in texts(at))  # nothing run yet
    at.button(key="start").click().run()
    trainers = session.pool().get(owner(at)).trainers
    assert sorted(t.config.norm for t in trainers) == ["batchnorm", "none"]
    assert any("Reproduce view" in text and "Ioffe" in text for text in texts(at))
    wait_for(lambda: all(t.snapshot().done for t in trainers), timeout=60)
    at.run()
    assert not at.exception
    lines = [e.value for kind in ("success", "warning") for e in at.get(kind)]
    expected = registry.check_claims("ioffe-fig1", {t.config.norm: runfile.from_snapshot(t.snapshot()) for t in trainers})
    assert sorted(lines) == sorted(claim.line for claim in expected)
    assert any(line.startswith("BN final test accuracy") for line in lines)


def test_a_full_server_queues_and_says_how_many_runs_are_ahead(app, monkeypatch):
    st.cache_resource.clear()
    monkeypatch.setenv(session.ENV_MAX_RUNNING, "1")
    first, second, also, third = app(steps=LONG), app(steps=LONG, seed="1"), app(steps=LONG, seed="1"), \
        app(steps=LONG, seed="2")
    for at in (first, second, also, third):
        at.button(key="start").click().run()
    assert session.pool().max_running == 1
    assert any("your run is next" in info.value for info in second.info)
    assert any("1 run ahead of yours" in info.value for info in third.info)  # two tabs, one run ahead
    assert run_status(third) == {"state": "queued", "ahead": 1, "runs": run_status(third)["runs"]}
    first.button(key="reset").click().run()
    wait_for(lambda: session.pool().get(owner(second)).running)  # once the first run has really ended


def test_bad_limits_in_the_environment_keep_the_defaults():
    max_running, idle, runs_in, problems = session.limits(
        {session.ENV_MAX_RUNNING: "zero", session.ENV_IDLE_TIMEOUT: "1", session.ENV_RUNS_IN: "fibers"})
    assert (max_running, idle, runs_in) == (DEFAULT_MAX_RUNNING, DEFAULT_IDLE_TIMEOUT, "process") == (4, 50.0, "process")
    assert len(problems) == 3 and "BNVIZ_RUNS_IN='fibers' is not one of process, thread" in problems[0]


def test_without_a_fork_server_runs_train_in_threads_and_the_log_says_so(monkeypatch):
    monkeypatch.setattr(session.process, "AVAILABLE", False)  # as on Windows
    *_, runs_in, problems = session.limits({})
    assert runs_in == "thread" and problems == ("this platform has no fork server (Windows): runs train in threads "
                                                "of the server",)


@pytest.mark.parametrize("runs_in, kind", [("process", TrainerProcess), ("thread", Trainer)])
def test_runs_train_in_processes_unless_the_deployer_says_threads(app, monkeypatch, runs_in, kind):
    monkeypatch.setenv(session.ENV_RUNS_IN, runs_in)
    st.cache_resource.clear()  # a new server: shared() reads the environment again
    at = app()
    at.button(key="step").click().run()
    trainers = session.pool().get(owner(at)).trainers
    assert len(trainers) == 1 and type(trainers[0]) is kind
    wait_for(lambda: trainers[0].snapshot().step >= 1)


def test_a_chart_serializes_its_figure_once_and_sends_the_same_json():
    import numpy as np
    import plotly.graph_objects as go
    import plotly.io
    import plotly.tools

    def sent(figure):  # what st.plotly_chart puts on the wire (Streamlit 1.67)
        return plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(figure, True), validate=False)

    from ui import upstream

    upstream.install()  # as the page does: Streamlit's encoding of a marked figure is kept on it
    figure = go.Figure(go.Heatmap(z=np.arange(48 * 30, dtype=np.uint8).reshape(48, 30)))
    expected = sent(figure)
    assert sent(figure) is not sent(figure)  # an unmarked figure is encoded at every call
    once = serialized_once(figure)
    assert once is figure and once.to_dict() is once.to_dict()  # computed once, kept
    assert sent(once) is sent(once) and sent(once) == expected  # encoded once, the same JSON
    assert plotly.io.to_json(once) == plotly.io.to_json(figure, validate=True) == plotly.io.to_json(
        go.Figure(figure.to_plotly_json()))  # other calls encode as ever



def test_the_landscape_preset_draws_its_landscape_for_both_runs(app):
    """Issue 16.7: the landscape preset's caption promises 'loss and gradient change less along the
    gradient with BN'; the page draws the three measures over time, BN and no BN side by side."""
    at = app(preset="landscape", compare="1", steps="200")
    at.button(key="start").click().run()
    trainers = session.pool().get(owner(at)).trainers
    wait_for(lambda: all(t.snapshot().done for t in trainers), timeout=90)
    at.run()
    assert not at.exception
    landscape = [chart for chart in charts(at) if any("smoothness" in a.get("text", "")
                                                      for a in chart["layout"].get("annotations", []))]
    assert len(landscape) == 1
    titles = {a["text"] for a in landscape[0]["layout"]["annotations"]}
    assert {"loss range (nats)", "gradient predictiveness", "effective β-smoothness"} <= titles
    names = {trace["name"] for trace in landscape[0]["data"]}
    assert names == {"no BN", "BatchNorm"}
    assert all(len(points(trace["x"])) == 200 // 50 for trace in landscape[0]["data"])  # every 50 steps, as the preset probes
    assert any("landscape probe" in caption.value for caption in at.caption)


def test_a_run_without_the_probe_draws_no_landscape(app):
    at = app(preset="ioffe-fig1", steps="60")
    at.button(key="start").click().run()
    trainer = session.pool().get(owner(at)).trainers[0]
    wait_for(lambda: trainer.snapshot().done, timeout=60)
    at.run()
    assert not at.exception
    assert not any("landscape probe" in caption.value for caption in at.caption)


def test_the_class_view_lists_the_servers_runs_and_opens_one(app):
    student, teacher = app(steps=LONG, lr="0.1"), app(steps=LONG)
    student.button(key="start").click().run()
    run = session.pool().get(owner(student)).runs[0]
    teacher.toggle(key="class-view").set_value(True).run()
    listed = [text.replace("\\", "") for text in texts(teacher) if text.startswith(DEFAULT_PRESET.replace("-", "\\-"))]
    assert listed == [f"{DEFAULT_PRESET} · no BN · lr 0.1, steps 200000"]  # its preset, then what differs
    assert any(text == "1" for text in texts(teacher))  # one tab watches it
    teacher.button(key=f"open-{run.key}").click().run()
    assert session.pool().get(owner(teacher)).runs[0] is run and session.pool().watching(run) == 2
    assert teacher.session_state["choice"].config == run.config  # the sidebar shows the run's settings
    assert teacher.select_slider(key="lr").value == 0.1 and run_status(teacher)["runs"][0]["key"] == run.key
    assert not teacher.exception
