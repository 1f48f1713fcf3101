"""``python -m bnviz map``: a trainability map, end to end.

    python -m bnviz map --preset ioffe-fig1 --grid lr=0.01:100:9 --grid init_sigma=0.01:10:9 \\
        --vary norm=none,batchnorm --steps 1000 --out maps/ioffe-fig1
    python -m bnviz map --map deep-relu --out maps/deep-relu        # a shipped map's grid
    python -m bnviz map --map ioffe-fig1 --backend dask --scheduler tcp://10.0.0.5:8786 --out maps/x

Trains every cell (``bnviz.reproduce.cells``: joblib on every core, or a Dask cluster),
keeping each on disk under ``OUT/cells/`` (``--cache`` to share a folder between maps), then
writes ``OUT/map.json`` (the arrays, docs in bnviz.reproduce.map), ``OUT/report.html`` and
``OUT/summary.txt`` and prints the summary: one line per claim, ending in "reproduced",
"within noise" or "not reproduced". Run it again and every cell is read from disk; stop it
with Ctrl-C and run it again, and only the missing cells train.
Exit codes: 0 done (whatever the claims say); 2 usage error; 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bnviz.terminal import EXIT_OK, EXIT_STOPPED, EXIT_USAGE, LINE_WIDTH, parse_settings


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Declare ``map`` on an ``add_subparsers()`` object; the handler is ``main``."""
    from bnviz.presets import DEFAULT_PRESET
    from bnviz.reproduce.cells import BACKENDS
    from bnviz.reproduce.map import MAP_NAMES, THRESHOLD

    parser = subparsers.add_parser("map", help="a trainability map: a grid of short runs, with and without BN",
                                   description="Train a grid of short runs paired across norms, check the "
                                               "claims on it, write map.json and an HTML report.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"base settings (default {DEFAULT_PRESET}); the grid comes from --grid")
    source.add_argument("--map", choices=MAP_NAMES, help="a shipped map: its base settings and grid")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=LO:HI:N",
                        help="an axis (repeat for two): LO:HI:N log-spaced for real settings, linear for whole "
                             "numbers, or V1,V2,...; the first is the columns, the second the rows "
                             "(default: the preset's shipped map, 9 x 9)")
    parser.add_argument("--vary", metavar="KEY=V1,V2",
                        help="the setting paired across the grid (default: the shipped map's, else norm=none,batchnorm)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change the base (repeatable)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps per cell (default 1000)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help=f"a cell trains if it ends at this held-out accuracy or above (default {THRESHOLD})")
    parser.add_argument("--out", required=True, help="folder for map.json, report.html, summary.txt (created)")
    parser.add_argument("--cache", help="folder of cell files (default OUT/cells): share it and shared cells train once")
    parser.add_argument("--backend", choices=BACKENDS, default="loky",
                        help="loky: processes on this machine (default); dask: a dask.distributed cluster")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="with --backend dask: the scheduler (default: a local cluster for this map)")
    parser.add_argument("--jobs", type=int, help="worker processes (default: one per core)")
    parser.add_argument("--data-dir", help="folder of MNIST-style IDX files instead of the bundled subset")
    parser.set_defaults(handler=main)
    return parser


