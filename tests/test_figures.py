"""bnviz.figures: decimation against direct sums, the uint8 encoding, shared scales, thresholds.

Snapshots are built by hand (Snapshot is a plain dataclass), so every number is known;
one test draws a real trainer's run. Figures are built without Plotly's validation for
speed, so each test validates what it drew.
"""

from __future__ import annotations

import json
import math
from types import MappingProxyType

import numpy as np
import plotly.graph_objects as go
import pytest

from bnviz import figures
from bnviz.config import RunConfig
from bnviz.snapshot import Snapshot
from bnviz.stats import post_edges, pre_edges
from bnviz.views import CELL_BUDGET, MAX_COLUMNS, MIN_COLUMNS, column_budget, decimate, run_view


def fake_snapshot(columns: int = 500, layers: int = 3, activation: str = "sigmoid", norm: str = "none",
                  scale: float = 1.0, stride: int = 1, lr_events=(), seed: int = 0) -> Snapshot:
    """A snapshot whose histograms are random counts (times ``scale``) over the real bin edges."""
    rng = np.random.default_rng(seed)
    pre, post = pre_edges(activation), post_edges(activation)
    steps = np.arange(1, columns + 1, dtype=np.int64) * stride
    arrays = {
        "steps": steps,
        "count": np.full(columns, stride, dtype=np.int64),
        "loss": np.linspace(2.3, 0.2, columns),
        "hist_pre": (rng.integers(0, 200, (columns, layers, len(pre) - 1)) * scale).astype(np.int64),
        "hist_post": rng.random((columns, layers, len(post) - 1)) * 100 * scale,
        "mean": rng.normal(size=(columns, layers)),
        "std": rng.random((columns, layers)) + 0.5,
        "percentiles": np.sort(rng.normal(size=(columns, layers, 3)), axis=2),
        "unit_percentiles": np.sort(rng.normal(size=(columns, layers, 3)), axis=2),
        "saturation": rng.random((columns, layers)),
        "nonfinite": np.zeros((columns, layers), dtype=np.int64),
        "grad_norm": rng.random((columns, layers)) + 0.01,
    }
    return Snapshot(config=RunConfig(activation=activation, norm=norm, steps=columns * stride), status="running",
                    step=int(steps[-1]) if columns else 0, version=1,
                    layer_names=tuple(f"linear{i + 1}" for i in range(layers)), pre_edges=pre, post_edges=post,
                    stride=stride, lr=0.5, columns=MappingProxyType(arrays),
                    accuracy_steps=np.array([250, 500]), accuracy=np.array([0.8, 0.9]), lr_events=tuple(lr_events))


def spec(figure: go.Figure) -> dict:
    """What st.plotly_chart sends, parsed; and proof the figure is valid Plotly."""
    go.Figure(figure.to_dict())  # raises on any invalid property
    return json.loads(figure.to_json())


def decode(typed: dict) -> np.ndarray:
    import base64
    dtypes = {"u1": np.uint8, "i4": np.int32, "f4": np.float32, "f8": np.float64}
    values = np.frombuffer(base64.b64decode(typed["bdata"]), dtype=dtypes[typed["dtype"]])
    return values.reshape([int(n) for n in typed["shape"].split(",")]) if "shape" in typed else values


def test_decimate_keeps_total_mass_and_the_last_step():
    columns = dict(fake_snapshot(columns=1000).columns)
    merged = decimate(columns, 240)
    assert len(merged["steps"]) <= 240
    assert merged["hist_pre"].sum() == columns["hist_pre"].sum()
    np.testing.assert_allclose(merged["hist_post"].sum(), columns["hist_post"].sum())
    assert merged["count"].sum() == columns["count"].sum()
    assert merged["steps"][-1] == columns["steps"][-1]
    np.testing.assert_array_equal(merged["hist_pre"][0], columns["hist_pre"][:5].sum(0))  # ceil(1000/240) = 5


def test_decimate_leaves_few_columns_alone():
    columns = dict(fake_snapshot(columns=100).columns)
    assert decimate(columns, 240)["steps"] is columns["steps"]


