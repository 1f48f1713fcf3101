"""The published claims bnviz reproduces, and how each is checked on recorded runs.

A reproduction is a preset run once per ``norm`` value (same seed: same data order and the
same initial weights, only ``norm`` differs) plus the claims to check on those runs.

A claim is a pure function of the run files' content, ``claim(runs) -> (holds, line)``, with
``runs`` keyed by ``norm``. Its docstring is its definition and goes into the report; its
line states our numbers and ends in "reproduced" or "not reproduced". A claim whose numbers
cannot be computed (a run that recorded nothing) reads "not reproduced", never passes. The
CLI's report (``bnviz.reproduce``) and the app's reproduce view check the same claims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from bnviz.config import RunConfig
from bnviz.presets import Preset, get_preset
from bnviz.runfile import from_snapshot

Runs = Mapping[str, dict]  # norm -> run file content as bnviz.runfile.read_run returns it
Claim = Callable[[Runs], "tuple[bool, str]"]

DRIFT_SKIP = 0.05  # ioffe-fig1: the first 5% of steps are the initial transient, not drift
COLLAPSE_DROP = 0.10  # fastai: a fall of the non-zero fraction this large (of all activations) is a collapse
NOISY_TOLERANCE = 0.03  # noisy-bn: "about as well as BN" = at most 3 accuracy points below it
MNIST_TRAIN = 60_000  # the full MNIST training set the papers and the book use
CHANCE = 0.1  # accuracy of a guess among the 10 classes of every bnviz dataset
MIN_EVAL_EVERY = 5  # a held-out evaluation costs a few training steps: a short run evaluates at most every 5th


def final_accuracy(run: dict) -> float:
    """The last held-out accuracy measured; NaN if none was. A run that diverged ended with
    non-finite weights, whatever it measured before: it counts as chance."""
    if run["status"] == "diverged":
        return CHANCE
    values = run["test_accuracy"]["values"]
    return float(values[-1]) if len(values) else math.nan


def first_step_reaching(run: dict, target: float) -> int | None:
    """The first evaluation step at which held-out accuracy is at least ``target``."""
    steps, values = run["test_accuracy"]["steps"], run["test_accuracy"]["values"]
    reached = np.flatnonzero(values >= target) if math.isfinite(target) else []
    return int(steps[reached[0]]) if len(reached) else None


def _verdict(holds: bool) -> str:
    return "reproduced" if holds else "not reproduced"


def _number(value: float, spec: str = ".4f") -> str:
    return format(value, spec) if value is not None and math.isfinite(value) else "n/a"


def ioffe_final_accuracy(runs: Runs) -> tuple[bool, str]:
    """BN ends higher: the BN run's last held-out accuracy is above the last one of the run without BN."""
    bn, plain = final_accuracy(runs["batchnorm"]), final_accuracy(runs["none"])
    holds = bn > plain
    return holds, f"BN final test accuracy {_number(bn)} vs {_number(plain)} without: {_verdict(holds)}"


def ioffe_trains_faster(runs: Runs) -> tuple[bool, str]:
    """BN trains faster: the BN run reaches the final accuracy of the run without BN at an
    earlier evaluation step than the run without BN first reaches it itself."""
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


def ioffe_stable_inputs(runs: Runs) -> tuple[bool, str]:
    """The input to a typical sigmoid of the last hidden layer drifts less with BN. A run's drift
    is the standard deviation over the recorded columns, after the first 5% of the steps, of
    that unit's median (p50) and of its spread (p85 - p15) within the mini-batch; the claim holds
    when both are smaller with BN. The unit is the layer's middle one (bnviz.probes)."""
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


def fastai_final_accuracy(runs: Runs) -> tuple[bool, str]:
    """Conv-BN-ReLU ends higher: the BN run's last held-out accuracy is above the run without
    BN's (the book's are shown beside ours; its data and length differ, see the report)."""
    bn, plain = final_accuracy(runs["batchnorm"]), final_accuracy(runs["none"])
    book = dict(get_preset("fastai-collapse").published_accuracy)
    holds = bn > plain
    return holds, (f"BN final test accuracy {_number(bn)} vs {_number(plain)} without (book: "
                   f"{book['batchnorm']:.4f} vs {book['none']:.4f}): {_verdict(holds)}")


