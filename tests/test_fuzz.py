"""Bad input: every URL parameter and config field fuzzed, in the engine and through the page.

The promise under test: whatever a link holds, the page renders without a traceback, every
parameter it cannot use becomes a readable warning, the setting falls back to the preset's
value, the config that results is valid, and nothing taken from the URL is ever rendered
as markup. ``RunConfig.from_query`` is the oracle for what is valid: a value it accepts must
reach the config and the widget exactly; one it rejects must be a warning and the preset's
value. Property-based with hypothesis (examples kept few for the AppTest ones: each is a
full rerun of the page, ~0.3 s), plus hand-picked nasty values.

The app reads no file from a user (no ``st.file_uploader``; the data sets are bundled and
loaded with ``allow_pickle=False``); run files are read only by the command line, through
``bnviz.runfile.loads_run``, which is fuzzed here as the one user-file parser.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as hs
from streamlit.testing.v1 import AppTest
from test_config import CHOICES, field_strategy  # a valid value of each field (tests/ is on sys.path)

from bnviz import data, runfile
from bnviz.config import LIMITS, RUNNING_STATS_NORMS, RunConfig, field_names
from bnviz.presets import DEFAULT_PRESET, PRESETS
from ui import controls, explain, session, status

APP = str(Path(__file__).resolve().parent.parent / "app.py")
RUN_TIMEOUT_S = 60  # the first rerun of a fresh interpreter imports torch and loads MNIST
WIDGET_KINDS = ("radio", "selectbox", "select_slider", "slider", "number_input", "toggle")
TEXT_KINDS = ("title", "header", "markdown", "caption", "info", "warning", "error", "success", "toast")
MARKUP = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))",
          "![x](http://127.0.0.1/x.png)", "`code`", "**bold**", ":red[red]", "$x^2$", "&lt;b&gt;", "<b>b</b>",
          "<a href=//127.0.0.1>a</a>", "javascript:alert(1)", "www.example.com")
NASTY = ("nan", "NaN", "inf", "-inf", "-1", "1e308", "-1e308", str(10**30), "1e-400", "", " ", "a" * 10_000, "0x10",
         "3.5", "None", "true", "💥", "ｎｏｎｅ", "\x00", "\u202e1", "%00", *MARKUP)
# Characters that make markdown render a tag, a link, an image, code, an entity or math. The
# page's own sentences around a URL value never use them unescaped, so any found came from the URL.
ACTIVE = set("<>[]`!&$|~*")
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
URL_TEXT = hs.text(hs.characters(codec="utf-8"), max_size=60)  # what a browser can put in a query string
URL_NUMBERS = hs.floats().map(repr) | hs.integers().map(str) | hs.integers(-10**40, 10**40).map(str)


@pytest.fixture(scope="module", autouse=True)
def release_the_pool():
    """The page's shared pool (and its reaper thread) outlives each AppTest: stop it at the end."""
    yield
    pool = session.pool()
    trainers = [run.trainer for run in pool.runs() if run.trainer is not None]
    st.cache_resource.clear()  # fires on_release: every trainer is told to stop, the reaper ends
    for trainer in trainers:
        assert trainer.join(30), "a trainer thread did not stop"


def render(query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT_S)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def texts(at: AppTest) -> list[str]:
    return [str(element.value) for kind in TEXT_KINDS for element in at.get(kind)]


