"""Claims checked on a trainability map: "much higher learning rates, less careful initialization".

Each claim is a pure function of a ``MapData`` (arrays, no runs), ``claim(data) -> (verdict,
line)``; its docstring is its definition and goes into the report. A line states our
numbers and ends in a verdict:
- "reproduced": the effect is there and larger than a single seed's noise (the rule is in
  each definition);
- "within noise": BN is ahead, but by less than that;
- "not reproduced": no effect, the other way, or nothing to compare.
Every cell is one seed's run, so a boundary between training and not training can move a
grid step from one seed to another: a claim about where a boundary lies needs it to move
by at least ``MIN_GRID_STEPS`` grid steps before it counts.

The claims compare the varied values "batchnorm" and "none"; a map that lacks either has
no claims (``claims_for`` returns none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bnviz.reproduce.map_data import MapData

Verdict = str  # "reproduced", "within noise" or "not reproduced"
REPRODUCED, WITHIN_NOISE, NOT_REPRODUCED = "reproduced", "within noise", "not reproduced"
MIN_GRID_STEPS = 2  # a boundary must move this many grid steps: one step is within one seed's noise
SIGN_TEST_LEVEL = 0.05  # one-sided exact sign test over the paired cells where exactly one of the pair trains
GROWTH = 2.0  # BN's gradient at initialization "explodes with depth": its first/last-layer ratio at
#               least doubles from the shallowest net to the deepest (Yang et al. 2019 predict geometric growth)
BN, PLAIN = "batchnorm", "none"


@dataclass(frozen=True)
class MapClaim:
    name: str
    verdict: Verdict
    line: str
    definition: str

    @property
    def holds(self) -> bool:
        return self.verdict == REPRODUCED


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(at least ``wins`` of wins + losses fair coin flips)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def _pair(data: MapData) -> tuple[np.ndarray, np.ndarray]:
    trains = data.trains
    return trains[data.index(BN)], trains[data.index(PLAIN)]


def trains_in_more_cells(data: MapData) -> tuple[Verdict, str]:
    """BN trains in more of the map: a cell trains when it ends at or above the map's threshold
    accuracy without diverging. Pairs are the same cell with and without BN; among the pairs
    where exactly one trains, BN must be the one often enough that a one-sided exact sign test
    gives p < 0.05 (neighbouring cells are not independent, so p is on the optimistic side)."""
    bn, plain = _pair(data)
    wins, losses = int((bn & ~plain).sum()), int((plain & ~bn).sum())
    p = sign_test(wins, losses)
    verdict = REPRODUCED if wins > losses and p < SIGN_TEST_LEVEL else WITHIN_NOISE if wins > losses else NOT_REPRODUCED
    return verdict, (f"BN trains (>= {data.spec.threshold:.0%}) in {int(bn.sum())} of {bn.size} cells vs "
                     f"{int(plain.sum())} without (only with BN: {wins}, only without: {losses}; sign test "
                     f"p = {p:.2g}): {verdict}")


def _axis_reach(data: MapData, trains: np.ndarray, axis: str) -> list[int]:
    """Indices along ``axis`` ("x" columns or "y" rows) at which at least one cell trains."""
    along = trains.any(axis=0) if axis == "x" else trains.any(axis=1)
    return [int(i) for i in np.flatnonzero(along)]


def _value(data: MapData, axis: str, index: int) -> str:
    values = (data.spec.x if axis == "x" else data.spec.y).values
    return f"{values[index]:g}" if isinstance(values[index], float) else str(values[index])


def _compare_boundary(data: MapData, axis: str, largest: bool, what: str) -> tuple[Verdict, str]:
    """BN's furthest training value along ``axis`` vs no BN's, in grid steps."""
    bn, plain = _pair(data)
    reach_bn, reach_plain = _axis_reach(data, bn, axis), _axis_reach(data, plain, axis)
    pick = max if largest else min
    edge = len((data.spec.x if axis == "x" else data.spec.y).values) - 1 if largest else 0

    def show(reach: list[int]) -> str:
        if not reach:
            return "none"
        index = pick(reach)
        return _value(data, axis, index) + (" (the grid's edge: at least)" if index == edge else "")

    if not reach_bn:
        return NOT_REPRODUCED, f"{what}: BN trains nowhere on the map: {NOT_REPRODUCED}"
    if not reach_plain:
        steps = math.inf
    else:
        steps = (pick(reach_bn) - pick(reach_plain)) * (1 if largest else -1)
    verdict = REPRODUCED if steps >= MIN_GRID_STEPS else WITHIN_NOISE if steps > 0 else NOT_REPRODUCED
    shown = "no BN trains nowhere" if steps == math.inf else f"{steps} grid steps"
    return verdict, f"{what}: {show(reach_bn)} with BN vs {show(reach_plain)} without ({shown}): {verdict}"


def higher_learning_rate(data: MapData) -> tuple[Verdict, str]:
    """BN trains at much higher learning rates: the largest learning rate at which any cell
    trains is higher with BN by at least 2 steps of the grid (one step is within one seed's noise)."""
    return _compare_boundary(data, "x", True, "largest learning rate that trains")


def _range_claim(data: MapData, what: str) -> tuple[Verdict, str]:
    """How many rows (values of the y setting) have at least one learning rate that trains."""
    bn, plain = _pair(data)
    reach_bn, reach_plain = _axis_reach(data, bn, "y"), _axis_reach(data, plain, "y")
    extra = len(reach_bn) - len(reach_plain)
    verdict = REPRODUCED if extra >= MIN_GRID_STEPS else WITHIN_NOISE if extra > 0 else NOT_REPRODUCED

    def span(reach: list[int]) -> str:
        if not reach:
            return "none"
        low, high = _value(data, "y", min(reach)), _value(data, "y", max(reach))
        return f"{len(reach)} of {len(data.spec.y.values)} ({low} to {high})"

    return verdict, f"{what} at which some learning rate trains: {span(reach_bn)} with BN vs {span(reach_plain)} without: {verdict}"


def wider_init_range(data: MapData) -> tuple[Verdict, str]:
    """BN is less sensitive to the initial weights' scale: of the init sigma values on the map,
    BN trains (at some learning rate) at least 2 more than the net without BN does."""
    return _range_claim(data, "init sigma values")


def deeper(data: MapData) -> tuple[Verdict, str]:
    """BN trains deeper nets: of the depths on the map, BN trains (at some learning rate) at
    least 2 more than the net without BN does."""
    return _range_claim(data, "depths")


def exploding_gradients(data: MapData) -> tuple[Verdict, str]:
    """BN's limit (Yang et al. 2019): at initialization a deep BN net's gradient grows from the
    last layer to the first. Measured as the first hidden layer's weight-gradient norm over the
    last one's at the first step (the median over the learning-rate columns: they share their
    initial weights and first batch); the claim holds when BN's ratio at the deepest net is at
    least twice its ratio at the shallowest."""
    index = data.index(BN)
    ratios = np.nanmedian(data.grad_ratio[index], axis=1)  # (rows,)
    plain = np.nanmedian(data.grad_ratio[data.index(PLAIN)], axis=1)
    depths = data.spec.y.values
    low, high = ratios[0], ratios[-1]
    holds = math.isfinite(low) and math.isfinite(high) and high >= GROWTH * low
    verdict = REPRODUCED if holds else NOT_REPRODUCED
    return verdict, (f"first/last-layer gradient norm at initialization with BN: {low:.3g} at depth {depths[0]}, "
                     f"{high:.3g} at depth {depths[-1]} (without BN: {plain[0]:.3g}, {plain[-1]:.3g}): {verdict}")


Claim = Callable[[MapData], "tuple[Verdict, str]"]


def claims_for(data: MapData) -> tuple[Claim, ...]:
    """The claims that make sense for this map's axes."""
    if not {BN, PLAIN} <= set(data.spec.vary.values) or data.spec.vary.name != "norm":
        return ()
    claims: list[Claim] = [trains_in_more_cells]
    if data.spec.x.name == "lr":
        claims.append(higher_learning_rate)
    y = data.spec.y.name if data.spec.y else None
    if y == "init_sigma":
        claims.append(wider_init_range)
    if y == "depth":
        claims += [deeper, exploding_gradients]
    return tuple(claims)


def check_map(data: MapData) -> list[MapClaim]:
    """Every claim that applies to ``data``, checked on its arrays."""
    results = []
    for claim in claims_for(data):
        verdict, line = claim(data)
        results.append(MapClaim(claim.__name__, verdict, line, " ".join((claim.__doc__ or "").split())))
    return results
