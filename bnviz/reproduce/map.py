"""The trainability map: a grid of short runs over one or two settings, paired across norms.

"BN lets a network train at much higher learning rates and makes it far less sensitive to
its initialization" (Ioffe & Szegedy 2015; Bjorck et al. 2018) is a claim about a region
of settings. A map trains one cell (``bnviz.reproduce.cells``) per point of a grid, once
per value of a varied setting (``norm``): every cell of a pair is the same config up to
that setting, seed included, so the same data order and the same initial weights.

    spec = named_map("ioffe-fig1", steps=1000)        # or named_map("deep-relu"), or MapSpec(...) of your own
    data = MapData.from_cells(spec, run_cells(spec.configs(), cache_dir="maps/cells"))
    data.accuracy  # (varied values, rows, columns): final held-out accuracy, chance where diverged

A finished map is arrays: ``bnviz.reproduce.map_data.MapData``. Grids:
``parse_axis("lr=0.01:10:9")`` is 9 values evenly spaced on a log scale (real-valued
settings) or a linear one (whole-number settings, as depth); ``lr=0.01,0.1,1`` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bnviz.config import RunConfig, field_kind, field_names
from bnviz.presets import get_preset

EVALUATIONS = 20  # held-out evaluations per cell: steps-to-threshold to 5% of the run, and evaluating
#                   costs ~10% of a 1,000-step cell (100 evaluations, as the reproductions do, cost ~half)
THRESHOLD = 0.90  # a cell "trains" if it ends at or above this held-out accuracy without diverging
MAX_CELLS = 10_000  # a map larger than this is a typo, not an experiment (each cell is a run)


@dataclass(frozen=True)
class Axis:
    """One setting and the values a map takes it through."""

    name: str
    values: tuple

    @property
    def log(self) -> bool:
        """Real-valued settings are drawn on a log axis; whole numbers and words on a linear one."""
        return field_kind(self.name) == "float"

    def to_dict(self) -> dict:
        return {"name": self.name, "values": list(self.values)}

    @classmethod
    def from_dict(cls, values: dict) -> Axis:
        return checked_axis(str(values["name"]), list(values["values"]))


def parse_axis(text: str) -> Axis:
    """``KEY=LO:HI:N`` (N values, log-spaced for real settings, linear for whole numbers) or ``KEY=V1,V2,...``."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ValueError(f"a grid is KEY=LO:HI:N or KEY=V1,V2,... (got {text!r})")
    if name not in field_names():
        raise ValueError(f"unknown setting {name!r}; known settings: {', '.join(field_names())}")
    if ":" not in spec:
        return checked_axis(name, [part.strip() for part in spec.split(",") if part.strip()])
    parts = spec.split(":")
    if len(parts) != 3 or field_kind(name) == "str":
        raise ValueError(f"a range is LO:HI:N for a numeric setting (got {name}={spec!r})")
    try:
        low, high, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"a range is LO:HI:N with numbers and a whole N (got {name}={spec!r})") from None
    if not 1 <= count <= 1000:
        raise ValueError(f"N in {name}={spec} must be between 1 and 1000")
    if field_kind(name) == "int":
        values = sorted({int(round(v)) for v in np.linspace(low, high, count)})
    else:
        if not (low > 0 and high > 0):
            raise ValueError(f"a log range needs positive ends (got {name}={spec})")
        values = [float(f"{v:.4g}") for v in np.geomspace(low, high, count)]  # 4 digits: readable labels
    return checked_axis(name, values)


def checked_axis(name: str, values: list) -> Axis:
    """An Axis whose every value is valid for its setting (RunConfig's own coercion and limits)."""
    if not values:
        raise ValueError(f"{name}: a grid needs at least one value")
    typed = [getattr(RunConfig.from_dict({name: value}), name) for value in values]
    if len(set(typed)) != len(typed):
        raise ValueError(f"{name}: a grid's values must differ (got {', '.join(map(str, typed))})")
    return Axis(name, tuple(typed))


