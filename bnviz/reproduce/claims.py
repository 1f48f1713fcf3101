"""The published claims bnviz reproduces, each a check on recorded runs over several seeds.

A claim reads ``seeds``: one ``{norm: run}`` mapping per seed, each the paired runs of that
seed (same data order and initial weights, only ``norm`` differs), as
``bnviz.runfile.read_run`` returns them. It reduces each pair to an *effect* (a measure of
``bnviz.reproduce.measures``, compared so that positive is what the source says), gives the
effects' 95% interval over the seeds and a verdict (``bnviz.reproduce.evidence``): the line
states our numbers and the interval, and ends in "reproduced" only when the whole interval
lies on the source's side. One seed has no interval and never reproduces a claim. A claim
whose numbers cannot be computed reads "not reproduced". Its definition (``@defined``, built
from the constants it uses, so the text cannot drift from the check) goes into the report.
Which claims belong to which reproduction is ``bnviz.reproduce.registry``.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from bnviz.presets import get_preset
from bnviz.reproduce.evidence import NOT_REPRODUCED, VERDICTS, Interval, ending, interval, verdict
from bnviz.reproduce.measures import (
    COLLAPSE_DROP,
    DRIFT_SKIP,
    FINAL_SHARE,
    SLOW_WINDOW,
    collapse_cycles,
    collapses,
    landscape_median,
    mean_accuracy,
    tail_accuracy,
    unit_drift,
)

Runs = Mapping[str, dict]  # norm -> run file content as bnviz.runfile.read_run returns it
Seeds = Sequence[Runs]  # one Runs per seed
Claim = Callable[[Seeds], "tuple[str, str]"]  # seeds -> (verdict, line)

NOISY_TOLERANCE = 0.03  # noisy-bn: "about as well as BN" = at most 3 accuracy points below it
REPEATED = 2  # fastai: "repeats a few times" = at least two complete cycles on average without BN
COLOR_DIM_LAYER = -1  # the last hidden conv: the net's second-to-last conv (the head is the last), fastai's color_dim(-2)


def defined(text: str) -> Callable[[Claim], Claim]:
    """Attach a claim's published definition: one sentence, whitespace folded."""
    def attach(claim: Claim) -> Claim:
        claim.definition = " ".join(text.split())
        return claim
    return attach


def _number(value: float, spec: str = ".4f") -> str:
    return format(value, spec) if value is not None and math.isfinite(value) else "n/a"


def _measured(seeds: Seeds, norm: str, measure: Callable[[dict], float]) -> np.ndarray:
    """(seeds,) the measure of each seed's run with ``norm``."""
    return np.array([measure(runs[norm]) for runs in seeds], dtype=float)


def _seeds(seeds: Seeds) -> str:
    return "one seed" if len(seeds) == 1 else f"mean of {len(seeds)} seeds"


def _compare(seeds: Seeds, measure, better: str, worse: str, margin: float = 0.0) -> tuple[str, Interval, float, float]:
    """(verdict, interval of better - worse, mean of better, mean of worse) over the seeds."""
    high, low = _measured(seeds, better, measure), _measured(seeds, worse, measure)
    effect = interval(high - low)
    return verdict(effect, margin), effect, float(np.mean(high)), float(np.mean(low))


FINAL = f"mean of the evaluations in the last {FINAL_SHARE:.0%} of the steps"


@defined(f"BN ends higher: the BN run's final held-out accuracy ({FINAL}) is above the run without BN's, "
         "seed by seed, by more than the seed-to-seed noise (the 95% t-interval of the paired differences "
         "lies above 0).")
def ioffe_final_accuracy(seeds: Seeds) -> tuple[str, str]:
    result, effect, bn, plain = _compare(seeds, tail_accuracy, "batchnorm", "none")
    return result, (f"BN final test accuracy {_number(bn)} vs {_number(plain)} without ({_seeds(seeds)}); "
                    f"paired difference {effect.text()}: {ending(result)}")


@defined("BN trains faster: its held-out accuracy averaged over training (the area under the accuracy curve "
         "divided by the run's length) is above the run without BN's, beyond the seed-to-seed noise. The "
         "area weighs every evaluation, so one lucky crossing of a noisy curve cannot decide it.")
def ioffe_trains_faster(seeds: Seeds) -> tuple[str, str]:
    result, effect, bn, plain = _compare(seeds, mean_accuracy, "batchnorm", "none")
    return result, (f"test accuracy averaged over training (area under the curve) {_number(bn)} with BN vs "
                    f"{_number(plain)} without ({_seeds(seeds)}); paired difference {effect.text()}: {ending(result)}")