def test_run_view_cuts_at_the_scrub_step():
    snapshot = fake_snapshot(columns=500, lr_events=((100, 0.1), (400, 0.2)))
    view = run_view(snapshot, upto=300)
    assert view.columns["steps"][-1] == 300
    assert view.columns["hist_pre"].sum() == snapshot.column("hist_pre")[:300].sum()
    assert view.lr_events == ((100, 0.1),)
    assert list(view.accuracy_steps) == [250]
    assert view.last_step == 500  # the axis still spans the whole run


def test_heatmap_z_is_uint8_bins_by_columns_one_panel_per_layer():
    snapshot = fake_snapshot(columns=1000, layers=4)
    drawn = spec(figures.heatmaps([run_view(snapshot, max_columns=200)]))
    heatmaps = [trace for trace in drawn["data"] if trace["type"] == "heatmap"]
    assert len(heatmaps) == 4
    for trace in heatmaps:
        assert trace["z"]["dtype"] == "u1"  # the compact base64 typed array, not a nested list
        z = decode(trace["z"])
        assert z.shape == (len(snapshot.pre_edges) - 1, 200)
        assert trace["x0"] + (z.shape[1] - 0.5) * trace["dx"] == snapshot.step  # the last column ends at the last step
        assert trace["y0"] == pytest.approx((snapshot.pre_edges[0] + snapshot.pre_edges[1]) / 2)
    assert drawn["layout"]["uirevision"] == "heatmaps"


def test_heat_levels_are_log_counts_per_step():
    hist = np.array([[0, 9, 99]])  # one column, three bins
    levels = figures.heat_levels(hist, np.array([1]), top=99)
    assert levels.shape == (3, 1) and levels.dtype == np.uint8
    assert levels[0, 0] == 0 and levels[2, 0] == figures.LEVELS
    assert levels[1, 0] == round(figures.LEVELS * math.log(10) / math.log(100))
    # a column merged from 4 steps holding 4x the counts has the same colour
    np.testing.assert_array_equal(figures.heat_levels(hist * 4, np.array([4]), top=99), levels)


def test_colour_bar_ticks_are_real_counts():
    values, labels = figures.count_ticks(5000)
    assert labels == ["0", "1", "10", "100", "1,000"]
    assert values[0] == 0 and values[-1] == pytest.approx(figures.LEVELS * math.log1p(1000) / math.log1p(5000))


def test_comparison_shares_one_colour_scale_and_the_bin_edges():
    quiet = fake_snapshot(columns=200, norm="none", scale=1.0)  # 200 columns: no decimation, counts as drawn
    loud = fake_snapshot(columns=200, norm="batchnorm", scale=10.0)
    views = [run_view(quiet), run_view(loud)]
    drawn = spec(figures.heatmaps(views))
    heatmaps = [trace for trace in drawn["data"] if trace["type"] == "heatmap"]
    assert len(heatmaps) == 2 * 3
    assert {trace["coloraxis"] for trace in heatmaps} == {"coloraxis"}  # one colour bar for all panels
    assert drawn["layout"]["coloraxis"]["cmax"] == figures.LEVELS
    top = figures.shared_top(views)
    assert top == pytest.approx(loud.column("hist_pre").max())
    quiet_levels = decode(heatmaps[0]["z"])
    assert quiet_levels.max() < figures.LEVELS  # scaled against the louder run, not its own maximum
    np.testing.assert_array_equal(quiet_levels, figures.heat_levels(quiet.column("hist_pre")[:, 0], quiet.column("count"), top))
    assert len({(trace["y0"], trace["dy"]) for trace in heatmaps}) == 1  # same bins everywhere


def test_comparison_refuses_different_bin_edges():
    views = [run_view(fake_snapshot(activation="sigmoid")), run_view(fake_snapshot(activation="tanh"))]
    with pytest.raises(ValueError, match="share bin edges"):
        figures.heatmaps(views)


def test_a_run_read_from_its_file_compares_with_one_that_trains():
    """A finished run from the run cache's file has its bin edges rounded (runfile.SIGNIFICANT_DIGITS); the other
    run of its pair, training again, has them exact: the same bins."""
    from bnviz import runfile

    live = fake_snapshot()
    rounded = np.array(runfile._floats(live.pre_edges), dtype=np.float64)
    assert not np.array_equal(rounded, live.pre_edges)  # the file's rounding shows
    read = fake_snapshot(norm="batchnorm")
    object.__setattr__(read, "pre_edges", rounded)
    figure = figures.heatmaps([run_view(live), run_view(read)])
    assert len(figure.data) == 2 * len(live.layer_names)


