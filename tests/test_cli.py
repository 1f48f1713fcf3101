"""Tests for the command line (bnviz.cli): tiny real runs on the synthetic data, a few seconds each.

The run file is checked as plain JSON against docs/run-format.md, not through read_run, so
the test holds the writer to the documented format.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bnviz.cli import main
from bnviz.presets import PRESETS
from bnviz.runfile import read_run

TINY = ["--preset", "ioffe-fig1", "--set", "steps=40", "--set", "eval_every=20", "--set", "dataset=synthetic"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One 40-step run shared by the format tests: (exit code, path)."""
    path = tmp_path_factory.mktemp("run") / "run.json"
    return main(["run", *TINY, "--out", str(path)]), path


def test_run_writes_the_documented_format(tiny_run, capsys):
    code, path = tiny_run
    assert code == 0
    run = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"bare {name} in the file"))
    for key in ("format", "bnviz_version", "config", "status", "message", "stride", "steps", "count", "loss",
                "test_accuracy", "lr_events", "landscape", "layers"):
        assert key in run, key
    assert run["format"] == "bnviz-run/1" and run["status"] == "finished" and run["message"] == "finished 40 steps"
    assert run["config"]["steps"] == 40 and run["config"]["dataset"] == "synthetic"
    n = len(run["steps"])
    assert run["steps"] == list(range(1, 41)) and run["count"] == [1] * n and run["stride"] == 1
    assert len(run["loss"]) == n
    assert run["test_accuracy"]["steps"] == [20, 40] and len(run["test_accuracy"]["values"]) == 2
    assert set(run["landscape"]) == {"steps", "loss_range", "gradient_predictiveness", "beta_smoothness"}
    assert [layer["name"] for layer in run["layers"]] == ["linear1", "linear2", "linear3"]
    for layer in run["layers"]:
        bins, post_bins = len(layer["bin_edges"]) - 1, len(layer["post_bin_edges"]) - 1
        assert np.shape(layer["hist"]) == (n, bins) and np.shape(layer["post_hist"]) == (n, post_bins)
        assert all(isinstance(count, int) for row in layer["hist"] for count in row)
        assert np.sum(layer["hist"], axis=1).tolist() == [60 * 100] * n  # batch x width values per step
        for key in ("saturation", "nonfinite", "mean", "std", "grad_norm"):
            assert len(layer[key]) == n, key
        for key in ("percentiles", "unit_percentiles"):
            assert set(layer[key]) == {"p15", "p50", "p85"} and all(len(v) == n for v in layer[key].values())
    assert read_run(path)["layers"][0]["hist"].shape == (n, 48)


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for preset in PRESETS.values():
        assert preset.name in out and preset.summary in out and "published:" in out


@pytest.mark.parametrize("argv, message", [
    (["--set", "depth=x"], "bnviz: error: depth must be a whole number (got 'x')"),
    (["--set", "colour=red"], "bnviz: error: unknown setting 'colour'"),
    (["--set", "norm=weightnorm"], "bnviz: error: norm must be one of none, batchnorm"),
    (["--set", "steps=0"], "bnviz: error: steps must be between 1 and 200000 (got 0)"),
    (["--set", "depth"], "bnviz: error: --set expects KEY=VALUE (got 'depth')"),
    (["--preset", "resnet"], "bnviz: error: unknown preset 'resnet'"),
    (["--set", "dataset=synthetic", "--data-dir", "."], "bnviz: error: data_dir cannot be used with the synthetic"),
])
def test_bad_settings_exit_2_with_one_line_and_no_traceback(tmp_path, capsys, argv, message):
    assert main(["run", *argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


def test_usage_errors_from_argparse_return_2(capsys):
    assert main([]) == 2
    assert main(["run", "--steps", "many", "--out", "x.json"]) == 2
    assert main(["sweep", *TINY, "--vary", "norm", "--out", "x"]) == 2
    assert "--vary expects KEY=V1,V2,..." in capsys.readouterr().err


def test_sweep_writes_one_file_per_value_with_paired_configs(tmp_path, capsys):
    argv = ["sweep", *TINY, "--set", "steps=20", "--vary", "norm=none,batchnorm", "--out", str(tmp_path)]
    assert main(argv) == 0
    runs = {value: json.loads((tmp_path / f"ioffe-fig1-norm-{value}.json").read_text()) for value in ("none", "batchnorm")}
    assert len(list(tmp_path.iterdir())) == 2
    configs = {value: run["config"] for value, run in runs.items()}
    assert configs["none"]["norm"] == "none" and configs["batchnorm"]["norm"] == "batchnorm"
    assert {**configs["none"], "norm": "batchnorm"} == configs["batchnorm"]  # seed included
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["norm", "status", "final", "loss"]
    assert [line.split()[:2] for line in table[1:]] == [["none", "finished"], ["batchnorm", "finished"]]


def test_sweep_runs_see_the_same_data_and_initial_weights(tmp_path, capsys):
    assert main(["sweep", *TINY, "--set", "steps=5", "--vary", "lr=0.5,0.05", "--out", str(tmp_path)]) == 0
    fast, slow = (json.loads((tmp_path / f"ioffe-fig1-lr-{lr}.json").read_text()) for lr in ("0.5", "0.05"))
    assert fast["layers"][2]["hist"][0] == slow["layers"][2]["hist"][0]  # step 1: same weights, same batch
    assert fast["loss"][0] == slow["loss"][0] and fast["loss"][1:] != slow["loss"][1:]


def test_a_diverged_run_exits_3_and_still_writes_its_file(tmp_path, capsys):
    path = tmp_path / "run.json"
    argv = ["run", *TINY, "--set", "activation=linear", "--set", "lr=10", "--set", "init_sigma=3", "--set", "depth=6",
            "--out", str(path)]
    assert main(argv) == 3
    assert "diverged at step" in capsys.readouterr().out
    run = json.loads(path.read_text())
    assert run["status"] == "diverged" and run["loss"][-1] is None  # NaN written as null


def test_ctrl_c_stops_the_run_and_writes_what_was_recorded(tmp_path):
    path = tmp_path / "run.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bnviz", "run", *TINY, "--set", "steps=200000", "--out", str(path)]
    # Ctrl-C's default, as a terminal's shell starts a command: a test session started in the background
    # (`cmd &` in a script) inherits SIGINT ignored, and Python then leaves it ignored.
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen, deadline = b"", time.monotonic() + 60
        while b"running" not in seen and time.monotonic() < deadline:  # progress lines arrive 4 times a second
            chunk = os.read(process.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()  # harmless once it has exited
    assert process.returncode == 130, (seen + err).decode()
    assert b"Traceback" not in seen + err and b"stopped at step" in out
    run = read_run(path)
    assert run["status"] == "stopped" and run["layers"][0]["hist"].shape == (len(run["steps"]), 48)
