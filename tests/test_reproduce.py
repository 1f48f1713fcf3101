"""Tests for the reproductions (bnviz.reproduce: claims, registry, run, report, cli).

Two kinds:
1. Claims on hand-made run data: each claim reads "reproduced" on data that shows the
   published effect and "not reproduced" when the same data is swapped between the runs,
   so a claim is computed from the data and a claim not shown never passes.
2. Short real reproductions (a few hundred steps, small batches): every output exists, the
   run files hold the documented shapes, the report holds the claim lines, the configs and the
   version, and the summary is what the claims compute from the run files on disk.
"""

import argparse
import html
import json

import numpy as np
import pytest

from bnviz import __version__
from bnviz.reproduce.claims import count_collapses
from bnviz.reproduce.cli import add_parser
from bnviz.reproduce.registry import REPRODUCTIONS, check_claims, check_snapshots, configs_for, get_reproduction
from bnviz.reproduce.run import run_reproduction
from bnviz.runfile import read_run, write_run
from bnviz.trainer import Trainer

SHORT = {  # name -> (steps, overrides): a few seconds each on one core
    "ioffe-fig1": (200, {}),
    "fastai-collapse": (30, {"batch_size": 64}),
    "noisy-bn": (200, {"batch_size": 32}),
    "landscape": (200, {"batch_size": 32}),
}


def fake_run(steps=100, accuracy=(0.5, 0.9), unit=None, saturation=None, landscape=None, status="finished"):
    """The parts of a read_run() dict that the claims read, from a few numbers."""
    columns = np.arange(1, steps + 1)
    unit = unit if unit is not None else (np.zeros(steps), np.ones(steps))  # (median, spread) over time
    median, spread = (np.asarray(v, dtype=float) for v in unit)
    layer = {"name": "layer3", "saturation": np.asarray(saturation if saturation is not None else np.full(steps, 0.5)),
             "unit_percentiles": {"p15": median - spread / 2, "p50": median, "p85": median + spread / 2}}
    evaluations = np.linspace(steps / max(len(accuracy), 1), steps, len(accuracy)).astype(int)
    values = np.asarray(landscape if landscape is not None else np.ones(5), dtype=float)
    return {"status": status, "config": {"steps": steps}, "steps": columns, "layers": [layer],
            "test_accuracy": {"steps": evaluations, "values": np.asarray(accuracy, dtype=float)},
            "landscape": {"steps": np.arange(len(values)), "loss_range": values,
                          "gradient_predictiveness": 2 * values, "beta_smoothness": 3 * values}}


def lines(name, runs):
    return [claim.line for claim in check_claims(name, runs)]


def assert_flips(name, good, swapped):
    """Every claim holds on `good` and reads 'not reproduced' on `swapped`."""
    held, broken = check_claims(name, good), check_claims(name, swapped)
    assert [c.holds for c in held] == [True] * len(held), [c.line for c in held]
    assert [c.holds for c in broken] == [False] * len(broken), [c.line for c in broken]
    for claim in held:
        assert claim.line.endswith(": reproduced")
    for claim in broken:
        assert claim.line.endswith(": not reproduced")
    assert lines(name, good) != lines(name, swapped)


def test_ioffe_claims_follow_the_data():
    rng = np.random.default_rng(0)
    drifting = (np.linspace(-2, 2, 100) + rng.normal(0, 0.1, 100), np.linspace(1, 4, 100))
    stable = (rng.normal(0, 0.05, 100), 1 + rng.normal(0, 0.05, 100))
    with_bn = fake_run(accuracy=(0.90, 0.95, 0.97, 0.98), unit=stable)
    without = fake_run(accuracy=(0.50, 0.80, 0.90, 0.94), unit=drifting)
    assert_flips("ioffe-fig1", {"none": without, "batchnorm": with_bn}, {"none": with_bn, "batchnorm": without})
    good = lines("ioffe-fig1", {"none": without, "batchnorm": with_bn})
    assert good[0] == "BN final test accuracy 0.9800 vs 0.9400 without: reproduced"
    assert good[1].startswith("BN reaches the no-BN final accuracy 0.9400 at step 50 vs step 100 without")


def test_drift_ignores_the_first_steps():
    """A jump in the first 5% of steps is the start of training, not drift."""
    median = np.r_[np.full(4, 10.0), np.zeros(96)]
    slow_drift = 0.01 * np.arange(100)
    jumpy, flat = fake_run(unit=(median, np.ones(100))), fake_run(unit=(slow_drift, 1 + slow_drift))
    holds = [c.holds for c in check_claims("ioffe-fig1", {"none": flat, "batchnorm": jumpy})]
    assert holds[2] is True  # jumpy's only movement is in steps 1-4


