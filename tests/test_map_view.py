"""The app's trainability map view through AppTest: a preset with a shipped map shows it (both
panels on one colour scale, every cell clickable, the claims checked on the shipped data), a
preset without one shows none, and opening a cell trains exactly that cell's config."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bnviz.reproduce.map_claims import check_map
from bnviz.reproduce.map_data import shipped_maps
from ui import session
from ui import state as keys

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SHIPPED = {data.spec.name: data for data in shipped_maps()[0]}


@pytest.fixture
def made():
    """AppTests a test made; every run they started is stopped afterwards."""
    tests: list[AppTest] = []
    yield tests
    pool = session.pool()
    trainers = [t for at in tests if (entry := pool.get(at.session_state[keys.OWNER])) is not None for t in entry.trainers]
    st.cache_resource.clear()
    for trainer in trainers:
        assert trainer.join(30), "a trainer did not stop"


def array(value) -> np.ndarray:
    """A Plotly figure's array as JSON carries it: a list, or a typed array (base64 with a dtype)."""
    if isinstance(value, list):
        return np.asarray(value)
    flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return flat.reshape([int(n) for n in value["shape"].split(",")]) if "shape" in value else flat


def map_charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart") if keys.MAP in chart.proto.id]


def test_the_maps_ship_and_are_small():
    assert set(SHIPPED) == {"ioffe-fig1", "deep-sigmoid", "deep-relu", "wu-he-batch", "bn-regularizer"}
    assert not shipped_maps()[1]
    for path in (Path(APP).parent / "assets" / "maps").glob("*.json"):
        assert path.stat().st_size < 100_000, f"{path.name}: shipped maps are small per-cell summaries"


def test_a_preset_with_a_map_shows_it_side_by_side_on_one_scale(made):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["preset"] = "ioffe-fig1"
    made.append(at.run())
    assert not at.exception and not at.warning
    (figure,) = map_charts(at)
    heatmaps = [trace for trace in figure["data"] if trace["type"] == "heatmap"]
    assert len(heatmaps) == 2 and {h["coloraxis"] for h in heatmaps} == {"coloraxis"}
    assert (figure["layout"]["coloraxis"]["cmin"], figure["layout"]["coloraxis"]["cmax"]) == (0, 1)
    assert [a["text"] for a in figure["layout"]["annotations"]][:2] == ["no BN", "BatchNorm"]
    data = SHIPPED["ioffe-fig1"]
    clickable = np.concatenate([array(trace["customdata"]) for trace in figure["data"] if trace.get("name") == "cells"])
    assert sorted(map(tuple, clickable.tolist())) == sorted(np.ndindex(*data.spec.shape))  # every cell, once
    lines = " ".join(e.value for e in at.markdown)
    for claim in check_map(data):
        assert claim.line in lines


def test_a_preset_without_a_map_shows_none(made):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["preset"] = "fastai-collapse"
    made.append(at.run())
    assert not at.exception and not map_charts(at)
    assert not any("Trainability map" in e.label for e in at.expander)


def test_opening_a_cell_trains_that_cells_config(made):
    at = AppTest.from_file(str(Path(__file__).with_name("map_cell_app.py")), default_timeout=60)
    at.query_params["preset"] = "ioffe-fig1"
    made.append(at.run())
    data = SHIPPED["ioffe-fig1"]
    v, row, column = 1, data.spec.shape[1] - 1, data.spec.shape[2] - 1
    at.session_state["test_open_cell"] = ("ioffe-fig1", v, row, column)
    at.run()
    assert not at.exception
    expected = data.spec.config(data.spec.vary.values[v], data.spec.x.values[column], data.spec.rows[row])
    entry = session.pool().get(at.session_state[keys.OWNER])
    assert entry is not None and list(entry.configs) == [expected]
    assert at.session_state[keys.CHOICE].config == expected and not at.session_state[keys.CHOICE].compare
    assert at.select_slider(key="lr").value == expected.lr and at.radio(key="norm").value == "batchnorm"
    assert at.query_params["lr"] == repr(expected.lr) and at.query_params["steps"] == str(expected.steps)
    assert any("Opened the map's cell" in info.value for info in at.info)