def spec_from(args: argparse.Namespace):
    """The MapSpec the arguments describe; ValueError names what is wrong."""
    from bnviz.config import RunConfig
    from bnviz.presets import DEFAULT_PRESET, get_preset
    from bnviz.reproduce.map import MapSpec, cell_base, named_map, parse_axis

    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1 (got {args.steps})")
    if args.scheduler and args.backend != "dask":
        raise ValueError("--scheduler needs --backend dask")
    if len(args.grid) > 2:
        raise ValueError(f"a map has one or two --grid axes (got {len(args.grid)})")
    if args.map:
        spec = named_map(args.map, steps=args.steps)
    else:
        preset = args.preset or DEFAULT_PRESET
        if not args.grid and preset in ("ioffe-fig1", "deep-sigmoid"):
            spec = named_map(preset, steps=args.steps)
        elif not args.grid:
            raise ValueError(f"preset {preset} has no shipped map: give its axes with --grid KEY=LO:HI:N")
        else:
            base = cell_base(get_preset(preset).config, args.steps)
            spec = MapSpec(preset, base, parse_axis(args.grid[0]), None, preset=preset)
    changes = parse_settings(args.set)
    base = RunConfig.from_dict({**spec.base.to_dict(), **changes}) if changes else spec.base
    axes = [parse_axis(text) for text in args.grid] or [spec.x] + ([spec.y] if spec.y else [])
    vary = parse_axis(args.vary) if args.vary else spec.vary  # wu-he-batch varies BN, GroupNorm and LayerNorm
    return MapSpec(spec.name, base, axes[0], axes[1] if len(axes) > 1 else None, vary,
                   threshold=args.threshold, preset=spec.preset, note=spec.note)


def main(args: argparse.Namespace) -> int:
    try:
        spec = spec_from(args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1 (got {args.jobs})")
        if args.data_dir:
            from bnviz.data import load_dataset

            load_dataset(spec.base.dataset, args.data_dir)  # a bad folder is a usage error now, not in a worker
    except (ValueError, OSError) as error:
        print(f"bnviz: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    progress = _Progress(spec.cell_count)
    try:
        result = build(spec, out, cache=args.cache, backend=args.backend, n_jobs=args.jobs,
                       scheduler=args.scheduler, data_dir=args.data_dir, on_cell=progress)
    except KeyboardInterrupt:
        progress.end()
        print(f"bnviz: interrupted; {progress.done - progress.cached} new cells are kept on disk, run the same "
              "command again to finish the map", file=sys.stderr)
        return EXIT_STOPPED
    except (ValueError, OSError) as error:
        progress.end()
        print(f"bnviz: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    progress.end()
    print((out / "summary.txt").read_text(encoding="utf-8"), end="")
    print(f"report: {out / 'report.html'}  ({progress.done - progress.cached} cells trained, {progress.cached} read "
          f"from disk, {result['seconds']:.1f} s)", file=sys.stderr)
    return EXIT_OK


def build(spec, out: Path, cache=None, on_cell=None, **options) -> dict:
    """Run (or read) every cell of ``spec``, then write map.json, summary.txt and report.html into ``out``."""
    from bnviz.reproduce.cells import run_cells
    from bnviz.reproduce.map_claims import check_map
    from bnviz.reproduce.map_data import MapData
    from bnviz.reproduce.map_report import write_report

    started = time.perf_counter()
    cells = run_cells(spec.configs(), cache_dir=Path(cache) if cache else out / "cells", on_cell=on_cell, **options)
    seconds = time.perf_counter() - started
    data = MapData.from_cells(spec, cells)
    data.write(out / "map.json")
    claims = check_map(data)
    (out / "summary.txt").write_text("".join(claim.line + "\n" for claim in claims), encoding="utf-8")
    write_report(data, claims, out / "report.html", seconds=seconds, cell_seconds=[c.seconds for c in cells])
    return {"data": data, "claims": claims, "seconds": seconds}


class _Progress:
    """One line on stderr: cells done of all, how many came from disk, the last one's outcome."""

    def __init__(self, total: int):
        self.total, self.done, self.cached, self.drawn = total, 0, 0, False
        self.started = time.perf_counter()

    def __call__(self, cell, cached: bool) -> None:
        self.done += 1
        self.cached += cached
        trained = self.done - self.cached
        rate = trained / (time.perf_counter() - self.started)
        last = f"{cell.config.norm} lr={cell.config.lr:g}: {cell.status} {cell.final_accuracy:.3f}"
        line = f"cells {self.done}/{self.total} ({self.cached} from disk, {rate:.2f} trained/s)  last: {last}"
        sys.stderr.write("\r" + line[:LINE_WIDTH].ljust(LINE_WIDTH))
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False
