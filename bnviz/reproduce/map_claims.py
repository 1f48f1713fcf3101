"""Claims checked on a trainability map: "much higher learning rates, less careful initialization".

Each claim is a pure function of a ``MapData`` (arrays, no runs), ``claim(data) -> (verdict,
line)``; its docstring is its definition and goes into the report. A line states our
numbers and ends in a verdict:
- "reproduced": the effect is there and larger than a single seed's noise (the rule is in
  each definition);
- "within noise": BN is ahead, but by less than that;
- "not reproduced": no effect, the other way, or nothing to compare.
Every cell is one seed's run, so a boundary between training and not training can move a
grid step from one seed to another, and a cell near it can fall either way: a claim about
a boundary counts the cells beyond it and needs enough of them (a one-sided sign test,
p < 0.05) to say "reproduced"; the largest values are reported, not judged.

The claims compare the varied values "batchnorm" and "none"; a map that lacks either has
no claims (``claims_for`` returns none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bnviz.reproduce import norm_claims
from bnviz.reproduce.map_data import MapData

Verdict = str  # "reproduced", "within noise" or "not reproduced"
REPRODUCED, WITHIN_NOISE, NOT_REPRODUCED = "reproduced", "within noise", "not reproduced"
SIGN_TEST_LEVEL = 0.05  # one-sided exact sign test over the paired cells where exactly one of the pair trains
MARGIN = 0.03  # "ends higher": by more than 3 points, ~4 standard errors of a 2,000-image accuracy near 0.9
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


def ends_higher(data: MapData) -> tuple[Verdict, str]:
    """BN ends at a higher test accuracy, whatever the threshold: over the paired cells, BN ends
    more than 0.03 higher (about four standard errors of an accuracy measured on 2,000 images)
    in enough more cells than it ends 0.03 lower that a one-sided exact sign test gives p < 0.05."""
    index_bn, index_plain = data.index(BN), data.index(PLAIN)
    difference = data.accuracy[index_bn] - data.accuracy[index_plain]
    wins, losses = int((difference > MARGIN).sum()), int((difference < -MARGIN).sum())
    p = sign_test(wins, losses)
    verdict = REPRODUCED if wins > losses and p < SIGN_TEST_LEVEL else WITHIN_NOISE if wins > losses else NOT_REPRODUCED
    return verdict, (f"BN ends higher (by more than {MARGIN:.2f}) in {wins} of {difference.size} paired cells, lower in "
                     f"{losses} (sign test p = {p:.2g}): {verdict}")


def _axis_reach(data: MapData, trains: np.ndarray, axis: str) -> list[int]:
    """Indices along ``axis`` ("x" columns or "y" rows) at which at least one cell trains."""
    along = trains.any(axis=0) if axis == "x" else trains.any(axis=1)
    return [int(i) for i in np.flatnonzero(along)]


def _value(data: MapData, axis: str, index: int) -> str:
    values = (data.spec.x if axis == "x" else data.spec.y).values
    return f"{values[index]:g}" if isinstance(values[index], float) else str(values[index])


def _beyond_verdict(wins: int) -> tuple[Verdict, float]:
    """Cells where only BN trains, beyond where the net without BN trains at all: each is a pair
    that BN wins and none is lost, so p = 0.5 ** wins (one-sided sign test)."""
    p = sign_test(wins, 0)
    return (REPRODUCED if wins and p < SIGN_TEST_LEVEL else WITHIN_NOISE if wins else NOT_REPRODUCED), p


def higher_learning_rate(data: MapData) -> tuple[Verdict, str]:
    """BN trains at higher learning rates: above the largest learning rate at which the net
    without BN trains anywhere on the map, BN trains in enough cells that a one-sided sign test
    gives p < 0.05 (at least 5 cells). Counting cells, not just the largest rate, keeps one
    borderline cell (a seed's luck) from deciding the verdict."""
    bn, plain = _pair(data)
    reach_bn, reach_plain = _axis_reach(data, bn, "x"), _axis_reach(data, plain, "x")
    if not reach_bn:
        return NOT_REPRODUCED, f"largest learning rate that trains: BN trains nowhere on the map: {NOT_REPRODUCED}"
    top = max(reach_plain) if reach_plain else -1
    wins = int(bn[:, top + 1:].sum())
    verdict, p = _beyond_verdict(wins)
    best = max(reach_bn)
    edge = " (the grid's edge: at least)" if best == len(data.spec.x.values) - 1 else ""
    counts = "; ".join(f"{_value(data, 'x', c)} in {int(bn[:, c].sum())} of {bn.shape[0]}"
                       for c in range(best, max(top, best - 3), -1))  # up to 3 columns, none at no BN's best
    plain_text = _value(data, "x", top) if reach_plain else "none"
    beyond = f"above {_value(data, 'x', top)}" if reach_plain else "anywhere"
    return verdict, (f"largest learning rate that trains: {_value(data, 'x', best)}{edge} with BN (cells that train at "
                     f"{counts}) vs {plain_text} without; {beyond} BN trains in {wins} cells, no BN in none "
                     f"(sign test p = {p:.2g}): {verdict}")


def _range_claim(data: MapData, what: str) -> tuple[Verdict, str]:
    """Rows (values of the y setting) with at least one learning rate that trains, BN vs no BN;
    the verdict counts BN's training cells in the rows where no BN trains at no rate."""
    bn, plain = _pair(data)
    reach_bn, reach_plain = _axis_reach(data, bn, "y"), _axis_reach(data, plain, "y")
    outside = np.ones(bn.shape[0], dtype=bool)
    outside[reach_plain] = False
    wins = int(bn[outside].sum())
    verdict, p = _beyond_verdict(wins)

    def span(reach: list[int]) -> str:
        if not reach:
            return "none"
        low, high = _value(data, "y", min(reach)), _value(data, "y", max(reach))
        return f"{len(reach)} of {len(data.spec.y.values)} ({low} to {high})"

    return verdict, (f"{what} at which some learning rate trains: {span(reach_bn)} with BN vs {span(reach_plain)} "
                     f"without; where the net without BN never trains, BN trains in {wins} cells (sign test p = {p:.2g}): {verdict}")


def wider_init_range(data: MapData) -> tuple[Verdict, str]:
    """BN is less sensitive to the initial weights' scale: at the init sigma values where the net
    without BN trains at no learning rate on the map, BN trains in enough cells that a one-sided
    sign test gives p < 0.05 (at least 5)."""
    return _range_claim(data, "init sigma values")


def deeper(data: MapData) -> tuple[Verdict, str]:
    """BN trains deeper nets: at the depths where the net without BN trains at no learning rate
    on the map, BN trains in enough cells that a one-sided sign test gives p < 0.05 (at least 5)."""
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
    """The claims that make sense for this map's axes (the norms' maps: bnviz.reproduce.norm_claims)."""
    special = norm_claims.claims_for(data)
    if special:
        return special
    if not {BN, PLAIN} <= set(data.spec.vary.values) or data.spec.vary.name != "norm":
        return ()
    claims: list[Claim] = [trains_in_more_cells, ends_higher]
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