def shown(markdown: str) -> str:
    """What markdown displays: a backslash before ASCII punctuation leaves the punctuation alone."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def unescaped(markdown: str) -> str:
    """The markdown with every escaped character removed: what is left is what markdown interprets."""
    return re.sub(r"\\[!-/:-@\[-`{-~]", "", markdown)


def widget(at: AppTest, key: str):
    for kind in WIDGET_KINDS:
        for element in at.get(kind):
            if getattr(element, "key", None) == key:
                return element
    raise AssertionError(f"no widget with key {key!r}")


def with_value(config: RunConfig, name: str, value) -> RunConfig | None:
    """The config with this value, or None if there is no value or the config refuses it
    (a valid norm that does not fit the preset's architecture)."""
    if value is None:
        return None
    try:
        return config.replace(**{name: value})
    except ValueError:
        return None


def applies(name: str, config: RunConfig, compare: bool) -> bool:
    """Whether the page draws this setting's widget: the GroupNorm and BN-momentum controls only where
    that norm is chosen or compared (``ui.controls._widgets``)."""
    if name == "groups":
        return compare or config.norm == "groupnorm"
    if name == "bn_momentum":
        return compare or config.norm in RUNNING_STATS_NORMS
    return True


def parsed(name: str, text: str):
    """The value ``text`` gives field ``name``, or None if the engine rejects it (the oracle)."""
    try:
        return getattr(RunConfig.from_query({name: text}), name)
    except ValueError:
        return None


@functools.cache
def own_texts(preset: str) -> frozenset[str]:
    """What the page says for a preset and no other parameter: the app's own words, markdown and all."""
    at = render({"preset": preset})
    assert not at.exception and not at.warning
    return frozenset(texts(at))


def assert_safe_page(at: AppTest) -> None:
    """No traceback; no HTML element but the dropped-link note and the run status; markdown never allowed raw HTML; no markup-active character unescaped
    in any text the URL caused (every text the page does not show for its preset alone)."""
    assert not at.exception, [e.value for e in at.exception]
    assert all(element.proto.body == controls.DROPPED_LINK_HTML or status.read(element.proto.body) is not None
               for element in at.get("html"))  # a constant, or the run status (states, numbers and hex keys): no URL text
    for element in at.get("markdown"):
        assert not element.proto.allow_html
    constants = set(explain.NORMS.values())  # the chosen norm's explanation: our own words, whatever the URL chose
    for text in set(texts(at)) - own_texts(at.session_state["choice"].preset.name) - constants:
        assert not ACTIVE & set(unescaped(text)), f"markup-active text reached the page: {text[:300]!r}"


def assert_valid(config: RunConfig) -> None:
    assert RunConfig(**config.to_dict()) == config  # validated again from scratch


@hs.composite
def valid_settings(draw) -> dict:
    names = draw(hs.lists(hs.sampled_from(field_names()), unique=True, max_size=8))
    return {name: draw(field_strategy(name)) for name in names}


def query_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# --- the engine: parsing never raises anything but ValueError -------------------------------------

JSON_VALUES = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.integers(min_value=10**300, max_value=10**310)
    | hs.floats() | hs.text(max_size=20),
    lambda children: hs.lists(children, max_size=4) | hs.dictionaries(hs.text(max_size=10), children, max_size=4),
    max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(hs.dictionaries(hs.sampled_from(field_names()) | URL_TEXT, URL_TEXT, max_size=6))
@example({"lr": "nan"})
@example({"depth": "1e308"})
@example({"seed": str(10**400)})
@example({"steps": "1" * 5000})
@example({"width": "-0"})
def test_from_query_raises_only_value_error(query):
    try:
        config = RunConfig.from_query(query)
    except ValueError as error:
        assert str(error)  # a message, never an empty one
        return
    assert_valid(config)
    assert RunConfig.from_query(config.to_query()) == config


@settings(max_examples=300, deadline=None)
@given(hs.dictionaries(hs.sampled_from(field_names()) | hs.text(max_size=10), JSON_VALUES, max_size=6) | JSON_VALUES)
def test_from_dict_raises_only_value_error(values):
    try:
        config = RunConfig.from_dict(values)
    except ValueError as error:
        assert str(error)
        return
    assert_valid(config)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"lr": ' * 50_000, "NaN", '{"lr": NaN}', '{"lr": Infinity}',
                                  "\ud800", "", "null", "[]", '{"lr": 1e999}'], ids=lambda t: repr(t[:20]))
def test_config_json_raises_only_value_error(text):
    """A config file is data: deep nesting, NaN, Infinity and garbage are ValueErrors with a message."""
    with pytest.raises(ValueError):
        RunConfig.from_json(text)


