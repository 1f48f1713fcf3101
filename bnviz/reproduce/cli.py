"""``python -m bnviz reproduce NAME [--steps N] [--seeds S] --out DIR``: a published experiment, end to end.

Trains the reproduction's paired runs on S seeds concurrently (bnviz.reproduce.run), writes
their run files, ``report.html`` and ``summary.txt`` into DIR, and prints the summary: one
line per claim with its 95% interval over the seeds, each ending in "reproduced", "not
reproduced (within noise)" or "not reproduced". Progress and the wall time go to stderr.
Exit codes: 0 when every run finished, whatever the claims say; 2 usage error; 3 a run
diverged or failed (the report is still written: a diverging run is a result too); 130
stopped with Ctrl-C (the report of what was recorded is written if every run had started).
"""

from __future__ import annotations

import argparse
import sys

from bnviz.style import NORM_LABELS
from bnviz.terminal import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, LINE_WIDTH, parse_settings


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Declare ``reproduce`` on a ``add_subparsers()`` object; the handler is ``main``."""
    from bnviz.reproduce.registry import DEFAULT_SEEDS, REPRODUCTIONS  # light: no torch, no plotly
    from bnviz.reproduce.run import PARALLEL

    parser = subparsers.add_parser("reproduce", help="reproduce a published experiment: paired runs, claims, report",
                                   description="Reproduce a published experiment end to end: paired runs, "
                                               "the claims checked on their data, an HTML report.")
    parser.add_argument("name", choices=list(REPRODUCTIONS), metavar="NAME", help=f"one of {', '.join(REPRODUCTIONS)}")
    parser.add_argument("--steps", type=int, help="training steps per run (default: the preset's, the published length)")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"paired seeds; each claim shows a 95%% interval over them (default {DEFAULT_SEEDS}; "
                             "one seed has no interval and reproduces nothing)")
    parser.add_argument("--out", required=True, help="folder for report.html, summary.txt and the run files (created if missing)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one setting of every run (repeatable), e.g. --set dataset=synthetic")
    parser.add_argument("--data-dir", help="folder of MNIST-style IDX files instead of the bundled subset")
    parser.add_argument("--parallel", choices=PARALLEL, default="process",
                        help="train the runs in separate processes (default: uses every core) or threads")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from bnviz.reproduce.run import run_reproduction

    progress = _ProgressLine(args.seeds)
    try:
        overrides = parse_settings(args.set)
        result = run_reproduction(args.name, steps=args.steps, out_dir=args.out, progress=progress,
                                  overrides=_typed(overrides), parallel=args.parallel, data_dir=args.data_dir,
                                  seeds=args.seeds)
    except (ValueError, OSError) as error:  # a bad setting, data folder or output path: words, not a traceback
        progress.end()
        print(f"bnviz: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        progress.end()
        print("bnviz: interrupted before every run had started; nothing to compare", file=sys.stderr)
        return EXIT_STOPPED
    progress.end()
    print(result.summary.read_text(encoding="utf-8"), end="")
    print(f"report: {result.report}  (training {len(result.all_runs)} runs, {len(result.seeds)} seeds, took "
          f"{result.train_seconds:.1f} s wall time on {result.workers} workers)", file=sys.stderr)
    if result.interrupted:
        return EXIT_STOPPED
    return EXIT_OK if result.completed else EXIT_FAILED


def _typed(overrides: dict[str, str]) -> dict:
    """--set values are text; RunConfig.from_dict knows each field's type."""
    from bnviz.config import RunConfig

    if not overrides:
        return {}
    parsed = RunConfig.from_dict(overrides)
    return {key: getattr(parsed, key) for key in overrides}


class _ProgressLine:
    """One line on stderr, redrawn in place: per norm, the steps done over all its seeds and
    how many of its runs have ended."""

    def __init__(self, seeds: int = 1):
        self.seeds = seeds  # runs per norm, started or not
        self.runs: dict[str, dict[int, tuple[int, int, str]]] = {}  # norm -> seed -> (step, steps, status)
        self.drawn = False

    def __call__(self, norm: str, seed: int, step: int, steps: int, status: str) -> None:
        self.runs.setdefault(norm, {})[seed] = (step, steps, status)
        sys.stderr.write("\r" + " | ".join(self._text(norm, seeds) for norm, seeds in self.runs.items()).ljust(LINE_WIDTH))
        sys.stderr.flush()
        self.drawn = True

    def _text(self, norm: str, seeds: dict[int, tuple[int, int, str]]) -> str:
        label = NORM_LABELS.get(norm, norm)
        if self.seeds == 1:
            (step, steps, status), = seeds.values()
            return f"{label} {step:,}/{steps:,} {status}"
        done = sum(step for step, _, _ in seeds.values())
        total = self.seeds * next(iter(seeds.values()))[1]  # every seed's run has the same steps
        ended = sum(status not in ("running", "paused") for _, _, status in seeds.values())
        return f"{label} {done:,}/{total:,} steps of {self.seeds} seeds, {ended} ended"

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False
