"""Tests for bnviz.runfile: the JSON run file and the CSV export.

Snapshots are built by hand from known arrays (NaN included), so every number written can
be checked against the array it came from; real training runs are in test_cli.py.
"""

import csv
import dataclasses
import io
import json
from types import MappingProxyType

import numpy as np
import pytest

from bnviz.config import RunConfig
from bnviz.runfile import FORMAT, MAX_BYTES, read_run, to_csv, to_run_dict, write_run
from bnviz.snapshot import Snapshot

COLUMNS, LAYERS, BINS, POST_BINS = 5, 2, 6, 4


def make_snapshot(columns: int = COLUMNS, layers: int = LAYERS) -> Snapshot:
    rng = np.random.default_rng(0)
    shape = (columns, layers)
    arrays = {
        "steps": np.arange(1, columns + 1) * 2,
        "count": np.full(columns, 2),
        "loss": rng.random(columns),
        "hist_pre": rng.integers(0, 1000, (*shape, BINS)),
        "hist_post": rng.random((*shape, POST_BINS)) * 100,
        "mean": rng.normal(size=shape),
        "std": rng.random(shape),
        "percentiles": np.sort(rng.normal(size=(*shape, 3)), axis=-1),
        "unit_percentiles": np.sort(rng.normal(size=(*shape, 3)), axis=-1),
        "saturation": rng.random(shape),
        "near_zero": rng.random(shape),
        "nonfinite": np.zeros(shape, dtype=np.int64),
        "grad_norm": rng.random(shape),
    }
    if columns:
        arrays["loss"][-1] = np.nan  # a diverged last column
        arrays["mean"][-1, 0] = np.inf
        arrays["nonfinite"][-1] = 7
    return Snapshot(
        config=RunConfig(steps=10, dataset="synthetic"), status="diverged", message="diverged at step 10",
        step=10, layer_names=tuple(f"linear{i + 1}" for i in range(layers)),
        pre_edges=np.linspace(-3, 3, BINS + 1), post_edges=np.linspace(0, 1, POST_BINS + 1), stride=2,
        columns=MappingProxyType(arrays), accuracy_steps=np.array([4, 10]), accuracy=np.array([0.5, 1 / 3]),
        lr_events=((6, 0.25),), landscape_steps=np.array([5]), landscape=np.array([[0.1, 0.2, np.nan]]),
    )


def test_round_trip_keeps_every_array_within_rounding(tmp_path):
    snapshot = make_snapshot()
    written = write_run(snapshot, tmp_path / "run.json")
    run = read_run(tmp_path / "run.json")
    assert_same_run(written, run)  # what write_run hands back is what the file reads back as
    columns = snapshot.columns
    assert run["format"] == FORMAT and run["status"] == "diverged" and run["message"] == "diverged at step 10"
    assert RunConfig.from_dict(run["config"]) == snapshot.config
    np.testing.assert_array_equal(run["steps"], columns["steps"])
    np.testing.assert_array_equal(run["count"], columns["count"])
    np.testing.assert_allclose(run["loss"], columns["loss"], rtol=1e-5)  # NaN matches NaN
    np.testing.assert_allclose(run["test_accuracy"]["values"], [0.5, 1 / 3], rtol=1e-5)
    np.testing.assert_array_equal(run["lr_events"]["steps"], [6])
    np.testing.assert_allclose(run["landscape"]["beta_smoothness"], [np.nan])
    for i, layer in enumerate(run["layers"]):
        assert layer["name"] == f"linear{i + 1}"
        assert layer["hist"].dtype == np.int64
        np.testing.assert_array_equal(layer["hist"], columns["hist_pre"][:, i])
        np.testing.assert_allclose(layer["bin_edges"], snapshot.pre_edges, rtol=1e-5)
        np.testing.assert_allclose(layer["post_hist"], columns["hist_post"][:, i], rtol=1e-5)
        for key in ("mean", "std", "saturation", "near_zero", "grad_norm"):
            expected = np.where(np.isfinite(columns[key][:, i]), columns[key][:, i], np.nan)  # Inf -> null -> NaN
            np.testing.assert_allclose(layer[key], expected, rtol=1e-5)
        np.testing.assert_array_equal(layer["nonfinite"], columns["nonfinite"][:, i])
        for j, key in enumerate(("p15", "p50", "p85")):
            np.testing.assert_allclose(layer["percentiles"][key], columns["percentiles"][:, i, j], rtol=1e-5)
            np.testing.assert_allclose(layer["unit_percentiles"][key], columns["unit_percentiles"][:, i, j], rtol=1e-5)


