"""The numbers claims compare: each a pure function of one run file's content (read_run).

A measure reduces one run to one number; a claim (``bnviz.reproduce.claims``) compares the
numbers of paired runs seed by seed. A measure that cannot be computed (a run that recorded
nothing) is NaN, and a claim with a NaN never passes.
"""

from __future__ import annotations

import math

import numpy as np

from bnviz.snapshot import CHANCE

FINAL_SHARE = 0.10  # "final" accuracy: the mean of the evaluations in the last 10% of the steps (>= 1)
DRIFT_SKIP = 0.05  # the first 5% of steps are the initial transient, not drift
SLOW_WINDOW = 0.05  # the slow component: a moving mean over 5% of the run (of its columns after the skip)
MIN_SLOW_COLUMNS = 3  # a window narrower than this separates nothing
COLLAPSE_DROP = 0.10  # fastai: a move of the non-zero fraction this large (of all activations) counts


def accuracy_series(run: dict) -> tuple[np.ndarray, np.ndarray]:
    """(steps, held-out accuracy) as evaluated. A run that diverged ended with non-finite
    weights, whatever it measured before: from its last evaluation on it counts as chance."""
    steps = np.asarray(run["test_accuracy"]["steps"], dtype=float)
    values = np.asarray(run["test_accuracy"]["values"], dtype=float)
    if run["status"] == "diverged":
        steps = np.r_[steps, max(float(run["config"]["steps"]), steps[-1] + 1 if len(steps) else 1.0)]
        values = np.r_[values, CHANCE]
    return steps, values


def tail_accuracy(run: dict) -> float:
    """Mean held-out accuracy over the evaluations in the last FINAL_SHARE of the steps (at
    least the last one): one evaluation on 2,000 images has a standard error of ~0.005."""
    steps, values = accuracy_series(run)
    if not len(values):
        return math.nan
    if run["status"] == "diverged":
        return CHANCE
    last = values[steps >= steps[-1] - FINAL_SHARE * run["config"]["steps"]]
    return float(last.mean())


def mean_accuracy(run: dict) -> float:
    """Area under the held-out accuracy curve divided by the run's length: the accuracy
    averaged over training (trapezoids between evaluations, accuracy at step 0 taken as
    chance). A net that trains faster has the larger area, whatever the final values."""
    steps, values = accuracy_series(run)
    if not len(values):
        return math.nan
    steps, values = np.r_[0.0, steps], np.r_[CHANCE, values]
    return float(np.trapezoid(values, steps) / steps[-1]) if steps[-1] > 0 else math.nan


def first_step_reaching(run: dict, target: float) -> float:
    """The first evaluated step at which held-out accuracy is at least ``target`` (NaN if never)."""
    steps, values = accuracy_series(run)
    reached = np.flatnonzero(values >= target) if math.isfinite(target) else []
    return float(steps[reached[0]]) if len(reached) else math.nan


def slow_and_fast(series: np.ndarray) -> tuple[float, float]:
    """(drift, noise) of a series of equally spaced columns: the slow component is its moving
    mean over SLOW_WINDOW of the columns, the fast one what is left (per-batch noise).
    drift is the slow component's standard deviation over time, less what the noise alone
    leaves in a moving mean (variance noise^2 / window): a series of pure noise has a drift
    near 0, however large its noise."""
    series = np.asarray(series, dtype=float)
    window = max(MIN_SLOW_COLUMNS, round(SLOW_WINDOW * len(series)))
    if len(series) < 2 * window or not np.isfinite(series).all():
        return math.nan, math.nan
    slow = np.convolve(series, np.ones(window) / window, mode="valid")  # (columns - window + 1,)
    centre = window // 2
    fast = series[centre:centre + len(slow)] - slow
    noise_var = float(np.var(fast)) / (1 - 1 / window)  # the residual of a moving mean keeps (1 - 1/w) of it
    excess = float(np.var(slow)) - noise_var / window
    return math.sqrt(max(excess, 0.0)), math.sqrt(noise_var)


def unit_drift(run: dict) -> dict[str, tuple[float, float]]:
    """(drift, noise) of the last hidden layer's typical unit: its median (p50) and its
    spread (p85 - p15) within the mini-batch, after the first DRIFT_SKIP of the steps."""
    unit = run["layers"][-1]["unit_percentiles"]
    after = np.asarray(run["steps"]) > DRIFT_SKIP * run["config"]["steps"]
    return {"median": slow_and_fast(np.asarray(unit["p50"])[after]),
            "spread": slow_and_fast((np.asarray(unit["p85"]) - np.asarray(unit["p15"]))[after])}


def collapses(fraction: np.ndarray, drop: float = COLLAPSE_DROP) -> tuple[int, int]:
    """(collapses, complete cycles) of a fraction over time. A collapse: from its lowest point
    the fraction rises more than ``drop``, then falls more than ``drop`` below the peak. A
    complete cycle: a collapse followed by a recovery, a rise of more than ``drop`` above the
    new low (which is also the next cycle's rise). A fall that never recovers is a collapse,
    not a cycle."""
    falls = cycles = 0
    state = "rising"
    low = high = None
    for value in fraction[np.isfinite(fraction)]:
        if low is None:
            low = high = value
            continue
        if state == "rising":
            high = max(high, value)
            if value < high - drop and high - low > drop:  # risen, now collapsed
                falls, state, low = falls + 1, "falling", value
            elif value < low:
                low = high = value
        else:
            low = min(low, value)
            if value > low + drop:  # recovered: one complete cycle, and the rise of the next
                cycles += 1
                state, high = "rising", value
    return falls, cycles


def collapse_cycles(fraction: np.ndarray, drop: float = COLLAPSE_DROP) -> int:
    """Complete rise-collapse-recovery cycles (``collapses``)."""
    return collapses(fraction, drop)[1]


def landscape_median(run: dict, key: str) -> float:
    values = np.asarray(run["landscape"][key], dtype=float) if "landscape" in run else np.zeros(0)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan
