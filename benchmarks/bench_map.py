"""Benchmark the trainability map's engine: cells per second on two cores against one, the
per-cell overhead, and the default 2 x 81-cell map's wall time.

    python -m benchmarks.bench_map [--cells 8] [--rounds 2] [--skip-map] [--cache maps/cells]

1. Cells per second: the same cells (1,000-step cells of the ioffe-fig1 map that do not
   diverge, so each costs a full run) on one core (joblib's n_jobs=1: in this process, one
   after the other) and on two (joblib's loky, two worker processes), taken A B A B in one
   run, on workers already started (their start is timed apart, below).
2. Per-cell overhead: on the started workers, the worker time not spent inside a cell's
   run, ``(workers x wall - sum of cell times) / cells``,
   against a cell's own time (its ``Cell.seconds``: the Trainer from start to end). Starting
   the workers (import torch, load the data) is timed apart: a map pays it once.
3. The default map (``named_map("ioffe-fig1")``: 9 x 9 x {no BN, BN}, 1,000 steps a cell) on
   both cores, from scratch, into ``--cache`` (so ``python -m scripts.build_maps`` can reuse it).
Prints numbers and the load average beside them; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bnviz.reproduce.cells import default_jobs, run_cells
from bnviz.reproduce.map import named_map


def bench_cells(count: int, rounds: int) -> None:
    spec = named_map("ioffe-fig1")
    base = spec.base
    # Rates that train without diverging at the preset's init, both norms: every cell is a full 1,000 steps.
    rates = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
    configs = [base.replace(norm=norm, lr=lr, seed=seed) for seed in range(100)
               for norm in ("none", "batchnorm") for lr in rates][:count]
    seen = 0

    def fresh(round_index: int):
        nonlocal seen
        seen += 1
        return [config.replace(seed=config.seed + 1000 * seen) for config in configs]  # new keys: nothing cached

    workers = default_jobs()
    print(f"cells: {count} x {base.steps:,} steps (ioffe-fig1 network); {workers} cores; load average "
          f"{os.getloadavg()[0]:.2f}")
    one, two = [], []
    for r in range(rounds):
        started = time.perf_counter()
        cells1 = run_cells(fresh(r), backend="sequential")
        one.append(time.perf_counter() - started)
        started = time.perf_counter()
        cells2 = run_cells(fresh(r), backend="loky", n_jobs=2)
        two.append(time.perf_counter() - started)
        statuses = {c.status for c in cells1 + cells2}
        overhead = (2 * two[-1] - sum(c.seconds for c in cells2)) / count
        cell_time = statistics.median(c.seconds for c in cells2)
        print(f"round {r + 1}: one core {count / one[-1]:.3f} cells/s ({one[-1]:.1f} s), two cores "
              f"{count / two[-1]:.3f} cells/s ({two[-1]:.1f} s): {one[-1] / two[-1]:.2f}x; statuses {sorted(statuses)}; "
              f"two-core worker time outside a cell's run {overhead * 1000:.0f} ms a cell = "
              f"{overhead / cell_time:.1%} of a cell ({cell_time:.2f} s median); "
              f"load average {os.getloadavg()[0]:.2f}")
    print(f"two cores vs one, all rounds: {sum(one) / sum(two):.2f}x (median round "
          f"{statistics.median(o / t for o, t in zip(one, two)):.2f}x)")


def bench_start() -> None:
    """Time loky's workers from nothing to a first cell's result, against the cell alone."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # the next call starts new worker processes
    spec = named_map("ioffe-fig1", steps=1)
    configs = [spec.base.replace(seed=500 + i) for i in range(2)]
    started = time.perf_counter()
    cells = run_cells(configs, backend="loky", n_jobs=2)
    wall = time.perf_counter() - started
    print(f"starting two workers and a 1-step cell in each: {wall:.2f} s (the cells' own time "
          f"{max(c.seconds for c in cells):.2f} s): paid once per map")


def bench_map(cache: Path | None) -> None:
    spec = named_map("ioffe-fig1")
    folder = cache or Path(tempfile.mkdtemp(prefix="bnviz-map-"))
    done = []
    print(f"default map: {spec.cell_count} cells ({' x '.join(map(str, spec.shape))}), {spec.base.steps:,} steps each, "
          f"cache {folder}; load average {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    cells = run_cells(spec.configs(), cache_dir=folder, on_cell=lambda cell, cached: done.append(cached))
    wall = time.perf_counter() - started
    trained = done.count(False)
    print(f"default map: {wall:.1f} s wall for {trained} cells trained ({len(done) - trained} from the cache), "
          f"{sum(c.seconds for c in cells):.0f} s of cell time; load average {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    run_cells(spec.configs(), cache_dir=folder)
    print(f"the same map again (every cell from disk): {time.perf_counter() - started:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8, help="cells per round (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (default 2)")
    parser.add_argument("--skip-map", action="store_true", help="skip the default map")
    parser.add_argument("--cache", type=Path, help="the default map's cell folder (default: a temporary one)")
    args = parser.parse_args()
    bench_start()
    bench_cells(args.cells, args.rounds)
    if not args.skip_map:
        bench_map(args.cache)


if __name__ == "__main__":
    main()
