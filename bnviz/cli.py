"""The command line: list the presets, train one run headless, or sweep one setting.

    python -m bnviz presets
    python -m bnviz run --preset ioffe-fig1 --set norm=batchnorm --steps 2000 --out run.json
    python -m bnviz sweep --preset noisy-bn --vary norm=none,batchnorm,noisy-batchnorm --out runs/

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and
its handler; adding one is a function and a line in ``build_parser``. Usage errors (an
unknown preset, setting or value) are one line on stderr and exit code 2, never a traceback.
Exit codes: 0 finished, 2 usage error, 3 a run diverged or failed, 130 stopped with Ctrl-C
(what was recorded until then is still written).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from bnviz.config import RunConfig
from bnviz.presets import DEFAULT_PRESET, PRESETS, get_preset
from bnviz.reproduce import cli as reproduce_cli
from bnviz.reproduce import map_cli
from bnviz.runfile import write_run
from bnviz.snapshot import Snapshot, final_accuracy
from bnviz.terminal import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, LINE_WIDTH, parse_settings

POLL_SECONDS = 0.25  # the progress line redraws about 4 times a second
BAR_WIDTH = 24  # characters of the progress bar; the whole line fits 100 columns


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # argparse has already printed usage and the error (or --help)
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    try:
        return args.handler(args)
    except (ValueError, OSError) as error:  # bad settings, data or output path: words, not a traceback
        print(f"bnviz: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before training started (while torch or the data loads): nothing to save
        print("\nbnviz: interrupted", file=sys.stderr)
        return EXIT_STOPPED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bnviz", description="Batch Normalization visualizer: headless runs.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_presets(subparsers)
    _add_run(subparsers)
    _add_sweep(subparsers)
    reproduce_cli.add_parser(subparsers)
    map_cli.add_parser(subparsers)
    return parser


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """--preset, --set, --steps, --data-dir: shared by every subcommand that trains."""
    parser.add_argument("--preset", default=DEFAULT_PRESET, help=f"starting point (default {DEFAULT_PRESET}); see `presets`")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change one setting (repeatable)")
    parser.add_argument("--steps", type=int, help="training steps (same as --set steps=N)")
    parser.add_argument("--data-dir", help="folder of MNIST-style IDX files instead of the bundled subset")


def config_from(args: argparse.Namespace) -> RunConfig:
    """The preset's config with --set and --steps applied; ValueError names the bad setting."""
    values = {**get_preset(args.preset).config.to_dict(), **parse_settings(args.set)}
    if args.steps is not None:
        values["steps"] = args.steps
    return RunConfig.from_dict(values)


def check_data(config: RunConfig, data_dir: str | None) -> None:
    """Load the data now, so a bad --data-dir is a usage error; the trainer reuses the cached copy."""
    from bnviz.data import load_dataset  # imports torch: not needed by `presets` or --help

    load_dataset(config.dataset, data_dir)


def train(config: RunConfig, data_dir: str | None = None, label: str = "") -> Snapshot:
    """Train headless with a progress line on stderr; Ctrl-C stops the run and returns what it recorded."""
    from bnviz.trainer import Trainer  # imports torch: not needed by `presets` or --help

    # Poll with sleep, not join(timeout): on Python 3.11 a Ctrl-C that interrupts join() can
    # mark a running thread as ended (the bpo-45274 fix), and the run would look done early.
    trainer = Trainer(config, data_dir).start()
    try:
        while not trainer.snapshot().done:
            _show_progress(trainer.snapshot(), label)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        trainer.stop()  # ends after the current step and publishes what it recorded
        while not trainer.snapshot().done:
            time.sleep(POLL_SECONDS / 10)
    trainer.join()
    snapshot = trainer.snapshot()
    _show_progress(snapshot, label)
    print(file=sys.stderr)
    return snapshot


def _show_progress(snapshot: Snapshot, label: str) -> None:
    total = snapshot.config.steps
    filled = BAR_WIDTH * snapshot.step // total
    loss, accuracy = snapshot.column("loss"), snapshot.accuracy
    parts = [label, f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]", f"{snapshot.step}/{total}",
             f"{snapshot.steps_per_second:.0f} steps/s", f"loss {loss[-1]:.4g}" if len(loss) else "loss -",
             f"test acc {accuracy[-1]:.3f}" if len(accuracy) else "test acc -", snapshot.status]
    sys.stderr.write("\r" + "  ".join(part for part in parts if part).ljust(LINE_WIDTH))
    sys.stderr.flush()