def _drift(part: str, index: int) -> Callable[[dict], float]:
    return lambda run: unit_drift(run)[part][index]


def _log_ratio(seeds: Seeds, measure) -> tuple[Interval, float, float]:
    """Interval of log(without BN / with BN) over the seeds, and both means: drift is a scale,
    so the seeds compare as ratios. A drift of 0 (none beyond the noise) is floored at 1e-6."""
    plain, bn = _measured(seeds, "none", measure), _measured(seeds, "batchnorm", measure)
    floor = 1e-6
    effects = np.log(np.maximum(plain, floor) / np.maximum(bn, floor))
    return interval(effects), float(np.mean(bn)), float(np.mean(plain))


@defined(f"The input to a typical sigmoid of the last hidden layer drifts less with BN. After the first "
         f"{DRIFT_SKIP:.0%} of the steps, that unit's median (p50) and spread (p85 - p15) within the mini-batch "
         f"are split into a slow component (a moving mean over {SLOW_WINDOW:.0%} of the run) and per-batch noise "
         "(the rest); a run's drift is the slow component's standard deviation over time beyond what the noise "
         "alone leaves in a moving mean. The claim holds when the log ratio of the drift without BN to the drift "
         "with BN has a 95% t-interval above 0 over the seeds, for the median and for the spread.")
def ioffe_stable_inputs(seeds: Seeds) -> tuple[str, str]:
    parts = []
    results = []
    for part in ("median", "spread"):
        effect, bn, plain = _log_ratio(seeds, _drift(part, 0))
        noise_bn, noise_plain = (float(np.mean(_measured(seeds, norm, _drift(part, 1)))) for norm in ("batchnorm", "none"))
        results.append(verdict(effect))
        parts.append(f"{part} drift {_number(bn, '.3f')} with BN vs {_number(plain, '.3f')} without (log ratio "
                     f"{effect.text('+.2f')}; per-batch noise {_number(noise_bn, '.3f')} vs {_number(noise_plain, '.3f')})")
    result = max(results, key=VERDICTS.index)  # both must hold: the weaker verdict of the two
    return result, f"last-layer sigmoid input, slow drift ({_seeds(seeds)}): {'; '.join(parts)}: {ending(result)}"


def nonzero_fraction(run: dict) -> np.ndarray:
    """(columns,) fraction of the layer's ReLU outputs that are not zero: 1 - the dead fraction."""
    return 1.0 - np.asarray(run["layers"][COLOR_DIM_LAYER]["saturation"], dtype=float)


@defined(f"Conv-BN-ReLU ends higher: the BN run's final held-out accuracy ({FINAL}) is above the run without "
         "BN's beyond the seed-to-seed noise (the book's are shown beside ours; its data and length differ, see "
         "the report).")
def fastai_final_accuracy(seeds: Seeds) -> tuple[str, str]:
    result, effect, bn, plain = _compare(seeds, tail_accuracy, "batchnorm", "none")
    book = dict(get_preset("fastai-collapse").published_accuracy)
    return result, (f"BN final test accuracy {_number(bn)} vs {_number(plain)} without ({_seeds(seeds)}; book: "
                    f"{book['batchnorm']:.4f} vs {book['none']:.4f}); paired difference {effect.text()}: {ending(result)}")


def _cycles(run: dict) -> float:
    fraction = nonzero_fraction(run)
    return float(collapse_cycles(fraction)) if np.isfinite(fraction).any() else math.nan  # NaN: nothing recorded


@defined(f"Without BN the activations grow, collapse and recover, repeatedly; with BN they develop smoothly. In "
         "the second-to-last conv layer, the fraction of non-zero ReLU outputs (1 - the dead fraction) is "
         f"followed over training; a complete cycle is a rise of more than {COLLAPSE_DROP:.2f} (of all "
         f"activations), a fall of more than {COLLAPSE_DROP:.2f} below the peak and a recovery of more than "
         f"{COLLAPSE_DROP:.2f} above the low. The claim holds when the run without BN completes more cycles than "
         f"the BN run beyond the seed-to-seed noise, and at least {REPEATED} on average (the pattern repeats). "
         "A fall that never recovers is not a cycle.")
def fastai_collapses(seeds: Seeds) -> tuple[str, str]:
    result, effect, plain, bn = _compare(seeds, _cycles, "none", "batchnorm")
    if plain < REPEATED:  # no repeated pattern to reproduce, whatever BN does
        result = NOT_REPRODUCED
    layer = seeds[0]["none"]["layers"][COLOR_DIM_LAYER]["name"] if seeds else "the layer"
    return result, (f"complete rise-collapse-recovery cycles of {layer}'s non-zero fraction: {_number(plain, '.1f')} "
                    f"without BN vs {_number(bn, '.1f')} with ({_seeds(seeds)}; at least {REPEATED} needed without BN); "
                    f"paired difference {effect.text('+.1f')}: {ending(result)}")


