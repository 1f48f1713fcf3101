"""A finished trainability map as arrays: what map.json and the shipped maps hold.

``MapData`` is built from cells (``MapData.from_cells(spec, run_cells(spec.configs()))``)
or read from a map file; the report (``map_report``), the claims (``map_claims``) and the
app's map view read only these arrays, so a map drawn from a file and one just trained are
drawn by the same code. Every array is (varied values, rows, columns), in
``MapSpec.configs()`` order. Maps shipped with the app live in ``assets/maps/``
(``scripts/build_maps.py``). Nothing here imports torch: the web server reads maps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bnviz.reproduce.cells import Cell
from bnviz.reproduce.map import MAP_NAMES, MapSpec

FORMAT = "bnviz-map/1"
MAX_MAP_BYTES = 5 * 2**20  # a map file is tens of KB; refuse to parse anything far larger


@dataclass(frozen=True)
class MapData:
    """A finished map as arrays, each (varied values, rows, columns)."""

    spec: MapSpec
    accuracy: np.ndarray  # final held-out accuracy; CHANCE where the cell diverged
    diverged_step: np.ndarray  # the step whose loss was not finite; NaN where it did not diverge
    error: np.ndarray  # bool: the run failed (an exception, not divergence)
    steps_to: np.ndarray  # first evaluation step at or above the threshold; NaN if never
    saturation: np.ndarray  # mean over hidden layers of the end saturated (or dead) fraction
    last_saturation: np.ndarray  # the last hidden layer's
    grad_ratio: np.ndarray  # first hidden layer's weight-gradient norm / last one's, at the first step
    layer_saturation: tuple = field(default=(), compare=False)  # per cell, every layer's (ragged on depth maps)
    train_accuracy: np.ndarray | None = field(default=None, compare=False)  # the training batches' at the end; NaN if unknown

    @property
    def diverged(self) -> np.ndarray:
        return np.isfinite(self.diverged_step)

    @property
    def trains(self) -> np.ndarray:
        """bool: ended at or above the threshold, neither diverged nor failed."""
        return (self.accuracy >= self.spec.threshold) & ~self.diverged & ~self.error

    def index(self, vary_value) -> int:
        return self.spec.vary.values.index(vary_value)

    @classmethod
    def from_cells(cls, spec: MapSpec, cells: list[Cell]) -> MapData:
        if len(cells) != spec.cell_count:
            raise ValueError(f"expected {spec.cell_count} cells for {spec.name}, got {len(cells)}")

        def grid(values) -> np.ndarray:
            return np.asarray(values, dtype=np.float64).reshape(spec.shape)

        def ratio(cell: Cell) -> float:
            first, last = cell.grad_norms_start[0], cell.grad_norms_start[-1]
            return first / last if last > 0 else math.nan

        return cls(
            spec=spec,
            accuracy=grid([c.final_accuracy for c in cells]),
            diverged_step=grid([c.diverged_step if c.diverged else math.nan for c in cells]),
            error=grid([c.status == "error" for c in cells]).astype(bool),
            steps_to=grid([_none_nan(c.steps_to(spec.threshold)) for c in cells]),
            saturation=grid([_mean(c.saturation) for c in cells]),
            last_saturation=grid([c.saturation[-1] for c in cells]),
            grad_ratio=grid([ratio(c) for c in cells]),
            layer_saturation=tuple(tuple(round(v, 4) for v in c.saturation) for c in cells),
            train_accuracy=grid([c.train_accuracy[-1] if c.train_accuracy and not c.diverged else math.nan
                                 for c in cells]),
        )

    def to_dict(self) -> dict:
        """The map file: the spec and one record per cell, in ``spec.configs()`` order (rounded:
        a map file is shipped with the app and read by people)."""
        cells = []
        for i, (a, d, e, s, sat, last, g) in enumerate(zip(*(array.ravel().tolist() for array in (
                self.accuracy, self.diverged_step, self.error, self.steps_to, self.saturation, self.last_saturation,
                self.grad_ratio)))):
            cells.append({"accuracy": _round(a), "diverged_step": _int(d), "error": bool(e), "steps_to": _int(s),
                          "saturation": _round(sat), "last_saturation": _round(last), "grad_ratio": _round(g),
                          "layer_saturation": [_round(v) for v in self.layer_saturation[i]]
                          if self.layer_saturation else []})
            if self.train_accuracy is not None:
                cells[-1]["train_accuracy"] = _round(float(self.train_accuracy.ravel()[i]))
        return {"format": FORMAT, "spec": self.spec.to_dict(), "cells": cells}

    @classmethod
    def from_dict(cls, values: dict) -> MapData:
        """Strict: a map file is checked before anything reads it."""
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            raise ValueError(f"not a bnviz map (expected format {FORMAT!r})")
        spec = MapSpec.from_dict(values["spec"])
        cells = values["cells"]
        if not isinstance(cells, list) or len(cells) != spec.cell_count:
            raise ValueError(f"a map of shape {spec.shape} needs {spec.cell_count} cells")

        def grid(key: str) -> np.ndarray:
            return np.asarray([math.nan if c[key] is None else float(c[key]) for c in cells]).reshape(spec.shape)

        return cls(spec=spec, accuracy=grid("accuracy"), diverged_step=grid("diverged_step"),
                   error=np.asarray([bool(c["error"]) for c in cells]).reshape(spec.shape),
                   steps_to=grid("steps_to"), saturation=grid("saturation"), last_saturation=grid("last_saturation"),
                   grad_ratio=grid("grad_ratio"),
                   layer_saturation=tuple(tuple(math.nan if v is None else float(v) for v in c.get("layer_saturation", ()))
                                          for c in cells),
                   train_accuracy=np.asarray([math.nan if c.get("train_accuracy") is None else float(c["train_accuracy"])
                                              for c in cells]).reshape(spec.shape))

    def write(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":")), encoding="utf-8")

    @classmethod
    def read(cls, path) -> MapData:
        path = Path(path)
        if path.stat().st_size > MAX_MAP_BYTES:
            raise ValueError(f"{path.name} is too large for a map file")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path.name} is not a readable map file ({type(error).__name__}: {error})") from None


def _none_nan(value) -> float:
    return math.nan if value is None else float(value)


def _mean(values) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _round(value: float, digits: int = 4):
    return round(value, digits) if math.isfinite(value) else None


def _int(value: float):
    return int(value) if math.isfinite(value) else None


SHIPPED_DIR = Path(__file__).resolve().parents[2] / "assets" / "maps"  # not bnviz.data's: that one loads torch


def shipped_maps(folder=SHIPPED_DIR) -> tuple[list[MapData], list[str]]:
    """The maps in ``folder`` (shipped ones first in MAP_NAMES order), and a line per file that is not a map."""
    maps, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            maps.append(MapData.read(path))
        except (OSError, ValueError) as error:
            problems.append(f"{path.name}: {error}")
    order = {name: i for i, name in enumerate(MAP_NAMES)}
    return sorted(maps, key=lambda data: order.get(data.spec.name, len(order))), problems
