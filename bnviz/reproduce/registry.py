"""The registry of reproductions: which preset runs with which norms, and which claims it checks.

A reproduction is a preset run once per ``norm`` value and seed (one seed's runs are paired:
same data order and the same initial weights, only ``norm`` differs) plus the claims to check
on those runs (``bnviz.reproduce.claims``, with an interval over the seeds) and how our setup
differs from the source (``bnviz.reproduce.facts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from bnviz.config import LIMITS, RunConfig
from bnviz.presets import Preset, get_preset
from bnviz.reproduce.claims import (
    LANDSCAPE_METRICS,
    Claim,
    Runs,
    Seeds,
    bn_beats_plain,
    fastai_collapses,
    fastai_collapses_once,
    fastai_final_accuracy,
    ioffe_final_accuracy,
    ioffe_stable_inputs,
    ioffe_trains_faster,
    landscape_claim,
    noise_alone_hurts,
    noisy_beats_plain,
    noisy_close_to_bn,
)
from bnviz.reproduce.evidence import NOT_REPRODUCED, REPRODUCED
from bnviz.runfile import from_snapshot

MIN_EVAL_EVERY = 5  # a held-out evaluation costs a few training steps: a short run evaluates at most every 5th
EVERY_HELD_OUT = LIMITS["eval_size"][1]  # evaluate on every held-out image: 2,000 bundled, 10,000 in full MNIST
DEFAULT_SEEDS = 5  # paired seeds per reproduction: a 95% t-interval needs a few (t = 2.78 at 5, 12.7 at 2)


@dataclass(frozen=True)
class Reproduction:
    """A preset to run once per ``norm`` value, and the claims to check on the runs."""

    name: str  # also the preset's name
    norms: tuple[str, ...]
    claims: tuple[Claim, ...]
    differences: tuple[str, ...] = ()  # how our setup differs from the source; {fields}: bnviz.reproduce.facts

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
        Reproduction("fastai-collapse", ("none", "batchnorm"), (fastai_final_accuracy, fastai_collapses, fastai_collapses_once),
                     ("the book trains one epoch of the full 60,000 MNIST training images; we train {steps:,} steps "
                      "of batch {batch_size} on {train:,} images ({source}), about {epochs:.1f} epochs of them",
                      "test accuracy on {evaluated:,} held-out images, the book's on 10,000",
                      "optimizer as the book's fit_one_cycle runs it ({optimizer}: beta2 0.99, eps 1e-5, decoupled "
                      "weight decay 0.01 not on biases or BN, beta1 0.95 -> 0.85 -> 0.95); pixels standardized with "
                      "the training set's mean and std, fastai's Normalize uses one batch's; our batch order")),
        Reproduction("noisy-bn", ("none", "batchnorm", "noisy-batchnorm", "noise"),
                     (noisy_close_to_bn, noisy_beats_plain, bn_beats_plain, noise_alone_hurts),
                     ("noise ranges are our choice, not the paper's appendix: each step draws the noise mean from "
                      "U(-{noise_mean}, {noise_mean}) and its std from U(1, {noise_std})",
                      "data: {train:,} training images ({source}) instead of CIFAR-10")),
        Reproduction("landscape", ("none", "batchnorm"),
                     tuple(landscape_claim(key, label) for key, label in LANDSCAPE_METRICS),
                     ("data: {train:,} training images ({source}) instead of CIFAR-10",)),
    )
}


def get_reproduction(name: str) -> Reproduction:
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; reproductions: {', '.join(REPRODUCTIONS)}")
    return REPRODUCTIONS[name]


def configs_for(name: str, steps: int | None = None, overrides: Mapping | None = None) -> dict[str, RunConfig]:
    """The paired configs of one seed (the preset's, or ``overrides``'), keyed by norm. Every
    held-out image is evaluated: the accuracy differences the claims weigh are a fraction of a
    point, and a sample of the test set would add its own noise. A shorter ``steps`` keeps the
    number of evaluations (down to one every MIN_EVAL_EVERY steps) and of landscape probes: the
    same kind of curves."""
    reproduction = get_reproduction(name)
    base = reproduction.preset.config.replace(eval_size=EVERY_HELD_OUT)
    if steps is not None and steps != base.steps:
        scale = steps / base.steps
        changes = {"steps": steps, "eval_every": max(MIN_EVAL_EVERY, round(base.eval_every * scale))}
        if base.landscape_every:
            changes["landscape_every"] = max(1, round(base.landscape_every * scale))
        base = base.replace(**changes)
    base = base.replace(**dict(overrides or {}))
    return {norm: base.paired_with(norm=norm) for norm in reproduction.norms}


def seed_configs(name: str, seeds: int = DEFAULT_SEEDS, steps: int | None = None,
                 overrides: Mapping | None = None) -> list[dict[str, RunConfig]]:
    """The paired configs of ``seeds`` consecutive seeds from the config's own: one dict per
    seed, keyed by norm. Seeds differ in initial weights, data order and noise, nothing else."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a whole number of at least 1 (got {seeds!r})")
    first = configs_for(name, steps, overrides)
    start = next(iter(first.values())).seed
    return [{norm: config.replace(seed=start + offset) for norm, config in first.items()} for offset in range(seeds)]


@dataclass(frozen=True)
class ClaimResult:
    name: str
    verdict: str  # "reproduced", "within noise" or "not reproduced" (bnviz.reproduce.evidence)
    line: str
    definition: str

    @property
    def holds(self) -> bool:
        return self.verdict == REPRODUCED


def check_claims(name: str, runs: Runs | Seeds) -> list[ClaimResult]:
    """Evaluate every claim of the reproduction on the runs' recorded data: ``runs`` is one
    seed's ``{norm: run}`` or a sequence of them, one per seed."""
    seeds = [runs] if isinstance(runs, Mapping) else list(runs)
    results = []
    for claim in get_reproduction(name).claims:
        try:
            result, line = claim(seeds)
        except (KeyError, IndexError, ValueError) as error:  # a run that recorded nothing to compare
            result, line = NOT_REPRODUCED, f"{claim.__name__}: could not be computed ({type(error).__name__}: {error}): not reproduced"
        results.append(ClaimResult(claim.__name__, result, line, claim.definition))
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