@pytest.mark.parametrize("activation, kind, expected", [
    ("sigmoid", "pre", (-math.log(19), math.log(19))),
    ("sigmoid", "post", (0.05, 0.95)),
    ("tanh", "pre", (-math.log(19) / 2, math.log(19) / 2)),
    ("relu", "pre", (0.0,)),
    ("relu", "post", ()),
])
def test_saturation_thresholds_are_drawn_on_every_panel(activation, kind, expected):
    drawn = spec(figures.heatmaps([run_view(fake_snapshot(activation=activation, layers=2))], kind))
    lines = [s for s in drawn["layout"].get("shapes", []) if s["y0"] == s["y1"]]
    assert sorted(s["y0"] for s in lines) == pytest.approx(sorted(expected * 2))
    assert {s["yref"] for s in lines} == ({"y", "y2"} if expected else set())


def test_learning_rate_changes_are_vertical_lines_on_every_timeline():
    views = [run_view(fake_snapshot(lr_events=((120, 2.0),)))]
    for figure in (figures.heatmaps(views), figures.saturation(views), figures.grad_norms(views),
                   figures.loss_accuracy(views), figures.unit_percentiles(views)):
        shapes = spec(figure)["layout"]["shapes"]
        assert any(s["x0"] == s["x1"] == 120 for s in shapes)


def test_line_figures_draw_every_layer_and_run():
    views = [run_view(fake_snapshot(norm=n, layers=3)) for n in ("none", "batchnorm")]
    assert len(spec(figures.saturation(views))["data"]) == 6
    assert len(spec(figures.grad_norms(views))["data"]) == 6
    assert len(spec(figures.unit_percentiles(views))["data"]) == 2 * 3 * 2  # band, median
    drawn = spec(figures.loss_accuracy(views, published={"BatchNorm": 0.9864}))
    assert [t["name"] for t in drawn["data"]] == ["no BN", "no BN", "BatchNorm", "BatchNorm"]
    assert any(s.get("label", {}).get("text", "").startswith("published BatchNorm") for s in drawn["layout"]["shapes"])


def test_side_by_side_panels_autorange_each_row():
    views = [run_view(fake_snapshot(norm=n)) for n in ("none", "batchnorm")]
    layout = spec(figures.unit_percentiles(views))["layout"]
    assert layout["yaxis2"]["matches"] == "y" and layout["yaxis4"]["matches"] == "y3"  # one row, one y axis
    assert all(layout[f"yaxis{n}"]["autorange"] is True for n in ("", 2, 3, 4))


def test_layers_are_named_by_their_number():
    assert figures._layer_label("conv2d3") == "layer 3" and figures._layer_label("linear12") == "layer 12"


def test_column_budget_bounds_a_figures_cells():
    assert column_budget(3) == MAX_COLUMNS
    assert column_budget(8, 2) * 16 <= CELL_BUDGET
    assert column_budget(20, 4) == MIN_COLUMNS


def test_an_empty_run_draws_empty_panels():
    empty = Snapshot(config=RunConfig(), layer_names=("linear1",), pre_edges=pre_edges("sigmoid"),
                     post_edges=post_edges("sigmoid"))
    views = [run_view(empty)]
    for figure in (figures.heatmaps(views), figures.saturation(views), figures.unit_percentiles(views),
                   figures.loss_accuracy(views), figures.grad_norms(views)):
        spec(figure)


def test_a_real_run_draws():
    from bnviz.trainer import Trainer

    trainer = Trainer(RunConfig(depth=2, width=16, steps=60, eval_every=30)).start()
    assert trainer.join(60)
    snapshot = trainer.snapshot()
    assert snapshot.status == "finished"
    views = [run_view(snapshot)]
    drawn = spec(figures.heatmaps(views, "post"))
    assert sum(decode(t["z"]).shape[1] for t in drawn["data"]) == 2 * len(snapshot.column("steps"))
    assert drawn["data"][0]["x0"] + drawn["data"][0]["dx"] / 2 == snapshot.column("steps")[0]
    spec(figures.loss_accuracy(views))
