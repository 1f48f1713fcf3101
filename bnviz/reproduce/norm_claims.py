"""Claims checked on the norms' maps: BN's dependence on the batch size, and BN as a regularizer.

Both are maps on the map engine (``bnviz.reproduce.map``): ``wu-he-batch`` is a one-axis map
over ``batch_size`` paired across ``norm`` (batchnorm, groupnorm, layernorm);
``bn-regularizer`` a map over ``dropout`` (0 and 0.5) and ``seed``, paired across ``norm``
(none, batchnorm): none, dropout, BN, BN + dropout, on several seeds. Each claim is a pure
function of a ``MapData``, ``claim(data) -> (verdict, line)``, with the verdicts of
``bnviz.reproduce.map_claims``; a difference counts only when it exceeds ``NOISE_SIGMAS``
standard errors (the binomial error of each accuracy measured, and for several seeds the
spread between seeds, whichever is larger); a smaller one in the right direction is "within
noise".
"""

from __future__ import annotations

import math

import numpy as np

from bnviz.reproduce.map_data import MapData

REPRODUCED, WITHIN_NOISE, NOT_REPRODUCED = "reproduced", "within noise", "not reproduced"  # map_claims' verdicts
NOISE_SIGMAS = 2.0  # a difference is an effect when it exceeds two standard errors
BN, GN, LN, PLAIN = "batchnorm", "groupnorm", "layernorm", "none"
NAMES = {BN: "BN", GN: "GroupNorm", LN: "LayerNorm", PLAIN: "no BN"}
WU_HE = "Wu & He (ResNet-50, ImageNet, batch 32 -> 2): BN error 23.6% -> 34.7% (+11.1 pts), GN 24.1% -> 24.8% (+0.7)"


def _verdict(effect: float, noise: float) -> str:
    if not (math.isfinite(effect) and math.isfinite(noise)) or effect <= 0:
        return NOT_REPRODUCED
    return REPRODUCED if effect > NOISE_SIGMAS * noise else WITHIN_NOISE


def _binomial_se(p: float, n: float) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` examples."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 and math.isfinite(p) else math.nan


def bn_depends_on_batch_size(data: MapData) -> tuple[str, str]:
    """BN's error rises as the batch shrinks, GroupNorm's and LayerNorm's do not (Wu & He 2018,
    Figure 1): each norm's rise in held-out error from the largest batch of the map to the
    smallest; the claim holds when BN's rise exceeds every other norm's by more than two
    standard errors (binomial, on the held-out images of each of the four accuracies).
    A diverged cell counts as chance."""
    spec = data.spec
    sizes = spec.x.values
    small, large = int(np.argmin(sizes)), int(np.argmax(sizes))
    n = spec.base.eval_size
    error = 1 - data.accuracy[:, 0, :]  # (norms, batch sizes)
    rise = {norm: error[i, small] - error[i, large] for i, norm in enumerate(spec.vary.values)}
    se = {norm: math.hypot(_binomial_se(1 - error[i, small], n), _binomial_se(1 - error[i, large], n))
          for i, norm in enumerate(spec.vary.values)}
    others = [norm for norm in spec.vary.values if norm != BN]
    verdicts = [_verdict(rise[BN] - rise[o], math.hypot(se[BN], se[o])) for o in others]
    verdict = NOT_REPRODUCED if NOT_REPRODUCED in verdicts else WITHIN_NOISE if WITHIN_NOISE in verdicts else REPRODUCED
    parts = [f"{NAMES.get(norm, norm)} {error[i, large]:.1%} -> {error[i, small]:.1%} ({rise[norm] * 100:+.1f} pts)"
             for i, norm in enumerate(spec.vary.values)]
    return verdict, (f"held-out error from batch {sizes[large]} to {sizes[small]}: {', '.join(parts)}; "
                     f"{WU_HE}: {verdict}")


def _gaps(data: MapData, norm: str, dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """(gaps, standard errors) over the seeds: training-batch accuracy minus held-out accuracy at the end."""
    spec = data.spec
    column = spec.x.values.index(dropout)
    test = data.accuracy[data.index(norm), :, column]  # (seeds,)
    train = data.train_accuracy[data.index(norm), :, column]
    n_test, n_train = spec.base.eval_size, spec.base.eval_every * spec.base.batch_size
    se = np.array([math.hypot(_binomial_se(a, n_test), _binomial_se(b, n_train)) for a, b in zip(test, train)])
    return train - test, se


def bn_narrows_gap(data: MapData) -> tuple[str, str]:
    """BN acts as a regularizer: at the end of training, the generalization gap (accuracy on the
    training batches since the last evaluation minus held-out accuracy) is smaller with BN than
    without, both without dropout, paired seed by seed. The effect is the mean over seeds of the
    paired difference; it counts when it exceeds two standard errors (the larger of the
    binomial error of the four accuracies and, with several seeds, the seeds' spread)."""
    plain, plain_se = _gaps(data, PLAIN, 0.0)
    bn, bn_se = _gaps(data, BN, 0.0)
    differences = plain - bn
    k = len(differences)
    binomial = float(np.sqrt(np.sum(plain_se ** 2 + bn_se ** 2))) / k
    spread = float(np.std(differences, ddof=1) / math.sqrt(k)) if k > 1 else 0.0
    verdict = _verdict(float(np.mean(differences)), max(binomial, spread))
    extra = ""
    if 0.5 in data.spec.x.values or len(data.spec.x.values) > 1:
        rate = max(data.spec.x.values)
        dropout, _ = _gaps(data, PLAIN, rate)
        both, _ = _gaps(data, BN, rate)
        extra = f"; with dropout {rate:g}: {np.mean(both):.3f} with BN vs {np.mean(dropout):.3f} without"
    return verdict, (f"BN narrows the generalization gap: {np.mean(bn):.3f} vs {np.mean(plain):.3f} (training minus "
                     f"test accuracy at the end, mean of {k} seed{'s' if k > 1 else ''}, no dropout{extra}): {verdict}")


def claims_for(data: MapData) -> tuple:
    """The norms' claims that apply to this map (none for other maps)."""
    spec = data.spec
    if spec.vary.name != "norm":
        return ()
    norms = set(spec.vary.values)
    if spec.x.name == "batch_size" and spec.y is None and BN in norms and len(norms) > 1 and len(spec.x.values) > 1:
        return (bn_depends_on_batch_size,)
    if (spec.x.name == "dropout" and 0.0 in spec.x.values and {BN, PLAIN} <= norms
            and data.train_accuracy is not None):
        return (bn_narrows_gap,)
    return ()
