"""The page with the norms of issue 15, through AppTest: three norms side by side (paired, one
colour scale, the same bins), where a norm does not apply, the explanations, and the
train/eval figure with its re-estimate button."""

from __future__ import annotations

import json
import time

from streamlit.testing.v1 import AppTest

from ui import explain, session

HEARTBEAT = 10.0  # seconds between reruns while a test waits: well inside the pool's idle timeout




def wait_for(condition, at: AppTest | None = None, timeout: float = 600.0) -> None:
    """Wait until ``condition()``; rerunning ``at`` every HEARTBEAT seconds, as a page's polling would:
    the pool stops a tab's runs when nothing has asked for them for a while (a slow, busy machine)."""
    deadline = last = time.monotonic()
    deadline += timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        if at is not None and time.monotonic() - last > HEARTBEAT:
            at.run()
            last = time.monotonic()
        time.sleep(0.1)


def texts(at: AppTest) -> list[str]:
    return [e.value for kind in ("markdown", "info", "warning", "error", "caption") for e in at.get(kind)]


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_compare_three_norms_side_by_side_paired_on_one_scale(app):
    at = app(preset="ioffe-fig1", compare="1", norms="batchnorm,layernorm,rmsnorm", steps="100")
    assert at.multiselect(key="compare_norms").value == ["batchnorm", "layernorm", "rmsnorm"]
    at.button(key="start").click().run()
    entry = session.pool().get(at.session_state["owner"])
    assert [config.norm for config in entry.configs] == ["batchnorm", "layernorm", "rmsnorm"]
    first = entry.configs[0]
    assert all(config.replace(norm=first.norm) == first for config in entry.configs)  # paired: only the norm differs
    wait_for(lambda: all(t.snapshot().done for t in entry.trainers), at)
    at.run()
    assert not at.exception
    heatmaps = charts(at)[0]
    titles = [a["text"] for a in heatmaps["layout"]["annotations"] if a["text"].startswith("<b>")]
    assert titles == ["<b>BatchNorm</b>", "<b>LayerNorm</b>", "<b>RMSNorm</b>"]
    traces = [trace for trace in heatmaps["data"] if trace["type"] == "heatmap"]
    assert len(traces) == 3 * 3  # three runs x three layers
    assert {trace["coloraxis"] for trace in traces} == {"coloraxis"}  # one colour scale
    assert len({(trace["y0"], trace["dy"]) for trace in traces}) == 1  # the same bins
    gap = [chart for chart in charts(at) if any("batch statistics" in str(t.get("name")) for t in chart["data"])]
    assert len(gap) == 1  # BN's train/eval figure, for the BN run only
    assert explain.TRAIN_EVAL in texts(at)


def test_the_multiselect_chooses_the_norms_and_leaves_out_what_does_not_apply(app):
    at = app(preset="ioffe-fig1", compare="1", steps="200000")
    assert at.multiselect(key="compare_norms").value == ["none", "batchnorm"]
    at.multiselect(key="compare_norms").set_value(["batchnorm", "groupnorm", "instancenorm", "layernorm"]).run()
    assert at.query_params["norms"] in ("batchnorm,groupnorm,instancenorm,layernorm", ["batchnorm,groupnorm,instancenorm,layernorm"])
    assert any("Left out, as they do not apply to this network: InstanceNorm" in text for text in texts(at))
    at.button(key="start").click().run()
    entry = session.pool().get(at.session_state["owner"])
    assert [config.norm for config in entry.configs] == ["batchnorm", "groupnorm", "layernorm"]


def test_instancenorm_on_the_mlp_is_a_message_not_a_traceback(app):
    at = app(preset="ioffe-fig1", norm="instancenorm")
    assert not at.exception
    assert any("instancenorm normalizes each channel of each example over its positions" in w.value
               for w in at.warning)
    assert at.session_state["choice"].config.norm == "none"  # the preset's own
    at = app(preset="fastai-collapse", norm="instancenorm")  # the CNN: fine
    assert not at.warning and at.session_state["choice"].config.norm == "instancenorm"


def test_each_norm_is_explained_where_it_is_chosen(app):
    at = app(preset="wu-he-batch", norm="groupnorm")
    assert explain.NORMS["groupnorm"] in texts(at)
    assert at.select_slider(key="groups").value == 4
    assert "LayerNorm" in at.radio(key="norm").help and "InstanceNorm" in at.radio(key="norm").help


def test_the_pitfall_preset_reestimates_and_shows_the_effect(app):
    at = app(preset="bn-eval-pitfall", steps="200000")
    at.button(key="start").click().run()
    trainer = session.pool().get(at.session_state["owner"]).trainers[0]
    wait_for(lambda: trainer.snapshot().step >= 200, at)
    at.run()
    at.button(key="reestimate").click().run()
    fork = session.pool().get(at.session_state["owner"]).trainers[0]  # changing is private: a fork of the run
    assert fork is not trainer
    wait_for(lambda: len(fork.snapshot().reestimates) == 1, at)
    assert not trainer.snapshot().reestimates  # the shared run, which others may watch, is unchanged
    step, before, after = fork.snapshot().reestimates[0]
    assert after > before  # the running averages lag at momentum 0.001: re-estimating helps
    at.button(key="pause").click().run()  # the tab controls its fork: Pause pauses it
    wait_for(lambda: fork.snapshot().status == "paused", at)
    at.run()
    gap = [chart for chart in charts(at) if any("re-estimated" in str(t.get("name")) for t in chart["data"])]
    assert gap and f"{before:.1%} → {after:.1%}" in json.dumps(gap[0], ensure_ascii=False)
