"""The trainability map's engine: cells equal runs alone, on every backend; the cache resumes;
grids parse; map files round-trip; the claims flip when the data does."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bnviz.config import RunConfig
from bnviz.reproduce import map_claims
from bnviz.reproduce.cells import Cell, CellCache, run_cell, run_cells, summarize
from bnviz.reproduce.map import MapSpec, named_map, parse_axis
from bnviz.reproduce.map_data import MapData

# Small and quick, and still real: MNIST, a 2x16 sigmoid net, 40 steps, 4 evaluations of 500 images.
TINY = RunConfig(depth=2, width=16, steps=40, eval_every=10, eval_size=500, batch_size=32)


def tiny_configs():
    return [TINY.replace(lr=lr, norm=norm) for norm in ("none", "batchnorm") for lr in (0.1, 1.0)]


def test_a_cell_is_the_same_config_run_alone():
    from bnviz.trainer import Trainer

    config = TINY.replace(norm="batchnorm", lr=0.5)
    trainer = Trainer(config).start()
    trainer.join()
    alone = summarize(trainer.snapshot())
    (in_pool,) = run_cells([config], backend="loky", n_jobs=2)
    assert in_pool == alone  # every field but the timing, exactly
    assert in_pool.key == config.key() and in_pool.status == "finished"
    assert len(in_pool.accuracy) == 4 and len(in_pool.saturation) == 2 and len(in_pool.grad_norms_start) == 2
    assert in_pool.seconds > 0


def test_loky_on_two_workers_gives_the_sequential_cells():
    configs = tiny_configs()
    assert run_cells(configs, backend="loky", n_jobs=2) == run_cells(configs, backend="sequential")


def test_a_diverging_cell_records_its_step():
    cell = run_cell(TINY.replace(lr=10.0, init_sigma=5.0, activation="relu", init="gaussian", depth=3))
    assert cell.diverged and cell.diverged_step == cell.step and 1 <= cell.step <= TINY.steps
    assert cell.final_accuracy == 0.1 and math.isnan(cell.final_loss)
    assert not cell.trains(0.5)


def test_a_repeated_map_reads_every_cell_and_an_interrupted_one_computes_only_the_missing(tmp_path):
    configs = tiny_configs()
    seen = []

    def stop_after_two(cell, cached):
        seen.append((cell.key, cached))
        if len([1 for _, c in seen if not c]) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cells(configs, cache_dir=tmp_path, backend="sequential", on_cell=stop_after_two)
    assert len(list(tmp_path.glob("*.json"))) == 2
    kept = {key for key, _ in seen}

    events = []
    cells = run_cells(configs, cache_dir=tmp_path, backend="loky", n_jobs=2, on_cell=lambda c, cached: events.append((c.key, cached)))
    assert {key for key, cached in events if cached} == kept
    assert {key for key, cached in events if not cached} == {c.key() for c in configs} - kept
    assert len(events) == 4

    again = []
    assert run_cells(configs, cache_dir=tmp_path, on_cell=lambda c, cached: again.append(cached)) == cells
    assert again == [True] * 4  # nothing trained


def test_a_damaged_cache_file_is_computed_again(tmp_path):
    config = TINY.replace(steps=5, eval_every=5)
    (cell,) = run_cells([config], cache_dir=tmp_path, backend="sequential")
    cache = CellCache(tmp_path)
    cache.path(cell.key).write_text("{not json", encoding="utf-8")
    assert cache.get(cell.key) is None
    wrong = cell.to_dict() | {"key": "0" * 16}
    cache.path(cell.key).write_text(json.dumps(wrong), encoding="utf-8")
    assert cache.get(cell.key) is None
    assert run_cells([config], cache_dir=tmp_path, backend="sequential") == [cell]
    assert Cell.from_dict(json.loads(cache.path(cell.key).read_text())) == cell


def test_the_dask_backend_on_a_real_local_cluster_gives_the_local_numbers():
    from dask.distributed import LocalCluster

    configs = tiny_configs()
    local = run_cells(configs, backend="loky", n_jobs=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        on_cluster = run_cells(configs, backend="dask", scheduler=cluster.scheduler_address)
    assert on_cluster == local


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        run_cells([TINY], backend="spark")
    with pytest.raises(ValueError, match="n_jobs must be at least 1"):
        run_cells([TINY], n_jobs=0)


@pytest.mark.parametrize("text, name, values", [
    ("lr=0.01:10:4", "lr", (0.01, 0.1, 1.0, 10.0)),
    ("depth=2:20:10", "depth", (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)),
    ("norm=none,batchnorm", "norm", ("none", "batchnorm")),
    (" init_sigma = 0.1 , 1 ", "init_sigma", (0.1, 1.0)),
])
def test_grids_parse(text, name, values):
    axis = parse_axis(text)
    assert axis.name == name and axis.values == pytest.approx(values) if name != "norm" else axis.values == values


@pytest.mark.parametrize("text, message", [
    ("lr", "a grid is KEY=LO:HI:N"), ("speed=1,2", "unknown setting 'speed'"), ("lr=0:1:3", "positive ends"),
    ("lr=0.1:1000:3", "lr must be between"), ("norm=a:b:3", "a range is LO:HI:N for a numeric"),
    ("lr=0.1,0.1", "must differ"), ("depth=1:2:x", "whole N"), ("lr=0.1:1:0", "between 1 and 1000"),
])
def test_bad_grids_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_axis(text)


def test_a_spec_pairs_its_cells_across_the_varied_setting():
    spec = named_map("ioffe-fig1", steps=1000, lr_count=3, other_count=2)
    configs = spec.configs()
    assert spec.shape == (2, 2, 3) and len(configs) == 12
    none, bn = configs[:6], configs[6:]
    for a, b in zip(none, bn):
        assert a.norm == "none" and b.norm == "batchnorm" and a.replace(norm="batchnorm") == b
    assert configs[1].lr > configs[0].lr and configs[3].init_sigma > configs[0].init_sigma
    assert configs[0].steps == 1000 and configs[0].eval_every == 50
    with pytest.raises(ValueError, match="must differ"):
        MapSpec("x", TINY, parse_axis("norm=none,batchnorm"), None)


def fake_map(bn_trains: np.ndarray, plain_trains: np.ndarray, y: str = "init_sigma", diverged=None) -> MapData:
    """A MapData whose cells train where the masks say (accuracy 0.95, else 0.5)."""
    rows, cols = bn_trains.shape
    spec = MapSpec("fake", TINY, parse_axis(f"lr=0.01:10:{cols}"),
                   parse_axis(f"{y}=0.01:10:{rows}" if y == "init_sigma" else f"depth=2:20:{rows}"))
    accuracy = np.where(np.stack([plain_trains, bn_trains]), 0.95, 0.5)
    nan = np.full(spec.shape, math.nan)
    diverged_step = nan.copy() if diverged is None else diverged
    accuracy = np.where(np.isfinite(diverged_step), 0.1, accuracy)
    return MapData(spec, accuracy, diverged_step, np.zeros(spec.shape, bool), nan, nan, nan, np.ones(spec.shape))


def band(rows: int, cols: int, lr_upto: int, sigma_rows: range) -> np.ndarray:
    mask = np.zeros((rows, cols), bool)
    for r in sigma_rows:
        mask[r, :lr_upto] = True
    return mask


def test_claim_lines_are_computed_from_the_data_and_flip_when_it_changes():
    wide, narrow = band(9, 9, 8, range(9)), band(9, 9, 4, range(3, 6))
    claims = {c.name: c for c in map_claims.check_map(fake_map(wide, narrow))}
    assert set(claims) == {"trains_in_more_cells", "ends_higher", "higher_learning_rate", "wider_init_range"}
    assert claims["ends_higher"].line == ("BN ends higher (by more than 0.03) in 60 of 81 paired cells, lower in 0 "
                                          "(sign test p = 8.7e-19): reproduced")
    assert all(c.verdict == "reproduced" for c in claims.values())
    assert "BN trains (>= 90%) in 72 of 81 cells vs 12 without" in claims["trains_in_more_cells"].line
    assert ("largest learning rate that trains: 4.217 with BN (cells that train at 4.217 in 9 of 9; 1.778 in 9 of 9; "
            "0.7499 in 9 of 9) vs 0.1334 without; above 0.1334 BN trains in 36 cells, no BN in none (sign test "
            "p = 1.5e-11): reproduced") == claims["higher_learning_rate"].line
    assert ("9 of 9 (0.01 to 10) with BN vs 3 of 9 (0.1334 to 0.7499) without; where the net without BN never trains, "
            "BN trains in 48 cells") in claims["wider_init_range"].line

    swapped = {c.name: c for c in map_claims.check_map(fake_map(narrow, wide))}
    assert all(c.verdict == "not reproduced" and c.line.endswith(": not reproduced") for c in swapped.values())

    # One more column and one more row for BN: 4 cells beyond each boundary, p = 1/16: within noise
    # (one seed's boundary can move a step), though the 8 only-BN cells together are reproduced.
    one_step = {c.name: c for c in map_claims.check_map(fake_map(band(9, 9, 5, range(3, 7)), narrow))}
    assert one_step["higher_learning_rate"].verdict == "within noise"
    assert "above 0.1334 BN trains in 4 cells" in one_step["higher_learning_rate"].line
    assert one_step["wider_init_range"].verdict == "reproduced"  # row 6: 5 cells
    assert one_step["trains_in_more_cells"].verdict == "reproduced"  # 9 only-BN cells, none the other way
    lone = band(9, 9, 4, range(3, 6))
    lone[4, 8] = True  # one borderline BN cell far out decides nothing
    assert map_claims.higher_learning_rate(fake_map(lone, narrow))[0] == "within noise"


def test_diverged_cells_never_train_and_the_depth_claims_apply():
    trains = band(5, 4, 4, range(0, 5))
    diverged = np.full((2, 5, 4), math.nan)
    diverged[1] = 3.0  # every BN cell diverged at step 3
    data = fake_map(trains, trains, y="depth", diverged=diverged)
    assert not data.trains[1].any() and data.trains[0].all()
    names = [c.name for c in map_claims.check_map(data)]
    assert names == ["trains_in_more_cells", "ends_higher", "higher_learning_rate", "deeper", "exploding_gradients"]
    assert all(c.verdict == "not reproduced" for c in map_claims.check_map(data))


def test_exploding_gradient_claim_reads_the_ratio_against_depth():
    trains = band(5, 4, 4, range(0, 5))
    data = fake_map(trains, trains, y="depth")
    growing = data.grad_ratio.copy()
    growing[1] = np.linspace(1, 8, 5)[:, None]  # BN: x8 from depth 2 to depth 20
    line = map_claims.exploding_gradients(MapData(**{**data.__dict__, "grad_ratio": growing}))
    assert line == ("reproduced", "first/last-layer gradient norm at initialization with BN: 1 at depth 2, 8 at depth 20 "
                                  "(without BN: 1, 1): reproduced")
    assert map_claims.exploding_gradients(data)[0] == "not reproduced"


def test_map_files_round_trip(tmp_path):
    cells = run_cells(named_map("ioffe-fig1", steps=4, lr_count=2, other_count=1).configs(), backend="sequential")
    spec = named_map("ioffe-fig1", steps=4, lr_count=2, other_count=1)
    data = MapData.from_cells(spec, cells)
    data.write(tmp_path / "map.json")
    back = MapData.read(tmp_path / "map.json")
    assert back.spec == spec
    for name in ("accuracy", "diverged_step", "error", "steps_to", "saturation", "grad_ratio"):
        np.testing.assert_allclose(getattr(back, name), getattr(data, name), rtol=1e-3, atol=1e-4, equal_nan=True)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "bnviz-map/1", "spec": spec.to_dict(), "cells": []}))
    with pytest.raises(ValueError, match="needs 4 cells"):
        MapData.read(tmp_path / "bad.json")