@settings(max_examples=200, deadline=None)
@given(hs.dictionaries(hs.sampled_from((*field_names(), "preset", "compare", "hide")) | URL_TEXT,
                       URL_TEXT | URL_NUMBERS | hs.sampled_from(NASTY), max_size=8))
def test_read_query_never_raises_and_escapes_what_it_quotes(params):
    choice = controls.read_query(params)
    assert_valid(choice.config)
    assert choice.preset.name == params.get("preset", DEFAULT_PRESET) or choice.warnings
    for name, text in params.items():
        if name in field_names() and parsed(name, text) is None:
            assert getattr(choice.config, name) == getattr(choice.preset.config, name)  # the fallback
            assert any(w.startswith(f"URL parameter {name}:") for w in choice.warnings)
    for warning in choice.warnings:
        assert not ACTIVE & set(unescaped(warning)), warning
        assert len(warning) < 2000, "a warning must stay readable, whatever the URL held"


# --- the run file: the one file bnviz reads from a user -----------------------------------------

@settings(max_examples=200, deadline=None)
@given(hs.binary(max_size=2000) | hs.text(max_size=2000) | JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)))
@example(b"[" * 100_000)
@example(b"\x80\x81")
@example(b'{"format": "bnviz-run/1", "config": {"lr": NaN}}')
@example(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }")  # a pickled .npy
@example(b"PK\x03\x04" + b"\x00" * 100)  # the start of a zip (.npz)
def test_run_file_parser_raises_only_value_error(data):
    try:
        run = runfile.loads_run(data)
    except ValueError as error:
        assert str(error)
        return
    assert isinstance(run, dict)


def test_an_oversize_run_file_is_refused_before_parsing():
    data = b" " * (runfile.MAX_BYTES + 1)
    with pytest.raises(ValueError, match="at most"):
        runfile.loads_run(data)


def test_the_data_loader_refuses_a_pickle_bearing_npz(tmp_path, monkeypatch):
    """The bundled data sets are read with allow_pickle=False: a replaced file cannot run code."""
    np.savez(tmp_path / "mnist.npz", train_x=np.array([object()], dtype=object))
    monkeypatch.setattr(data, "ASSETS_DIR", tmp_path)
    with pytest.raises(ValueError, match="allow_pickle"):
        data._load_cached.__wrapped__("mnist", None)  # past the cache: this file, not the bundled one


def test_the_page_reads_no_file_from_the_user():
    """If an upload is ever added, it must be fuzzed here (size cap, JSON/npz allow_pickle=False, validation)."""
    at = render({})
    assert not at.exception
    assert not at.get("file_uploader"), "the page now takes uploads: add their fuzz tests to this file"


# --- the page: URL parameters through AppTest -----------------------------------------------------

@SETTINGS
@given(hs.sampled_from(tuple(PRESETS)), valid_settings())
@example("ioffe-fig1", {"dataset": "mnist", "bn_momentum": 1.0})  # no norm with running averages: no widget
def test_valid_values_reach_the_widgets_and_the_url_exactly(preset, values):
    try:
        expected = PRESETS[preset].config.replace(**values)
    except ValueError:
        assume(False)  # valid alone, not together (instancenorm on an MLP): the next test's domain
    at = render({"preset": preset, **{name: query_text(value) for name, value in values.items()}})
    assert_safe_page(at)
    assert not at.main.warning, [w.value for w in at.main.warning]  # the sidebar's may say a run is beyond the budget
    choice = at.session_state["choice"]
    config = choice.config
    assert config == expected
    for name, value in values.items():
        if name in controls.SETTINGS and applies(name, config, choice.compare):
            assert widget(at, name).value == value, name
        differs = value != getattr(PRESETS[preset].config, name)
        assert (name in at.query_params) == differs, name  # the link keeps exactly what differs from the preset
        if differs:
            assert parsed(name, at.query_params[name]) == value