def exit_code(snapshots: list[Snapshot]) -> int:
    statuses = {snapshot.status for snapshot in snapshots}
    if "stopped" in statuses:
        return EXIT_STOPPED
    return EXIT_FAILED if statuses & {"diverged", "error"} else EXIT_OK


def final_loss(snapshot: Snapshot) -> float:
    loss = snapshot.column("loss")
    return float(loss[-1]) if len(loss) else float("nan")


def last_layer_saturation(snapshot: Snapshot) -> float:
    """Mean over all recorded steps of the last hidden layer's saturated (or dead) fraction."""
    saturation, count = snapshot.column("saturation"), snapshot.column("count")
    if not len(saturation):
        return float("nan")
    finite = np.isfinite(saturation[:, -1])  # NaN: undefined (linear) or a non-finite step
    if not finite.any():
        return float("nan")
    return float(np.average(saturation[finite, -1], weights=count[finite]))  # weights: steps per column


def _number(value: float, spec: str) -> str:
    return format(value, spec) if np.isfinite(value) else "-"


def _add_presets(subparsers) -> None:
    parser = subparsers.add_parser("presets", help="list the presets and their published results")
    parser.set_defaults(handler=_presets)


def _presets(args: argparse.Namespace) -> int:
    def wrapped(label: str, text: str) -> str:
        return textwrap.fill(f"{label}{text}", width=LINE_WIDTH, initial_indent="  ", subsequent_indent="    ")

    for preset in PRESETS.values():
        print(preset.name)
        print(wrapped("", preset.summary))
        print(wrapped("published: ", preset.published))
        print(wrapped("source: ", preset.source))
        print(wrapped("compare: ", f"python -m bnviz sweep --preset {preset.name} --vary norm={','.join(preset.compare)} --out runs"))
        print()
    return EXIT_OK


def _add_run(subparsers) -> None:
    parser = subparsers.add_parser("run", help="train one run headless and write its run file")
    add_training_arguments(parser)
    parser.add_argument("--out", required=True, help="run file to write (JSON, see docs/run-format.md)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    config = config_from(args)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: the folder {out.parent} does not exist")
    check_data(config, args.data_dir)
    snapshot = train(config, args.data_dir)
    write_run(snapshot, out)
    print(f"{snapshot.message}; loss {_number(final_loss(snapshot), '.4g')}, "
          f"test accuracy {_number(final_accuracy(snapshot.status, snapshot.accuracy), '.4f')}; wrote {out}")
    return exit_code([snapshot])


def _add_sweep(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="run a preset once per value of one setting (paired: same seed)")
    add_training_arguments(parser)
    parser.add_argument("--vary", required=True, metavar="KEY=V1,V2,...", help="the setting to vary and its values")
    parser.add_argument("--out", required=True, help="folder for the run files (created if missing)")
    parser.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    key, sep, values = args.vary.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ValueError(f"--vary expects KEY=V1,V2,... (got {args.vary!r})")
    base = config_from(args)
    # Everything but `key` is identical, seed included: same data order and initial weights.
    configs = [RunConfig.from_dict({**base.to_dict(), key: value.strip()}) for value in values.split(",")]
    for config in configs:
        check_data(config, args.data_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for config in configs:
        value = getattr(config, key)
        snapshot = train(config, args.data_dir, label=f"{key}={value}")
        write_run(snapshot, out / f"{args.preset}-{key}-{value}.json")
        results.append((value, snapshot))
        if snapshot.status == "stopped":  # Ctrl-C: keep this run's file, skip the rest
            break
    _print_table(key, results)
    return exit_code([snapshot for _, snapshot in results])


def _print_table(key: str, results: list[tuple[object, Snapshot]]) -> None:
    header = (key, "status", "final loss", "test accuracy", "last-layer saturation (mean)")
    rows = [(str(value), snapshot.status, _number(final_loss(snapshot), ".4g"), _number(final_accuracy(snapshot.status, snapshot.accuracy), ".4f"),
             _number(last_layer_saturation(snapshot), ".3f")) for value, snapshot in results]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