def test_non_finite_is_written_as_null_and_floats_are_rounded(tmp_path):
    write_run(make_snapshot(), tmp_path / "run.json")
    text = (tmp_path / "run.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    raw = json.loads(text)
    assert raw["loss"][-1] is None and raw["layers"][0]["mean"][-1] is None
    assert raw["test_accuracy"]["values"] == [0.5, 0.333333]  # 6 significant digits
    assert all(isinstance(count, int) for row in raw["layers"][0]["hist"] for count in row)


def test_to_run_dict_has_the_documented_shapes():
    run = to_run_dict(make_snapshot())
    assert run["stride"] == 2 and len(run["steps"]) == COLUMNS and len(run["layers"]) == LAYERS
    assert run["lr_events"] == {"steps": [6], "values": [0.25]}
    layer = run["layers"][0]
    assert np.shape(layer["hist"]) == (COLUMNS, BINS) and len(layer["bin_edges"]) == BINS + 1
    assert np.shape(layer["post_hist"]) == (COLUMNS, POST_BINS) and len(layer["post_bin_edges"]) == POST_BINS + 1
    assert set(layer["percentiles"]) == set(layer["unit_percentiles"]) == {"p15", "p50", "p85"}


def test_a_run_stopped_before_its_first_step_round_trips(tmp_path):
    empty = Snapshot(config=RunConfig(), status="stopped", message="stopped at step 0",
                     layer_names=("linear1",), pre_edges=np.linspace(-1, 1, BINS + 1),
                     post_edges=np.linspace(0, 1, POST_BINS + 1))
    write_run(empty, tmp_path / "run.json")
    run = read_run(tmp_path / "run.json")
    assert run["steps"].shape == (0,) and run["layers"][0]["hist"].shape == (0, BINS)
    assert run["layers"][0]["post_hist"].shape == (0, POST_BINS)
    write_run(Snapshot(config=RunConfig(), status="error", message="no data"), tmp_path / "bare.json")
    assert read_run(tmp_path / "bare.json")["layers"] == []


def valid_run() -> dict:
    return to_run_dict(make_snapshot())


def corrupt(change) -> dict:
    run = valid_run()
    change(run)
    return run


@pytest.mark.parametrize("run, message", [
    ([1, 2], "run file must be a JSON object (got list)"),
    (corrupt(lambda r: r.pop("loss")), "run file is missing 'loss'"),
    (corrupt(lambda r: r.update(format="bnviz-run/2")), "unsupported run format 'bnviz-run/2'"),
    (corrupt(lambda r: r["config"].update(depth=0)), "config: depth must be between 1 and 20 (got 0)"),
    (corrupt(lambda r: r["config"].update(colour="red")), "config: unknown setting 'colour'"),
    (corrupt(lambda r: r.update(status="done")), "status must be one of"),
    (corrupt(lambda r: r["loss"].pop()), "loss must have shape (5,) (got (4,))"),
    (corrupt(lambda r: r["layers"][1]["hist"].pop()), "layers[1].hist must have shape (5, 6) (got (4, 6))"),
    (corrupt(lambda r: r["layers"][0]["hist"][2].append(1)), "layers[0].hist must have shape (5, 6) (got (5,))"),
    (corrupt(lambda r: r["layers"][0]["hist"][0].__setitem__(0, 1.5)), "layers[0].hist must hold only whole numbers"),
    (corrupt(lambda r: r["layers"][0]["mean"].__setitem__(0, "1")), "layers[0].mean must hold only numbers or null"),
    (corrupt(lambda r: r["layers"][0]["std"].__setitem__(0, True)), "layers[0].std must hold only numbers or null"),
    (corrupt(lambda r: r["layers"][0]["percentiles"].pop("p85")), "layers[0].percentiles is missing 'p85'"),
    (corrupt(lambda r: r["layers"][0].update(bin_edges=[0.0])), "layers[0].bin_edges must hold at least 2 edges"),
    (corrupt(lambda r: r["test_accuracy"]["values"].pop()), "test_accuracy.values must have shape (2,) (got (1,))"),
    (corrupt(lambda r: r["steps"].__setitem__(0, 2**70)), "steps holds a number too large"),
])
def test_read_run_rejects_bad_files_with_a_precise_message(tmp_path, run, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(run))
    with pytest.raises(ValueError) as error:
        read_run(path)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("text, message", [
    ('{"steps": [NaN]}', "not a run file: invalid JSON (NaN is not standard JSON"),
    ('{"steps": [1, 2', "not a run file: invalid JSON"),
    ("[" * 100_000, "not a run file: invalid JSON"),  # too deep for the parser: RecursionError
    (b"\xff\xfe\x00", "not a run file: invalid JSON"),
])
def test_read_run_rejects_what_is_not_json(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        read_run(path)


def test_read_run_refuses_oversize_files_before_reading_them(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as file:
        file.truncate(MAX_BYTES + 1)  # sparse: no disk used, and never parsed
    with pytest.raises(ValueError, match=r"^huge.json is 50.0 MB; a run file may be at most 50 MB"):
        read_run(path)


def test_csv_has_one_row_per_column_and_layer():
    snapshot = make_snapshot()
    rows = list(csv.DictReader(io.StringIO(to_csv(snapshot))))
    assert len(rows) == COLUMNS * LAYERS
    assert list(rows[0]) == ["step", "layer", "loss", "mean", "std", "p15", "p50", "p85", "saturation",
                             "near_zero", "nonfinite", "grad_norm", "test_accuracy"]
    first = rows[1]  # column 0 (step 2), layer 2
    assert first["step"] == "2" and first["layer"] == "linear2" and first["test_accuracy"] == ""
    assert float(first["std"]) == pytest.approx(snapshot.columns["std"][0, 1], rel=1e-5)
    assert float(first["p85"]) == pytest.approx(snapshot.columns["percentiles"][0, 1, 2], rel=1e-5)
    measured = [row for row in rows if row["step"] == "4"]
    assert [row["test_accuracy"] for row in measured] == ["0.5", "0.5"]
    assert [row["step"] for row in rows if row["test_accuracy"]] == ["4", "4", "10", "10"]
    last = rows[-2]  # step 10, layer 1: loss NaN, mean Inf -> blank; accuracy 1/3 measured here
    assert (last["loss"], last["mean"], last["nonfinite"], last["test_accuracy"]) == ("", "", "7", "0.333333")


def test_csv_puts_test_accuracy_in_the_merged_column_that_covers_it():
    snapshot = dataclasses.replace(make_snapshot(), accuracy_steps=np.array([3, 9, 11]), accuracy=np.array([0.1, 0.2, 0.3]))
    rows = list(csv.DictReader(io.StringIO(to_csv(snapshot))))  # columns end at steps 2, 4, 6, 8, 10
    measured = {row["step"]: row["test_accuracy"] for row in rows if row["test_accuracy"]}
    assert measured == {"4": "0.1", "10": "0.2"}  # step 11 is past the last complete column


def assert_same_run(a, b, where="run"):
    """Equal nested run dicts: numpy arrays equal (NaN where NaN), everything else ==."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_run(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_run(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where