def _falls(run: dict) -> float:
    fraction = nonzero_fraction(run)
    return float(collapses(fraction)[0]) if np.isfinite(fraction).any() else math.nan  # NaN: nothing recorded


@defined(f"What our runs show of the pattern: without BN the non-zero fraction of the same layer rises and then "
         f"collapses (a rise of more than {COLLAPSE_DROP:.2f}, then a fall of more than {COLLAPSE_DROP:.2f} below the "
         "peak), recovered or not; with BN it collapses less often, beyond the seed-to-seed noise. This is the "
         "first half of the book's pattern only: the claim above asks for the recovery and the repeats.")
def fastai_collapses_once(seeds: Seeds) -> tuple[str, str]:
    result, effect, plain, bn = _compare(seeds, _falls, "none", "batchnorm")
    layer = seeds[0]["none"]["layers"][COLOR_DIM_LAYER]["name"] if seeds else "the layer"
    return result, (f"collapses (rise, then a fall of more than {COLLAPSE_DROP:.2f}, recovered or not) of {layer}'s "
                    f"non-zero fraction: {_number(plain, '.1f')} without BN vs {_number(bn, '.1f')} with ({_seeds(seeds)}); "
                    f"paired difference {effect.text('+.1f')}: {ending(result)}")


def _noisy_line(seeds: Seeds, better: str, worse: str, label: str, margin: float = 0.0) -> tuple[str, str]:
    result, effect, high, low = _compare(seeds, tail_accuracy, better, worse, margin)
    within = f", tolerance {margin:+.2f}" if margin else ""
    return result, (f"{label} {_number(high)} vs {_number(low)} ({_seeds(seeds)}); paired difference "
                    f"{effect.text()}{within}: {ending(result)}")


@defined(f"Noisy BN trains about as well as BN: its final held-out accuracy ({FINAL}) is at most "
         f"{NOISY_TOLERANCE:.2f} below BN's, beyond the seed-to-seed noise (the 95% t-interval of the paired "
         f"differences lies above -{NOISY_TOLERANCE:.2f}).")
def noisy_close_to_bn(seeds: Seeds) -> tuple[str, str]:
    return _noisy_line(seeds, "noisy-batchnorm", "batchnorm", "final test accuracy, noisy BN vs BN", -NOISY_TOLERANCE)


@defined(f"Noisy BN beats no BN: its final held-out accuracy ({FINAL}) is above the run without BN's beyond the "
         "seed-to-seed noise.")
def noisy_beats_plain(seeds: Seeds) -> tuple[str, str]:
    return _noisy_line(seeds, "noisy-batchnorm", "none", "final test accuracy, noisy BN vs no BN")


@defined(f"BN beats no BN: its final held-out accuracy ({FINAL}) is above the run without BN's beyond the "
         "seed-to-seed noise.")
def bn_beats_plain(seeds: Seeds) -> tuple[str, str]:
    return _noisy_line(seeds, "batchnorm", "none", "final test accuracy, BN vs no BN")


@defined(f"The same noise without BN hurts training: its final held-out accuracy ({FINAL}) is below the run "
         "without BN and without noise, beyond the seed-to-seed noise (a run that diverged counts as chance, "
         "0.1, from its divergence on).")
def noise_alone_hurts(seeds: Seeds) -> tuple[str, str]:
    return _noisy_line(seeds, "none", "noise", "final test accuracy, neither vs noise without BN")


LANDSCAPE_METRICS = (("loss_range", "loss range"), ("gradient_predictiveness", "gradient predictiveness"),
                     ("beta_smoothness", "effective beta-smoothness"))


def landscape_claim(key: str, label: str) -> Claim:
    def claim(seeds: Seeds) -> tuple[str, str]:
        effect, bn, plain = _log_ratio(seeds, lambda run: landscape_median(run, key))
        result = verdict(effect)
        return result, (f"median {label} {_number(bn, '.4g')} with BN vs {_number(plain, '.4g')} without "
                        f"({_seeds(seeds)}); log ratio {effect.text('+.2f')}: {ending(result)}")

    claim.__name__ = f"landscape_{key}"
    return defined(f"BN makes the landscape smoother: the median over training of the {label} (bnviz.landscape, "
                   "every landscape_every steps) is smaller with BN than without; the log ratio without/with BN "
                   "has a 95% t-interval above 0 over the seeds.")(claim)