def test_fastai_claims_follow_the_data():
    collapsing = np.r_[np.linspace(0.1, 0.6, 20), np.linspace(0.6, 0.05, 10), np.linspace(0.05, 0.7, 20),
                       np.linspace(0.7, 0.1, 10), np.full(40, 0.6)]
    smooth = np.linspace(0.4, 0.55, 100)
    with_bn = fake_run(accuracy=(0.95, 0.985), saturation=1 - smooth)
    without = fake_run(accuracy=(0.90, 0.975), saturation=1 - collapsing)
    assert count_collapses(collapsing) == 2 and count_collapses(smooth) == 0
    assert_flips("fastai-collapse", {"none": without, "batchnorm": with_bn}, {"none": with_bn, "batchnorm": without})
    assert "(book: 0.9864 vs 0.9743)" in lines("fastai-collapse", {"none": without, "batchnorm": with_bn})[0]


def test_count_collapses_counts_each_fall_once():
    assert count_collapses(np.linspace(1, 0, 50)) == 1  # one long fall, not ten
    assert count_collapses(np.array([0.5, 0.45, 0.5, 0.45] * 10)) == 0  # jitter below the threshold
    assert count_collapses(np.array([0.5, 0.2, 0.5, 0.2, 0.5, 0.2])) == 3
    assert count_collapses(np.array([np.nan, 0.5, 0.2])) == 1  # NaN (undefined) columns are skipped


def test_noisy_bn_claims_follow_the_data():
    runs = {"none": fake_run(accuracy=(0.90,)), "batchnorm": fake_run(accuracy=(0.97,)),
            "noisy-batchnorm": fake_run(accuracy=(0.96,)), "noise": fake_run(accuracy=(0.60,))}
    # the same four runs under other names: noise alone best, BN worst, noisy BN far below BN
    swapped = {"none": runs["noisy-batchnorm"], "batchnorm": runs["none"], "noisy-batchnorm": runs["noise"],
               "noise": runs["batchnorm"]}
    assert_flips("noisy-bn", runs, swapped)


def test_a_diverged_run_counts_as_chance():
    runs = {"none": fake_run(accuracy=(0.90,)), "batchnorm": fake_run(accuracy=(0.97,)),
            "noisy-batchnorm": fake_run(accuracy=(0.96,)), "noise": fake_run(accuracy=(0.95,), status="diverged")}
    last = check_claims("noisy-bn", runs)[-1]
    assert last.holds and "0.1000 vs 0.9000" in last.line


def test_landscape_claims_follow_the_data():
    smooth, rough = fake_run(landscape=[0.1, 0.2, 0.1, 0.3]), fake_run(landscape=[1.0, 2.0, 0.5, 3.0])
    assert_flips("landscape", {"none": rough, "batchnorm": smooth}, {"none": smooth, "batchnorm": rough})


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_a_run_with_nothing_recorded_is_not_reproduced(name):
    empty = fake_run(steps=0, accuracy=(), saturation=[], landscape=[], unit=([], []), status="error")
    runs = {norm: empty for norm in get_reproduction(name).norms}
    for claim in check_claims(name, runs):
        assert not claim.holds and claim.line.endswith(": not reproduced"), claim.line


def test_configs_are_paired_and_scaled():
    configs = configs_for("landscape", steps=200)
    assert set(configs) == {"none", "batchnorm"}
    none, bn = configs["none"], configs["batchnorm"]
    assert none.replace(norm="batchnorm") == bn  # only norm differs: same seed, data order, weights
    assert none.steps == 200 and none.eval_every == 25 and none.landscape_every == 5  # as many measurements
    assert configs_for("ioffe-fig1")["none"].steps == 50_000
    with pytest.raises(ValueError, match="unknown reproduction"):
        configs_for("ioffe-fig2")


@pytest.fixture(scope="module", params=list(SHORT))
def short_reproduction(request, tmp_path_factory):
    steps, overrides = SHORT[request.param]
    out = tmp_path_factory.mktemp(request.param)
    return run_reproduction(request.param, steps=steps, out_dir=out, overrides=overrides, parallel="thread")


