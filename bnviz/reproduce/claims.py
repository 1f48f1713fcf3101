"""The published claims bnviz reproduces, each a check on recorded runs.

A claim is a pure function of the run files' content, ``claim(runs) -> (holds, line)``, with
``runs`` keyed by ``norm``. Its definition (``@defined``, built from the constants it uses, so
the text cannot drift from the check) goes into the report; its line states our numbers and
ends in "reproduced" or "not reproduced". A claim whose numbers cannot be computed (a run that
recorded nothing) reads "not reproduced", never passes. Which claims belong to which
reproduction is ``bnviz.reproduce.registry``; the CLI's report and the app's reproduce view
check the same claims.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np

from bnviz import snapshot
from bnviz.presets import get_preset
from bnviz.snapshot import CHANCE

Runs = Mapping[str, dict]  # norm -> run file content as bnviz.runfile.read_run returns it
Claim = Callable[[Runs], "tuple[bool, str]"]

DRIFT_SKIP = 0.05  # ioffe-fig1: the first 5% of steps are the initial transient, not drift
COLLAPSE_DROP = 0.10  # fastai: a fall of the non-zero fraction this large (of all activations) is a collapse
NOISY_TOLERANCE = 0.03  # noisy-bn: "about as well as BN" = at most 3 accuracy points below it



def final_accuracy(run: dict) -> float:
    """A run file's final held-out accuracy (``bnviz.snapshot.final_accuracy``: a diverged run counts as chance)."""
    return snapshot.final_accuracy(run["status"], run["test_accuracy"]["values"])


def first_step_reaching(run: dict, target: float) -> int | None:
    """The first evaluation step at which held-out accuracy is at least ``target``."""
    steps, values = run["test_accuracy"]["steps"], run["test_accuracy"]["values"]
    reached = np.flatnonzero(values >= target) if math.isfinite(target) else []
    return int(steps[reached[0]]) if len(reached) else None


def defined(text: str) -> Callable[[Claim], Claim]:
    """Attach a claim's published definition: one sentence, whitespace folded."""
    def attach(claim: Claim) -> Claim:
        claim.definition = " ".join(text.split())
        return claim
    return attach


def _verdict(holds: bool) -> str:
    return "reproduced" if holds else "not reproduced"


def _number(value: float, spec: str = ".4f") -> str:
    return format(value, spec) if value is not None and math.isfinite(value) else "n/a"


@defined("BN ends higher: the BN run's last held-out accuracy is above the last one of the run without BN.")
def ioffe_final_accuracy(runs: Runs) -> tuple[bool, str]:
    bn, plain = final_accuracy(runs["batchnorm"]), final_accuracy(runs["none"])
    holds = bn > plain
    return holds, f"BN final test accuracy {_number(bn)} vs {_number(plain)} without: {_verdict(holds)}"


@defined("BN trains faster: the BN run reaches the final accuracy of the run without BN at an earlier "
         "evaluation step than the run without BN first reaches it itself.")
def ioffe_trains_faster(runs: Runs) -> tuple[bool, str]:
    target = final_accuracy(runs["none"])
    bn, plain = first_step_reaching(runs["batchnorm"], target), first_step_reaching(runs["none"], target)
    holds = bn is not None and plain is not None and bn < plain
    if bn is None:
        return False, f"BN never reaches the no-BN final accuracy {_number(target)}: not reproduced"
    ratio = f" ({plain / bn:.1f}x fewer steps)" if holds else ""
    return holds, (f"BN reaches the no-BN final accuracy {_number(target)} at step {bn:,} vs step "
                   f"{_number(plain, ',')} without{ratio}: {_verdict(holds)}")


def unit_drift(run: dict) -> tuple[float, float]:
    """(std of p50, std of p85 - p15) over time of the last hidden layer's typical unit, after DRIFT_SKIP."""
    unit = run["layers"][-1]["unit_percentiles"]
    after = run["steps"] > DRIFT_SKIP * run["config"]["steps"]
    median, spread = unit["p50"][after], (unit["p85"] - unit["p15"])[after]
    if len(median) < 2 or not (np.isfinite(median).all() and np.isfinite(spread).all()):
        return math.nan, math.nan
    return float(np.std(median)), float(np.std(spread))


@defined(f"The input to a typical sigmoid of the last hidden layer drifts less with BN. A run's drift is the "
         f"standard deviation over the recorded columns, after the first {DRIFT_SKIP:.0%} of the steps, of that "
         "unit's median (p50) and of its spread (p85 - p15) within the mini-batch; the claim holds when both are "
         "smaller with BN. The unit is the layer's middle one (bnviz.probes).")
def ioffe_stable_inputs(runs: Runs) -> tuple[bool, str]:
    bn, plain = unit_drift(runs["batchnorm"]), unit_drift(runs["none"])
    holds = bn[0] < plain[0] and bn[1] < plain[1]
    return holds, (f"last-layer sigmoid input drift (std over time of median, of p85-p15): with BN "
                   f"{_number(bn[0], '.3f')}, {_number(bn[1], '.3f')} vs {_number(plain[0], '.3f')}, "
                   f"{_number(plain[1], '.3f')} without: {_verdict(holds)}")


COLOR_DIM_LAYER = -1  # the last hidden conv: the net's second-to-last conv (the head is the last), fastai's color_dim(-2)


