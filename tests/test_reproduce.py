"""Tests for the reproductions (bnviz.reproduce: registry, run, report, cli); the claims
themselves, on hand-made data, are tests/test_claims.py.

Short real reproductions (a few hundred steps, small batches, two seeds): every output
exists, the run files hold the documented shapes, the report holds the claim lines, the
configs and the version, and the summary is what the claims compute from the run files on disk.
"""

import argparse
import html
import json

import pytest

from bnviz import __version__
from bnviz.reproduce.cli import add_parser
from bnviz.reproduce.registry import REPRODUCTIONS, check_claims, check_snapshots, configs_for, get_reproduction, seed_configs
from bnviz.reproduce.run import run_reproduction
from bnviz.runfile import read_run, write_run
from bnviz.trainer import Trainer

SEEDS = 2  # the fewest with an interval: the short runs test the plumbing, not the claims
SHORT = {  # name -> (steps, overrides): a few seconds each on one core
    "ioffe-fig1": (200, {}),
    "fastai-collapse": (30, {"batch_size": 64}),
    "noisy-bn": (200, {"batch_size": 32}),
    "landscape": (200, {"batch_size": 32}),
}


def lines(name, runs):
    return [claim.line for claim in check_claims(name, runs)]


def test_configs_are_paired_and_scaled():
    configs = configs_for("landscape", steps=200)
    assert set(configs) == {"none", "batchnorm"}
    none, bn = configs["none"], configs["batchnorm"]
    assert none.replace(norm="batchnorm") == bn  # only norm differs: same seed, data order, weights
    assert none.steps == 200 and none.eval_every == 25 and none.landscape_every == 5  # as many measurements
    assert configs_for("ioffe-fig1")["none"].steps == 50_000
    with pytest.raises(ValueError, match="unknown reproduction"):
        configs_for("ioffe-fig2")


def test_seeds_are_consecutive_and_paired():
    seeds = seed_configs("ioffe-fig1", 3, steps=100, overrides={"seed": 7})
    assert [pair["none"].seed for pair in seeds] == [7, 8, 9]
    for pair in seeds:
        assert pair["none"].replace(norm="batchnorm") == pair["batchnorm"]
        assert pair["none"].replace(seed=7) == seeds[0]["none"]  # nothing else differs
    with pytest.raises(ValueError, match="seeds must be"):
        seed_configs("ioffe-fig1", 0)


@pytest.fixture(scope="module", params=list(SHORT))
def short_reproduction(request, tmp_path_factory):
    steps, overrides = SHORT[request.param]
    out = tmp_path_factory.mktemp(request.param)
    return run_reproduction(request.param, steps=steps, out_dir=out, overrides=overrides, parallel="thread", seeds=SEEDS)


def test_short_reproduction_writes_every_output(short_reproduction):
    result = short_reproduction
    reproduction = get_reproduction(result.name)
    assert result.completed
    assert len(result.run_files) == len(result.seeds) == SEEDS
    for seed, files in enumerate(result.run_files):
        assert set(files) == set(reproduction.norms)
        for norm, path in files.items():
            run = read_run(path)
            n = len(run["steps"])
            assert path.name == f"{result.name}-{norm}-seed{seed}.json"
            assert run["status"] == "finished" and run["config"]["norm"] == norm and run["config"]["seed"] == seed
            assert n > 0 and run["layers"][-1]["hist"].shape == (n, 48)
            assert run["layers"][-1]["unit_percentiles"]["p50"].shape == (n,)
            assert len(run["test_accuracy"]["values"]) >= 2
            if result.name == "landscape":
                assert len(run["landscape"]["loss_range"]) >= 10
    summary = result.summary.read_text().splitlines()
    assert len(summary) == len(reproduction.claims)
    assert all(line.endswith((": reproduced", ": not reproduced", ": not reproduced (within noise)")) for line in summary)
    assert all("over 2 seeds" in line or "not measured" in line or "could not" in line for line in summary)
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
    seeds = [{norm: read_run(path) for norm, path in files.items()} for files in result.run_files]
    assert lines(result.name, seeds) == result.summary.read_text().splitlines()
    swapped = [dict(runs, none=runs["batchnorm"], batchnorm=runs["none"]) for runs in seeds]
    assert lines(result.name, swapped) != lines(result.name, seeds)


def test_cli_reproduces_in_processes(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["reproduce", "ioffe-fig1", "--steps", "50", "--out", str(tmp_path / "out"),
                              "--set", "dataset=synthetic", "--seeds", "2"])
    assert args.handler(args) == 0
    out = capsys.readouterr()
    assert out.out == (tmp_path / "out" / "summary.txt").read_text()
    assert len(out.out.splitlines()) == 3
    assert "no BN 100/100 steps of 2 seeds, 2 ended" in out.err
    assert "training 4 runs, 2 seeds, took" in out.err and "wall time on 2 workers" in out.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "ioffe-fig1-batchnorm-seed0.json", "ioffe-fig1-batchnorm-seed1.json", "ioffe-fig1-none-seed0.json",
        "ioffe-fig1-none-seed1.json", "report.html", "summary.txt"]


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