def test_short_reproduction_writes_every_output(short_reproduction):
    result = short_reproduction
    reproduction = get_reproduction(result.name)
    assert result.completed
    assert set(result.run_files) == set(reproduction.norms)
    for norm, path in result.run_files.items():
        run = read_run(path)
        n = len(run["steps"])
        assert run["status"] == "finished" and run["config"]["norm"] == norm and n > 0
        assert run["layers"][-1]["hist"].shape == (n, 48)
        assert run["layers"][-1]["unit_percentiles"]["p50"].shape == (n,)
        assert len(run["test_accuracy"]["values"]) >= 2
        if result.name == "landscape":
            assert len(run["landscape"]["loss_range"]) >= 10
    summary = result.summary.read_text().splitlines()
    assert len(summary) == len(reproduction.claims)
    assert all(line.endswith((": reproduced", ": not reproduced")) for line in summary)
    page = result.report.read_text()
    assert page.count("plotly.js v") == 1 and "<script src=" not in page  # inlined once: works offline
    for line in summary:
        assert html.escape(line) in page
    assert html.escape(reproduction.preset.published) in page
    assert f"bnviz {__version__}" in page
    config = json.dumps(result.runs["none"]["config"], indent=2, sort_keys=True)
    assert html.escape(config) in page


def test_summary_is_computed_from_the_run_files(short_reproduction):
    """Re-reading the run files gives the same lines; swapping two runs' data changes them."""
    result = short_reproduction
    runs = {norm: read_run(path) for norm, path in result.run_files.items()}
    assert lines(result.name, runs) == result.summary.read_text().splitlines()
    swapped = dict(runs, none=runs["batchnorm"], batchnorm=runs["none"])
    assert lines(result.name, swapped) != lines(result.name, runs)


def test_cli_reproduces_in_processes(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["reproduce", "ioffe-fig1", "--steps", "50", "--out", str(tmp_path / "out"),
                              "--set", "dataset=synthetic"])
    assert args.handler(args) == 0
    out = capsys.readouterr()
    assert out.out == (tmp_path / "out" / "summary.txt").read_text()
    assert len(out.out.splitlines()) == 3
    assert "no BN 50/50 finished" in out.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "ioffe-fig1-batchnorm.json", "ioffe-fig1-none.json", "report.html", "summary.txt"]


def test_cli_usage_errors_are_words(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["reproduce", "ioffe-fig1", "--out", str(tmp_path), "--set", "colour=blue"])
    assert args.handler(args) == 2
    assert "unknown setting 'colour'" in capsys.readouterr().err


def test_claims_on_live_snapshots_match_the_claims_on_their_run_files(tmp_path):
    configs = configs_for("ioffe-fig1", steps=60, overrides={"eval_every": 20})
    trainers = [Trainer(config).start() for config in configs.values()]
    for trainer in trainers:
        assert trainer.join(60)
    snapshots = [trainer.snapshot() for trainer in trainers]
    assert check_snapshots("ioffe-fig1", snapshots[:1]) is None  # a pair needs both runs
    assert check_snapshots("deep-sigmoid", snapshots) is None  # no reproduction of that preset
    live = check_snapshots("ioffe-fig1", snapshots)
    runs = {}
    for snapshot in snapshots:
        write_run(snapshot, tmp_path / f"{snapshot.config.norm}.json")
        runs[snapshot.config.norm] = read_run(tmp_path / f"{snapshot.config.norm}.json")
    assert [claim.line for claim in live] == [claim.line for claim in check_claims("ioffe-fig1", runs)]
    assert len(live) == len(REPRODUCTIONS["ioffe-fig1"].claims)


def test_live_claims_leave_out_a_run_they_do_not_compare_and_check_a_diverged_one():
    configs = configs_for("ioffe-fig1", steps=40, overrides={"eval_every": 20})
    extra = configs["none"].replace(norm="noisy-batchnorm")  # the app adds the chosen norm to the pair
    diverging = configs["none"].replace(activation="relu", init="gaussian", init_sigma=1.0, lr=10.0, depth=5)
    trainers = [Trainer(config).start() for config in (*configs.values(), extra, diverging)]
    for trainer in trainers:
        assert trainer.join(60)
    none, bn, noisy, diverged = (trainer.snapshot() for trainer in trainers)
    assert diverged.status == "diverged"
    with_extra = check_snapshots("ioffe-fig1", [none, bn, noisy])
    assert [c.line for c in with_extra] == [c.line for c in check_snapshots("ioffe-fig1", [none, bn])]
    assert check_snapshots("ioffe-fig1", [bn, noisy]) is None  # no run without BN: nothing to compare
    checked = check_snapshots("ioffe-fig1", [diverged, bn])  # its norm is "none": it ended, so it is judged
    assert checked is not None and len(checked) == len(REPRODUCTIONS["ioffe-fig1"].claims)