def fastai_collapses(runs: Runs) -> tuple[bool, str]:
    """Without BN the activations collapse and recover; with BN they develop smoothly. In the
    second-to-last conv layer, the fraction of non-zero ReLU outputs (1 - the dead fraction, the
    run file's 'saturation') is followed over training; a collapse is a fall of more
    than 0.10 (of all activations) below its highest value since the last recovery. The claim
    holds when the run without BN collapses more often than the BN run."""
    bn, plain = count_collapses(nonzero_fraction(runs["batchnorm"])), count_collapses(nonzero_fraction(runs["none"]))
    holds = plain > bn
    layer = runs["none"]["layers"][COLOR_DIM_LAYER]["name"]
    return holds, (f"collapses of {layer}'s non-zero fraction (falls of more than {COLLAPSE_DROP:.2f}): {plain} "
                   f"without BN vs {bn} with: {_verdict(holds)}")


def _accuracies(runs: Runs) -> dict[str, float]:
    return {norm: final_accuracy(run) for norm, run in runs.items()}


def noisy_close_to_bn(runs: Runs) -> tuple[bool, str]:
    """Noisy BN trains about as well as BN: its last held-out accuracy is at most 0.03 below BN's."""
    acc = _accuracies(runs)
    holds = acc["noisy-batchnorm"] >= acc["batchnorm"] - NOISY_TOLERANCE
    return holds, (f"noisy BN final test accuracy {_number(acc['noisy-batchnorm'])} vs BN {_number(acc['batchnorm'])} "
                   f"(within {NOISY_TOLERANCE:.2f}): {_verdict(holds)}")


def noisy_beats_plain(runs: Runs) -> tuple[bool, str]:
    """Noisy BN beats no BN: its last held-out accuracy is above the run without BN's."""
    acc = _accuracies(runs)
    holds = acc["noisy-batchnorm"] > acc["none"]
    return holds, (f"noisy BN final test accuracy {_number(acc['noisy-batchnorm'])} vs {_number(acc['none'])} "
                   f"without BN: {_verdict(holds)}")


def bn_beats_plain(runs: Runs) -> tuple[bool, str]:
    """BN beats no BN: its last held-out accuracy is above the run without BN's."""
    acc = _accuracies(runs)
    holds = acc["batchnorm"] > acc["none"]
    return holds, f"BN final test accuracy {_number(acc['batchnorm'])} vs {_number(acc['none'])} without: {_verdict(holds)}"


def noise_alone_hurts(runs: Runs) -> tuple[bool, str]:
    """The same noise without BN hurts training: its last held-out accuracy is below the run
    without BN and without noise (in every claim, a run that diverged counts as chance, 0.1)."""
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


def _landscape_claim(key: str, label: str) -> Claim:
    def claim(runs: Runs) -> tuple[bool, str]:
        bn, plain = landscape_median(runs["batchnorm"], key), landscape_median(runs["none"], key)
        holds = bn < plain
        return holds, f"median {label} {_number(bn, '.4g')} with BN vs {_number(plain, '.4g')} without: {_verdict(holds)}"

    claim.__name__ = f"landscape_{key}"
    claim.__doc__ = (f"BN makes the landscape smoother: the median over training of the {label} "
                     "(bnviz.landscape, every landscape_every steps) is smaller with BN than without.")
    return claim


@dataclass(frozen=True)
class Reproduction:
    """A preset to run once per ``norm`` value, and the claims to check on the runs."""

    name: str  # also the preset's name
    norms: tuple[str, ...]
    claims: tuple[Claim, ...]
    differences: tuple[str, ...] = ()  # how our setup differs from the source; {fields}: see setup_facts

    @property
    def preset(self) -> Preset:
        return get_preset(self.name)


