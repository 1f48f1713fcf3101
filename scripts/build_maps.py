"""Build the trainability maps that ship with the app: ``assets/maps/<name>.json``.

    python -m scripts.build_maps                      # every shipped map
    python -m scripts.build_maps --only ioffe-fig1 --steps 1000 --lr 9 --other 9

Each map is ``bnviz.reproduce.map.named_map(name, ...)`` trained cell by cell on every core
(``bnviz.reproduce.cells``; cells are kept in ``--cache``, so a rebuild trains only what
changed) and written as small per-cell summaries (``MapData``: accuracy, divergence step,
steps to the threshold, end saturation, the gradient ratio at initialization; a few tens
of KB), so a class sees the maps without training anything. The claims checked on each
map are printed. The files record their grids and base config: what a map shows is what
its file says, whatever the defaults here become.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bnviz.reproduce.cells import run_cells
from bnviz.reproduce.map import MAP_NAMES, named_map
from bnviz.reproduce.map_claims import check_map
from bnviz.reproduce.map_data import SHIPPED_DIR, MapData

ROOT = Path(__file__).resolve().parent.parent

# What ships (the defaults below): ioffe-fig1 at the CLI's default grid, 9 x 9 x 2 cells of 1,000
# steps; the depth maps smaller and shorter (a depth-20 cell costs ~7 of a depth-3 one): 4 depths
# (2, 8, 14, 20) x 6 learning rates x 2 norms of 300 steps (2 epochs of the bundled MNIST's 8,000
# images at batch 60), built on a shared, busy 2-core machine.
DEFAULTS = {"ioffe-fig1": dict(steps=1000, lr_count=9, other_count=9),
            "deep-sigmoid": dict(steps=300, lr_count=6, other_count=4),
            "deep-relu": dict(steps=300, lr_count=6, other_count=4)}


def main() -> int:
    parser = argparse.ArgumentParser(description="Build the maps shipped in assets/maps/.")
    parser.add_argument("--only", choices=MAP_NAMES, action="append", help="build only this map (repeatable)")
    parser.add_argument("--steps", type=int, help="steps per cell (default: per map, see DEFAULTS)")
    parser.add_argument("--lr", type=int, help="learning rates on the grid")
    parser.add_argument("--other", type=int, help="values of the other axis (init sigma or depth)")
    parser.add_argument("--cache", type=Path, default=ROOT / "maps" / "cells", help="cell folder (default maps/cells)")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help=f"where the maps go (default {SHIPPED_DIR})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or MAP_NAMES:
        options = dict(DEFAULTS[name])
        for key, value in (("steps", args.steps), ("lr_count", args.lr), ("other_count", args.other)):
            if value is not None:
                options[key] = value
        spec = named_map(name, **options)
        started = time.perf_counter()
        cells = run_cells(spec.configs(), cache_dir=args.cache)
        data = MapData.from_cells(spec, cells)
        path = args.out / f"{name}.json"
        data.write(path)
        print(f"{name}: {spec.cell_count} cells, {time.perf_counter() - started:.0f} s; wrote {path} "
              f"({path.stat().st_size / 1024:.0f} KB)")
        for claim in check_map(data):
            print(f"  {claim.line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
