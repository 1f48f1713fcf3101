"""The live view: a fragment that draws the buttons and this session's runs, and polls them.

How often it polls depends on what the runs are doing: 2.5 times a second while training
(slower while more pages train than the server can serve that often: ``ui.pacing``), every
2 s while paused (a heartbeat, so the pool keeps the run), never once every run is done (the
pictures stay; nothing changes). A click on a button reruns this fragment only; when the runs
change state (a click, a run admitted from the queue or finished, the server's pace) the
fragment changes its own interval, or stops its polls.
Figures are rebuilt only when a snapshot's version, the scrub step or the heatmap kind
changed; otherwise the same figures are sent again and Streamlit sends only a reference
(and the browser keeps the chart: Streamlit 1.67 remounts a chart only when its figure changes).
"""

from __future__ import annotations

import json
import time

import plotly.graph_objects as go
import streamlit as st

from bnviz import figures, figures_gap, figures_landscape, runfile
from bnviz.reproduce import registry
from bnviz.serve.settings import REFRESH_SECONDS
from bnviz.snapshot import Snapshot
from bnviz.style import NORM_LABELS, run_label
from bnviz.views import column_budget, run_view
from ui import actions, charts, controls, explain, pacing, session, shared_figures, status, turns, upstream
from ui import state as keys
from ui.controls import Choice

SLOW_FIGURES = ("saturation", "unit_percentiles", "grad_norms", "landscape", "train_eval")  # the last two: only runs that have them
SLOW_SECONDS = 1.0  # while training these redraw at most once a second: Streamlit redraws a changed chart
#                     from scratch, and the browser's drawing was the bottleneck (benchmarks/bench_app.py)
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
TRAINING_CONFIG = {"staticPlot": True}  # a chart redrawn 2.5 times a second cannot be zoomed or hovered anyway;
#                                         static ones draw ~30% faster. Paused or finished: interactive again.
KINDS = {"pre": "input to the activation", "post": "output of the activation"}
SERVER_LINE_SECONDS = 15.0  # the sidebar's line on the server's slots: current enough, and thirty pages polling it
#                             every 5 s took a third of the server's polls (ui/pacing.py counts what is left)


def show(choice: Choice) -> None:
    """Draw the buttons and the live view, polling at the rate the runs' state calls for, and the sidebar's
    line on the server's slots every ``SERVER_LINE_SECONDS``. Each fragment draws in its own body only, none
    into a container made outside it, which Streamlit redirects through wrapper blocks of its own. (The page
    that went white now and then in CI had another cause: ``ui/upstream.py``.)"""
    entry = session.pool().get(session.owner())
    current = actions.mode(entry)
    with st.sidebar:
        st.fragment(_server_line, run_every=SERVER_LINE_SECONDS)()
    st.session_state[keys.PACE] = interval = _pace(current, entry)
    st.fragment(_live, run_every=interval)(choice)


def _training(current: str, entry) -> bool:
    """The tab's runs train and each has shown a step."""
    return current == "running" and all(actions.ready(run.snapshot()) for run in entry.runs)


def _pace(current: str, entry) -> float | None:
    """Seconds between polls: by the runs' state, and while they train the server's pace (``ui.pacing``);
    a run that has not shown its first step yet is polled at the fastest rate, so it shows as soon as it trains."""
    return pacing.pacer().interval() if _training(current, entry) else REFRESH_SECONDS.get(current)


@turns.in_turn()
def _server_line() -> None:
    pool = session.pool()
    counts = pool.counts()
    taking_turns = (f"; while runs wait, a run watched by one tab trains {pool.turn_seconds / 60:g} minutes at a "
                    "time" if pool.turn_seconds > 0 else "")
    pacer = pacing.pacer()
    interval, pages = pacer.interval(), pacer.pages()
    pace = (f" {pages} pages are training here, so each refreshes every {interval:g} s (faster would slow "
            "every page)." if interval > pacing.FASTEST else "")
    st.caption(f"This server: {counts['alive_trainers']} of {pool.max_running} trainer slots busy, "
               f"{counts['queued_runs']} runs waiting. Everyone who starts the same settings watches one "
               f"run{taking_turns}.{pace}")