REPRODUCTIONS: dict[str, Reproduction] = {
    reproduction.name: reproduction
    for reproduction in (
        Reproduction("ioffe-fig1", ("none", "batchnorm"),
                     (ioffe_final_accuracy, ioffe_trains_faster, ioffe_stable_inputs),
                     ("data: {train:,} training images ({source}), not MNIST's full 60,000; test accuracy on "
                      "{evaluated:,} held-out images, the paper's on 10,000; {steps:,} steps of {batch_size} are "
                      "{epochs:.1f} epochs of our data, {full_epochs:.1f} of the full set",)),
        Reproduction("fastai-collapse", ("none", "batchnorm"), (fastai_final_accuracy, fastai_collapses),
                     ("the book trains one epoch of the full 60,000 MNIST training images; we train {steps:,} steps "
                      "of batch {batch_size} on {train:,} images ({source}), about {epochs:.1f} epochs of them",
                      "test accuracy on {evaluated:,} held-out images, the book's on 10,000")),
        Reproduction("noisy-bn", ("none", "batchnorm", "noisy-batchnorm", "noise"),
                     (noisy_close_to_bn, noisy_beats_plain, bn_beats_plain, noise_alone_hurts),
                     ("noise ranges are our choice, not the paper's appendix: each step draws the noise mean from "
                      "U(-{noise_mean}, {noise_mean}) and its std from U(1, {noise_std})",
                      "data: {train:,} training images ({source}) instead of CIFAR-10")),
        Reproduction("landscape", ("none", "batchnorm"),
                     tuple(_landscape_claim(key, label) for key, label in LANDSCAPE_METRICS),
                     ("data: {train:,} training images ({source}) instead of CIFAR-10",)),
    )
}


def get_reproduction(name: str) -> Reproduction:
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; reproductions: {', '.join(REPRODUCTIONS)}")
    return REPRODUCTIONS[name]


def setup_facts(config: RunConfig, data_dir: str | None = None) -> dict:
    """Numbers the differences' text refers to; loads the data (a bad data_dir is a ValueError here)."""
    from bnviz.data import load_dataset  # imports torch

    data = load_dataset(config.dataset, data_dir)
    train = len(data.train_y)
    seen = config.steps * config.batch_size
    return dict(config.to_dict(), train=train, source=data.source, epochs=seen / train, full_epochs=seen / MNIST_TRAIN,
                evaluated=min(config.eval_size, len(data.test_y)))


def configs_for(name: str, steps: int | None = None, overrides: Mapping | None = None) -> dict[str, RunConfig]:
    """The paired configs, keyed by norm. A shorter ``steps`` keeps the number of evaluations
    (down to one every MIN_EVAL_EVERY steps) and of landscape probes: the same kind of curves."""
    reproduction = get_reproduction(name)
    base = reproduction.preset.config
    if steps is not None and steps != base.steps:
        scale = steps / base.steps
        changes = {"steps": steps, "eval_every": max(MIN_EVAL_EVERY, round(base.eval_every * scale))}
        if base.landscape_every:
            changes["landscape_every"] = max(1, round(base.landscape_every * scale))
        base = base.replace(**changes)
    base = base.replace(**dict(overrides or {}))
    return {norm: base.paired_with(norm=norm) for norm in reproduction.norms}


@dataclass(frozen=True)
class ClaimResult:
    name: str
    holds: bool
    line: str
    definition: str


def check_claims(name: str, runs: Runs) -> list[ClaimResult]:
    """Evaluate every claim of the reproduction on the runs' recorded data."""
    results = []
    for claim in get_reproduction(name).claims:
        definition = " ".join((claim.__doc__ or "").split())
        try:
            holds, line = claim(runs)
        except (KeyError, IndexError, ValueError) as error:  # a run that recorded nothing to compare
            holds, line = False, f"{claim.__name__}: could not be computed ({type(error).__name__}: {error}): not reproduced"
        results.append(ClaimResult(claim.__name__, bool(holds), line, definition))
    return results


def check_snapshots(name: str, snapshots) -> list[ClaimResult] | None:
    """The claims on live runs (the app's reproduce view): None unless the snapshots hold a
    finished, paused, stopped or diverged run for each of the reproduction's norms (a run
    with another norm is left out: the claims do not compare it)."""
    if name not in REPRODUCTIONS:
        return None
    norms = get_reproduction(name).norms
    runs = {snapshot.config.norm: snapshot for snapshot in snapshots
            if snapshot.config.norm in norms and snapshot.status in ("finished", "paused", "stopped", "diverged")}
    if set(runs) != set(norms):
        return None
    return check_claims(name, {norm: from_snapshot(snapshot) for norm, snapshot in runs.items()})