def nonzero_fraction(run: dict) -> np.ndarray:
    """(columns,) fraction of the layer's ReLU outputs that are not zero: 1 - the dead fraction."""
    return 1.0 - run["layers"][COLOR_DIM_LAYER]["saturation"]


def count_collapses(fraction: np.ndarray, drop: float = COLLAPSE_DROP) -> int:
    """Falls of more than ``drop`` below the highest value since the last recovery; a fall counts
    once, and the next one only after the fraction has risen ``drop`` above its lowest point."""
    collapses, falling = 0, False
    peak = trough = None
    for value in fraction[np.isfinite(fraction)]:
        if peak is None:
            peak = trough = value
        elif not falling:
            peak = max(peak, value)
            if value < peak - drop:
                collapses, falling, trough = collapses + 1, True, value
        else:
            trough = min(trough, value)
            if value > trough + drop:
                falling, peak = False, value
    return collapses


@defined("Conv-BN-ReLU ends higher: the BN run's last held-out accuracy is above the run without BN's "
         "(the book's are shown beside ours; its data and length differ, see the report).")
def fastai_final_accuracy(runs: Runs) -> tuple[bool, str]:
    bn, plain = final_accuracy(runs["batchnorm"]), final_accuracy(runs["none"])
    book = dict(get_preset("fastai-collapse").published_accuracy)
    holds = bn > plain
    return holds, (f"BN final test accuracy {_number(bn)} vs {_number(plain)} without (book: "
                   f"{book['batchnorm']:.4f} vs {book['none']:.4f}): {_verdict(holds)}")


@defined(f"Without BN the activations collapse and recover; with BN they develop smoothly. In the "
         "second-to-last conv layer, the fraction of non-zero ReLU outputs (1 - the dead fraction, the run "
         f"file's 'saturation') is followed over training; a collapse is a fall of more than {COLLAPSE_DROP:.2f} "
         "(of all activations) below its highest value since the last recovery. The claim holds when the run "
         "without BN collapses more often than the BN run.")
def fastai_collapses(runs: Runs) -> tuple[bool, str]:
    bn, plain = count_collapses(nonzero_fraction(runs["batchnorm"])), count_collapses(nonzero_fraction(runs["none"]))
    holds = plain > bn
    layer = runs["none"]["layers"][COLOR_DIM_LAYER]["name"]
    return holds, (f"collapses of {layer}'s non-zero fraction (falls of more than {COLLAPSE_DROP:.2f}): {plain} "
                   f"without BN vs {bn} with: {_verdict(holds)}")


def _accuracies(runs: Runs) -> dict[str, float]:
    return {norm: final_accuracy(run) for norm, run in runs.items()}


@defined(f"Noisy BN trains about as well as BN: its last held-out accuracy is at most {NOISY_TOLERANCE:.2f} below BN's.")
def noisy_close_to_bn(runs: Runs) -> tuple[bool, str]:
    acc = _accuracies(runs)
    holds = acc["noisy-batchnorm"] >= acc["batchnorm"] - NOISY_TOLERANCE
    return holds, (f"noisy BN final test accuracy {_number(acc['noisy-batchnorm'])} vs BN {_number(acc['batchnorm'])} "
                   f"(within {NOISY_TOLERANCE:.2f}): {_verdict(holds)}")


@defined("Noisy BN beats no BN: its last held-out accuracy is above the run without BN's.")
def noisy_beats_plain(runs: Runs) -> tuple[bool, str]:
    acc = _accuracies(runs)
    holds = acc["noisy-batchnorm"] > acc["none"]
    return holds, (f"noisy BN final test accuracy {_number(acc['noisy-batchnorm'])} vs {_number(acc['none'])} "
                   f"without BN: {_verdict(holds)}")


@defined("BN beats no BN: its last held-out accuracy is above the run without BN's.")
def bn_beats_plain(runs: Runs) -> tuple[bool, str]:
    acc = _accuracies(runs)
    holds = acc["batchnorm"] > acc["none"]
    return holds, f"BN final test accuracy {_number(acc['batchnorm'])} vs {_number(acc['none'])} without: {_verdict(holds)}"


@defined(f"The same noise without BN hurts training: its last held-out accuracy is below the run without BN "
         f"and without noise (in every claim, a run that diverged counts as chance, {CHANCE}).")
def noise_alone_hurts(runs: Runs) -> tuple[bool, str]:
    acc = _accuracies(runs)
    holds = acc["noise"] < acc["none"]
    return holds, (f"noise without BN final test accuracy {_number(acc['noise'])} vs {_number(acc['none'])} "
                   f"with neither: {_verdict(holds)}")


LANDSCAPE_METRICS = (("loss_range", "loss range"), ("gradient_predictiveness", "gradient predictiveness"),
                     ("beta_smoothness", "effective beta-smoothness"))


def landscape_median(run: dict, key: str) -> float:
    values = run["landscape"][key] if "landscape" in run else np.zeros(0)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan


def landscape_claim(key: str, label: str) -> Claim:
    def claim(runs: Runs) -> tuple[bool, str]:
        bn, plain = landscape_median(runs["batchnorm"], key), landscape_median(runs["none"], key)
        holds = bn < plain
        return holds, f"median {label} {_number(bn, '.4g')} with BN vs {_number(plain, '.4g')} without: {_verdict(holds)}"

    claim.__name__ = f"landscape_{key}"
    return defined(f"BN makes the landscape smoother: the median over training of the {label} "
                   "(bnviz.landscape, every landscape_every steps) is smaller with BN than without.")(claim)