@turns.in_turn(ahead=lambda: keys.CLICKED in st.session_state)  # a click goes before the polls
def _live(choice: Choice) -> None:
    """One poll or one click: the buttons (a click is done first, ``ui.actions``), then the view.

    The buttons live in this fragment so that a click reruns it alone, not the whole page (the sidebar's
    widgets were most of a Start's cost on the server, and a class presses Start together). When the runs'
    state calls for another polling rate (started, queued, paused, or the server's pace moved out of the band
    around this page's, ``ui.pacing``; or none: done, reset), the page takes it from this run on, without a
    full rerun."""
    owner, state = session.owner(), st.session_state
    entry, clicked = actions.toolbar(choice)  # the heartbeat too
    current = actions.mode(entry)
    if clicked:
        controls.keep_url(choice, session.url_marker())
    lost = session.lost_run_notice(st.query_params.get(session.SERVER_PARAM))
    if lost:
        st.warning(lost)
    if _training(current, entry):
        pacing.pacer().training(owner)
    wanted = _pace(current, entry)
    if not pacing.close_enough(state.get(keys.PACE), wanted):
        upstream.set_run_every(wanted)  # None: the polls stop
        state[keys.PACE] = wanted
    _view(current, state[keys.PACE], entry, choice)
    if current == "running":
        pacing.pacer().polled(owner)


def _view(current: str, interval: float | None, entry, choice: Choice) -> None:
    """The live view of this tab's runs in state ``current``: status, progress, reproduce view, charts."""
    pool, owner, state = session.pool(), session.owner(), st.session_state
    if entry is not None:  # while training, the class's sample of these runs (a few builds of their figures)
        taken = shared_figures.samples().sample(entry.runs, hold=interval / 4, shown=state.get(keys.LAST, ())) \
            if current == "running" else tuple(run.snapshot() for run in entry.runs)
        state[keys.LAST] = state.get(keys.FROZEN) or taken
    snapshots: tuple[Snapshot, ...] = state.get(keys.LAST, ())
    explain.published(choice.preset, choice.config,
                      {s.config.norm: float(s.accuracy[-1]) for s in snapshots if len(s.accuracy)})
    if current == "queued":
        ahead = pool.position(owner)
        status.show(current, entry.runs, pool, ahead)
        st.info(f"{ahead} {'run' if ahead == 1 else 'runs'} ahead of yours — starts automatically when a slot "
                "frees." if ahead else "All trainer slots are busy; your run is next — starts automatically "
                "when a slot frees.")
        _progress(tuple(run.snapshot() for run in entry.runs), entry.runs, pool)
        return
    reaped = entry is None and snapshots and not all(s.done for s in snapshots)
    status.show("reaped" if reaped else current, entry.runs if entry is not None else (), pool,
                snapshots=snapshots)
    if not snapshots:
        st.info("Press **Start** to train. " + explain.INTRO)
        return
    _progress(snapshots, entry.runs if entry is not None else (), pool)
    _reproduction(snapshots, choice)
    if reaped:
        st.warning("This run was stopped because the page stopped checking on it for a while (a tab in the "
                   "background?). Its pictures are kept; press Start to train again.")
    starting = [s for s in snapshots if not actions.ready(s) and not s.done]
    for snapshot in starting if len(snapshots) > 1 else ():
        st.info(f"{NORM_LABELS[snapshot.config.norm]}: starting (loading the data and building the network)…")
    snapshots = tuple(s for s in snapshots if actions.ready(s))  # a comparison draws the runs that are ready
    if not snapshots:
        st.info("Loading the data and building the network…")
        return
    upto = _scrub(snapshots) if current in ("paused", "done", "idle") else None
    kind = st.segmented_control("Heatmaps show", tuple(KINDS), key=keys.HEATMAP_KIND, default="pre",
                                format_func=KINDS.get) or "pre"
    training = current == "running"
    drawn = _figures(snapshots, upto, kind, choice, training)
    activation = snapshots[0].config.activation
    config = TRAINING_CONFIG if training else PLOTLY_CONFIG
    charts.chart("heatmaps", drawn["heatmaps"], config, live=training)
    st.caption(explain.heatmap(activation, kind))
    pairs = ((("saturation", explain.saturation(activation)), ("loss_accuracy", explain.LOSS)),
             (("unit_percentiles", explain.PERCENTILES), ("grad_norms", explain.GRADIENTS)))
    for pair in pairs:
        places = st.columns(2) if len(snapshots) == 1 else (st.container(), st.container())
        for place, (name, caption) in zip(places, pair):
            with place:
                charts.chart(name.replace("_", "-"), drawn[name], config, live=training)
                st.caption(caption)
    if "landscape" in drawn:
        charts.chart("landscape", drawn["landscape"], config, live=training)
        st.caption(explain.LANDSCAPE)
    if "train_eval" in drawn:
        _train_eval(drawn["train_eval"], config, training, entry, current)
    if current in ("paused", "done", "idle"):
        _downloads(snapshots, drawn)


def _train_eval(figure, config, training: bool, entry, current: str) -> None:
    """BN's train/eval gap, and the remedy as a button whose effect the figure then shows."""
    charts.chart("train-eval", figure, config, live=training)
    st.caption(explain.TRAIN_EVAL)
    if entry is not None and current in ("running", "paused"):
        if st.button("Re-estimate BN's running statistics on training data", key=keys.REESTIMATE,
                     help="Replaces every BatchNorm's running mean and variance by those of 2,000 training images; "
                          "held-out accuracy in evaluation mode is measured just before and after."):
            entry = actions.make_private(entry)  # changing is private: on a shared run, a fork of it
            for trainer in entry.trainers:
                trainer.reestimate()
            if entry.running:
                st.toast("Re-estimating: the diamond on the left chart shows the accuracy before → after.")
            else:
                st.toast("Your private copy waits for a free slot: press Re-estimate again once it trains.")


def _progress(snapshots, runs, pool) -> None:
    """One line per run: 'step N of M · X steps/s · state · 12 watching', what makes it private,
    when its turn ends, and the run's own words if it failed."""
    frozen = bool(st.session_state.get(keys.FROZEN))
    for i, snapshot in enumerate(snapshots):
        run = runs[i] if i < len(runs) else None
        title = run_label(snapshot.config.norm, snapshot.config.dropout) if len(snapshots) > 1 else ""
        rate = f"{snapshot.steps_per_second:.0f} steps/s · " if snapshot.status == "running" else ""
        shown = "queued" if run is not None and run.queued else snapshot.status
        line = f"step {snapshot.step} of {snapshot.config.steps} · {rate}{shown}"
        watching = pool.watching(run) if run is not None else 0
        if watching > 1:
            line += f" · {watching} watching"
        st.markdown(f"**{title}** · {line}" if title else f"**{line}**")
        notes = []
        if frozen and not snapshot.done:
            notes.append("Paused for you: the run goes on for everyone watching it; Resume catches up.")
        if snapshot.forked_at is not None:
            notes.append(f"Your private copy, forked from the shared run at step {snapshot.forked_at:,} "
                         "(marked on the charts).")
        elif run is not None and not run.shared and run.reason:
            notes.append(f"Yours alone: {run.reason}.")
        left = pool.turn_left(run) if run is not None else None
        if left is not None:
            notes.append(f"Others are waiting: one tab's run trains {pool.turn_seconds / 60:g} minutes at a time "
                         f"while runs wait, so this one gives up its slot in {_clock(left)} and continues from "
                         "there when its turn comes again.")
        for note in notes:
            st.caption(note)
        if snapshot.status in ("diverged", "error"):
            st.error(f"{title + ': ' if title else ''}{snapshot.message}. The pictures show everything up to then.")


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _reproduction(snapshots, choice: Choice) -> None:
    """A paper preset's reproduce view: the published result, and each of its claims checked
    on these runs' recorded data (bnviz.reproduce.registry, the same code as the CLI's report)."""
    preset = choice.preset
    if preset.name not in registry.REPRODUCTIONS or len(snapshots) < 2:
        return
    note = ""
    if snapshots[0].config.steps != preset.config.steps:
        note = (f" These runs are {snapshots[0].config.steps:,} steps long; the preset's are "
                f"{preset.config.steps:,}, so a claim may not show yet.")
    st.caption(f"**Reproduce view.** {preset.source}: {preset.published}{note}")
    settled = all(s.done or s.status == "paused" for s in snapshots)
    results = _claims(preset.name, snapshots) if settled else None
    if not settled:
        st.caption("Each published claim is checked on these runs' data once every run has finished or is paused.")
    elif results is None:
        norms = ", ".join(NORM_LABELS[norm] for norm in registry.get_reproduction(preset.name).norms)
        st.caption(f"The published claims compare {norms}; these runs do not hold one of each that trained "
                   "(one ended in an error, or the server ran fewer runs), so they are not checked.")
    for claim in results or ():
        (st.success if claim.holds else st.warning)(claim.line)