@SETTINGS
@given(hs.sampled_from(field_names()), URL_TEXT | URL_NUMBERS | hs.sampled_from(NASTY))
@example("lr", "nan")
@example("depth", "1e308")
@example("norm", "<script>alert(1)</script>")
@example("steps", str(10**30))
def test_any_text_is_used_exactly_or_warned_about_with_the_preset_value(name, text):
    at = render({name: text})
    assert_safe_page(at)
    preset = PRESETS[DEFAULT_PRESET].config
    config = at.session_state["choice"].config
    assert_valid(config)
    expected = with_value(preset, name, parsed(name, text))
    warnings = [w.value for w in at.warning]
    if expected is None:
        assert len(warnings) == 1 and warnings[0].startswith(f"URL parameter {name}:"), warnings
        assert config == preset
        assert name not in at.query_params  # the link now holds the fallback, which is the preset's
    else:
        assert not warnings
        assert config == expected


@pytest.mark.parametrize("text", NASTY, ids=lambda t: repr(t[:20]))
def test_a_nasty_value_in_every_parameter_at_once(text):
    query = {name: text for name in (*field_names(), "preset", "compare", "hide")}
    at = render(query)
    assert_safe_page(at)
    preset = PRESETS[text] if text in PRESETS else PRESETS[DEFAULT_PRESET]
    usable = {name: parsed(name, text) for name in field_names()}
    config = at.session_state["choice"].config
    assert config == preset.config.replace(**{n: v for n, v in usable.items() if v is not None})
    shown_warnings = [shown(w.value) for w in at.warning]
    for name, value in usable.items():
        if value is None:
            assert sum(w.startswith(f"URL parameter {name}:") for w in shown_warnings) == 1, name
    if text not in PRESETS:
        assert any(w.startswith("preset ") for w in shown_warnings)
    for warning in shown_warnings:
        assert len(warning) < 2000
    kept = {"preset", *(n for n, v in usable.items() if v is not None)} | ({"compare"} if text in controls.TRUE else set())
    assert set(at.query_params) <= kept  # nothing unusable stays in the link


@pytest.mark.parametrize("key", ["unknown", "<script>alert(1)</script>", "a" * 10_000, "Lr", " lr", "💥", "[x](y)"], ids=lambda t: repr(t[:20]))
def test_unknown_keys_are_named_escaped_and_ignored(key):
    at = render({key: "1"})
    assert_safe_page(at)
    assert at.session_state["choice"].config == PRESETS[DEFAULT_PRESET].config
    assert len(at.warning) == 1 and "is not a setting; ignored" in at.warning[0].value
    assert key not in at.query_params


@pytest.mark.parametrize("values, used", [(["0.1", "abc"], None), (["abc", "0.1"], 0.1), (["0.1", "0.2"], 0.2)])
def test_a_repeated_key_uses_its_last_value_and_says_so(values, used):
    at = render({"lr": values})
    assert_safe_page(at)
    lr = at.session_state["choice"].config.lr
    repeated = [w for w in at.warning if w.value.startswith("URL parameter lr appears 2 times")]
    assert len(repeated) == 1  # issue 17: a repeated key used to be taken without a word
    if used is None:
        assert lr == PRESETS[DEFAULT_PRESET].config.lr and len(at.warning) == 2
    else:
        assert lr == used and len(at.warning) == 1


@pytest.mark.parametrize("hide", ["<script>alert(1)</script>,lr", "lr,lr,,norm", ",,,", "start,reset", "a" * 10_000],
                         ids=lambda t: repr(t[:20]))
def test_hide_names_what_it_cannot_hide_and_hides_the_rest(hide):
    at = render({"hide": hide})
    assert_safe_page(at)
    asked = [key.strip() for key in hide.split(",") if key.strip()]
    unknown = [key for key in asked if key not in controls.HIDEABLE]
    assert len(at.warning) == len(unknown)
    drawn = {getattr(w, "key", None) for kind in WIDGET_KINDS for w in at.get(kind)}
    assert not drawn & set(asked)


def test_finite_limits_are_what_the_fuzzing_relies_on():
    """Every bounded field has finite limits and every choice field a non-empty list: the strategies above cover all."""
    for name in field_names():
        assert name in CHOICES or name in LIMITS, name
    for low, high in LIMITS.values():
        assert math.isfinite(low) and math.isfinite(high) and low <= high
