"""``python -m bnviz map``: a small real map end to end, a repeat read from disk, usage errors in words."""

import html
import json

import pytest

from bnviz.cli import main

SMALL = ["--preset", "ioffe-fig1", "--grid", "lr=0.1:3:2", "--grid", "init_sigma=0.1,1", "--steps", "20",
         "--set", "eval_size=200", "--set", "width=16", "--jobs", "2"]


def test_a_map_writes_its_files_and_a_repeat_reads_every_cell(tmp_path, capsys):
    out = tmp_path / "map"
    assert main(["map", *SMALL, "--out", str(out)]) == 0
    first = capsys.readouterr()
    summary = (out / "summary.txt").read_text()
    assert first.out == summary and len(summary.splitlines()) == 4  # the four claim lines of a lr x init sigma map
    assert all(line.endswith(("reproduced", "within noise")) for line in summary.splitlines())
    assert "8 cells trained, 0 read from disk" in first.err
    assert len(list((out / "cells").glob("*.json"))) == 8
    written = json.loads((out / "map.json").read_text())
    assert written["format"] == "bnviz-map/1" and len(written["cells"]) == 8
    assert written["spec"]["x"] == {"name": "lr", "values": [0.1, 3.0]}
    assert written["spec"]["base"]["steps"] == 20 and written["spec"]["base"]["width"] == 16
    report = (out / "report.html").read_text()
    assert "Trainability map" in report and all(html.escape(line) in report for line in summary.splitlines())

    assert main(["map", *SMALL, "--out", str(out)]) == 0
    assert "0 cells trained, 8 read from disk" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--grid", "lr=0.1:3"], "a range is LO:HI:N"),
    (["--grid", "lr=1,2", "--grid", "depth=2,3", "--grid", "width=8,16"], "one or two --grid axes"),
    (["--preset", "landscape"], "has no shipped map"),
    (["--grid", "lr=1,2", "--vary", "lr=1,2"], "must differ"),
    (["--grid", "lr=1,2", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --backend dask"),
    (["--grid", "lr=1,2", "--steps", "0"], "--steps must be at least 1"),
    (["--grid", "lr=1,2", "--set", "depth=99"], "depth must be between"),
    (["--grid", "lr=1,2", "--jobs", "0"], "--jobs must be at least 1"),
])
def test_usage_errors_are_one_line(tmp_path, capsys, arguments, message):
    assert main(["map", *arguments, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("bnviz: error:")
