"""How strong a claim's evidence is: paired differences across seeds, an interval, a verdict.

A statistical claim is checked on several seeds. Each seed trains the paired runs (same
seed: same data order and initial weights, only ``norm`` differs), and the claim reduces
each pair to one number, its *effect*, signed so that a positive effect is what the paper
says (BN higher, BN faster, less drift...). Over the seeds the effects get a mean and a
two-sided 95% Student-t interval, ``mean +- t(0.975, n-1) * sd / sqrt(n)``: the spread of
the effect from seed to seed is the noise it is measured against.

The verdict, for a claim that the effect is above ``margin`` (0 unless the claim says
"within a tolerance"):
1. "reproduced": the whole interval is above the margin, the effect exceeds the noise;
2. "within noise": the interval holds the margin, the seeds cannot tell;
3. "not reproduced": the whole interval is below the margin (the opposite effect), or no
   interval can be computed: one seed, or a number that could not be measured.
Only the first holds. A line that is within noise says so and still reads "not reproduced".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # the interval every claim line shows
# Student-t quantiles t(0.975, df) for df = 1..30 (any statistics table); past 30, the
# Cornish-Fisher expansion below is within 1e-4 of the exact value.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
Z_975 = 1.959964  # the normal quantile the expansion starts from

REPRODUCED, WITHIN_NOISE, NOT_REPRODUCED = "reproduced", "within noise", "not reproduced"
VERDICTS = (REPRODUCED, WITHIN_NOISE, NOT_REPRODUCED)  # strongest first


def t_quantile(df: int) -> float:
    """t(0.975, df): half the width of a 95% interval, in standard errors."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1 (got {df})")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass(frozen=True)
class Interval:
    """Mean effect over the seeds and its 95% t-interval; low = high = NaN below two seeds."""

    mean: float
    low: float
    high: float
    seeds: int

    def text(self, spec: str = "+.4f") -> str:
        """'+0.0081 +- 0.0030 (95% t-interval over 5 seeds)', or why there is no interval."""
        if not math.isfinite(self.mean):
            return "not measured"
        if not math.isfinite(self.low):
            return f"{format(self.mean, spec)} (one seed: no interval)"
        half = (self.high - self.low) / 2
        return f"{format(self.mean, spec)} +- {format(half, spec.lstrip('+'))} (95% t-interval over {self.seeds} seeds)"


def interval(effects) -> Interval:
    """The mean of the per-seed effects and its 95% Student-t interval. Any effect that is
    not finite (a run that recorded nothing) makes the whole interval NaN: a seed is never
    silently dropped."""
    values = np.asarray(effects, dtype=float).ravel()
    if len(values) == 0 or not np.isfinite(values).all():
        return Interval(math.nan, math.nan, math.nan, len(values))
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = t_quantile(len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def verdict(effect: Interval, margin: float = 0.0) -> str:
    """Whether the effect exceeds ``margin`` beyond the noise (see the module docstring)."""
    if not (math.isfinite(effect.low) and math.isfinite(effect.high)):
        return NOT_REPRODUCED
    if effect.low > margin:
        return REPRODUCED
    if effect.high < margin:
        return NOT_REPRODUCED
    return WITHIN_NOISE


def ending(result: str) -> str:
    """How a claim line ends: only "reproduced" holds; within noise still reads "not reproduced"."""
    return "not reproduced (within noise)" if result == WITHIN_NOISE else result