def _claims(name: str, snapshots) -> list | None:
    """check_snapshots, computed once per set of snapshot versions (it converts whole histories)."""
    state = st.session_state
    key = (state.get(keys.RUN_ID, 0), name, tuple((s.config, s.version) for s in snapshots))
    cached = state.get(keys.CLAIMS)
    if cached is None or cached[0] != key:
        cached = state[keys.CLAIMS] = (key, registry.check_snapshots(name, snapshots))
    return cached[1]


def _scrub(snapshots) -> int | None:
    """A slider over the recorded steps; None means 'the latest'. It follows the newest step
    until someone moves it, and again once it is moved back to the end."""
    state, top = st.session_state, max(s.step for s in snapshots)
    if top < 2:
        return None
    if state.get(keys.SCRUB_FOLLOW, True) or state.get(keys.SCRUB_TOP) != top or keys.SCRUB not in state:
        state[keys.SCRUB] = top
    state[keys.SCRUB_TOP] = top
    upto = st.slider("Scrub through the run (step)", 1, top, key=keys.SCRUB, on_change=_scrubbed)
    return None if upto >= top else upto


def _scrubbed() -> None:
    state = st.session_state
    if keys.SCRUB in state:  # (not a value the browser still sends for a slider a restart took away)
        state[keys.SCRUB_FOLLOW] = state[keys.SCRUB] >= state.get(keys.SCRUB_TOP, 0)


def _figures(snapshots, upto, kind, choice: Choice, training: bool) -> dict[str, go.Figure]:
    """The five figures (six with a landscape probe), rebuilt only when what they show changed (the slow ones
    at most once a second), and built once for every page showing the same snapshots (``ui.shared_figures``)."""
    state, now = st.session_state, time.monotonic()
    scene, versions = (state.get(keys.RUN_ID, 0), upto, kind), tuple(s.version for s in snapshots)
    cached = state.get(keys.DRAWN)  # (scene, versions, figures, when the slow ones were built)
    if cached is not None and cached[:2] == (scene, versions):
        return cached[2]
    published = _published(snapshots, choice)
    recent = training and cached is not None and cached[0] == scene and now - cached[3] < SLOW_SECONDS
    slow = {name: cached[2][name] for name in SLOW_FIGURES if name in cached[2]} if recent else None
    depends = (upto, kind, tuple(sorted(published.items())), training)
    drawn = shared_figures.shared().build_once(snapshots, lambda: _build(snapshots, upto, kind, published, slow),
                                               *depends)  # or another page's: its slow ones at most a second old
    kept = slow is not None and drawn.get("saturation") is slow.get("saturation")
    state[keys.DRAWN] = (scene, versions, drawn, cached[3] if kept else now)
    return drawn