@dataclass(frozen=True)
class MapSpec:
    """What to map: a base config, a grid of one or two axes, and the setting varied over it."""

    name: str
    base: RunConfig
    x: Axis  # columns
    y: Axis | None  # rows; None for a one-axis map (a sweep)
    vary: Axis = Axis("norm", ("none", "batchnorm"))
    threshold: float = THRESHOLD
    preset: str = ""  # the preset the base came from, if any: the app shows the map with it
    note: str = ""  # one line: what the map is for

    def __post_init__(self):
        names = [self.x.name, self.vary.name] + ([self.y.name] if self.y else [])
        if len(set(names)) != len(names):
            raise ValueError(f"a map's axes and varied setting must differ (got {', '.join(names)})")
        if self.cell_count > MAX_CELLS:
            raise ValueError(f"{self.cell_count:,} cells is more than a map may have ({MAX_CELLS:,})")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be an accuracy in (0, 1] (got {self.threshold})")
        for value in self.vary.values:  # a config per varied value: a bad combination fails here, not in a worker
            self.config(value, self.x.values[0], self.rows[0])

    @property
    def rows(self) -> tuple:
        return self.y.values if self.y else (None,)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(varied values, rows, columns)"""
        return len(self.vary.values), len(self.rows), len(self.x.values)

    @property
    def cell_count(self) -> int:
        return math.prod(self.shape)

    def config(self, vary_value, x_value, y_value=None) -> RunConfig:
        changes = {self.vary.name: vary_value, self.x.name: x_value}
        if self.y is not None:
            changes[self.y.name] = y_value
        return self.base.replace(**changes)

    def configs(self) -> list[RunConfig]:
        """Every cell's config, varied value first, then rows, then columns (``np.reshape(shape)`` order)."""
        return [self.config(v, x, y) for v in self.vary.values for y in self.rows for x in self.x.values]

    def to_dict(self) -> dict:
        return {"name": self.name, "preset": self.preset, "note": self.note, "base": self.base.to_dict(),
                "x": self.x.to_dict(), "y": self.y.to_dict() if self.y else None, "vary": self.vary.to_dict(),
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, values: dict) -> MapSpec:
        return cls(name=str(values["name"]), base=RunConfig.from_dict(values["base"]), x=Axis.from_dict(values["x"]),
                   y=Axis.from_dict(values["y"]) if values.get("y") else None, vary=Axis.from_dict(values["vary"]),
                   threshold=float(values["threshold"]), preset=str(values.get("preset", "")),
                   note=str(values.get("note", "")))


def cell_base(config: RunConfig, steps: int) -> RunConfig:
    """A preset's config shortened to a map cell: ``steps`` steps, EVALUATIONS evaluations.
    Everything else (record_every included) stays, so a cell is the run the app shows."""
    return config.replace(steps=steps, eval_every=max(1, steps // EVALUATIONS))


def lr_grid(count: int = 9) -> Axis:
    return parse_axis(f"lr=0.01:100:{count}")  # 10,000x: from too slow to learn in 1,000 steps to RunConfig's limit


def sigma_grid(count: int = 9) -> Axis:
    return parse_axis(f"init_sigma=0.01:10:{count}")  # 1000x around the preset's 0.1: vanishing to saturated


def depth_grid(count: int = 10) -> Axis:
    return parse_axis(f"depth=2:20:{count}")  # 20 is RunConfig's limit


def named_map(name: str, steps: int = 1000, lr_count: int = 9, other_count: int = 9) -> MapSpec:
    """The maps bnviz ships (``MAP_NAMES``): the ioffe-fig1 lr x init sigma map, and the
    depth x lr maps of a deep sigmoid and a deep ReLU net."""
    if name == "ioffe-fig1":
        return MapSpec(name, cell_base(get_preset(name).config, steps), lr_grid(lr_count), sigma_grid(other_count),
                       preset=name, note="learning rate x Gaussian init sigma, the BN paper's Figure 1 network")
    if name in ("deep-sigmoid", "deep-relu"):
        base = cell_base(get_preset("deep-sigmoid").config, steps)
        note = "learning rate x depth, a sigmoid MLP with Gaussian init sigma 1"
        if name == "deep-relu":  # He init: the scale at which a plain ReLU net's signal neither grows nor fades
            base = base.replace(activation="relu", init="kaiming-normal")
            note = "learning rate x depth, a ReLU MLP with He (kaiming-normal) init"
        return MapSpec(name, base, lr_grid(lr_count), depth_grid(other_count), preset="deep-sigmoid", note=note)
    if name == "wu-he-batch":  # Wu & He 2018, Figure 1: error against batch size, BN vs GN vs LN
        return MapSpec(name, cell_base(get_preset(name).config, steps), parse_axis("batch_size=2,4,8,16,32,64"), None,
                       Axis("norm", ("batchnorm", "groupnorm", "layernorm")), preset=name,
                       note="batch size 2 to 64, a 3x100 ReLU MLP with BN, GroupNorm and LayerNorm")
    if name == "bn-regularizer":  # none, dropout, BN, BN + dropout on three seeds: the generalization gap
        return MapSpec(name, cell_base(get_preset(name).config, steps), parse_axis("dropout=0,0.5"),
                       parse_axis("seed=0,1,2"), preset=name,
                       note="dropout 0 and 0.5, with and without BN, three seeds: a net that overfits 8,000 images")
    raise ValueError(f"unknown map {name!r}; maps: {', '.join(MAP_NAMES)}")


MAP_NAMES = ("ioffe-fig1", "deep-sigmoid", "deep-relu", "wu-he-batch", "bn-regularizer")
STEPS = {"wu-he-batch": 1000, "bn-regularizer": 6000}  # steps per cell these maps are meant for (the CLI's default is 1000)