def _build(snapshots, upto, kind, published, slow: dict | None) -> dict[str, go.Figure]:
    """The figures; the slow ones taken from ``slow`` if given (same spec: no redraw, no bytes)."""
    layers = max(len(s.layer_names) for s in snapshots)
    views = [run_view(s, upto, column_budget(layers, len(snapshots)), kinds=(kind,)) for s in snapshots]
    revision = "-".join(s.config.key()[:8] for s in snapshots)  # the same on every page: zoom kept per run
    drawn = {
        "heatmaps": figures.heatmaps(views, kind, uirevision=f"{revision}-heat-{kind}"),
        "loss_accuracy": figures.loss_accuracy(views, published, uirevision=revision),
    }
    extra = {"landscape": figures_landscape.has_landscape(views), "train_eval": figures_gap.has_gap(views)}
    if slow is not None and all((name in slow) == shown for name, shown in extra.items()):
        return {**drawn, **slow}  # (a run that has just recorded its first landscape or gap draws it at once)
    drawn.update(saturation=figures.saturation(views, uirevision=revision),
                 unit_percentiles=figures.unit_percentiles(views, uirevision=revision),
                 grad_norms=figures.grad_norms(views, uirevision=revision))
    if extra["landscape"]:
        drawn["landscape"] = figures_landscape.landscape(views, uirevision=revision)
    if extra["train_eval"]:
        drawn.update(train_eval=figures_gap.train_eval(views, uirevision=revision))
    return drawn


def _published(snapshots, choice: Choice) -> dict[str, float]:
    """The preset's published accuracies, when these runs are that preset's setup (up to norm)."""
    preset = choice.preset
    if any(s.config.replace(norm=preset.config.norm) != preset.config for s in snapshots):
        return {}
    norms = {s.config.norm for s in snapshots}
    return {NORM_LABELS[norm]: value for norm, value in preset.published_accuracy if norm in norms}


def _downloads(snapshots, drawn) -> None:
    """Run files (JSON, CSV) per run and all figures as one self-contained HTML page."""
    columns = st.columns(2 * len(snapshots) + 1)
    for i, snapshot in enumerate(snapshots):
        name = f"bnviz-{snapshot.config.norm}-seed{snapshot.config.seed}"
        columns[2 * i].download_button(
            f"Run JSON ({run_label(snapshot.config.norm, snapshot.config.dropout)})", lambda s=snapshot: _run_json(s),
            file_name=f"{name}.json", mime="application/json", on_click="ignore", key=f"{keys.JSON_DOWNLOAD}{i}")
        columns[2 * i + 1].download_button(
            f"CSV ({run_label(snapshot.config.norm, snapshot.config.dropout)})", lambda s=snapshot: runfile.to_csv(s),
            file_name=f"{name}.csv", mime="text/csv", on_click="ignore", key=f"{keys.CSV_DOWNLOAD}{i}")
    columns[-1].download_button("Figures (HTML)", lambda d=drawn: _html(d), file_name="bnviz-figures.html",
                                mime="text/html", on_click="ignore", key=keys.HTML_DOWNLOAD)


def _run_json(snapshot: Snapshot) -> str:
    return json.dumps(runfile.to_run_dict(snapshot), allow_nan=False, separators=(",", ":"))


def _html(drawn: dict[str, go.Figure]) -> str:
    """Every figure in one page that works offline (plotly.js inlined once, ~4 MB)."""
    parts = [figure.to_html(full_html=False, include_plotlyjs=i == 0) for i, figure in enumerate(drawn.values())]
    return "<!DOCTYPE html><html><head><meta charset='utf-8'><title>bnviz</title></head><body>" + \
        "".join(parts) + "</body></html>"
