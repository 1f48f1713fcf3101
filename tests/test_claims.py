"""Tests for the claims (bnviz.reproduce.claims, measures, evidence) on hand-made run data.

Every claim is checked four ways, each on five seeds of made-up runs:
1. data that shows the published effect well beyond its noise: "reproduced";
2. the same data swapped between the runs (the opposite effect): "not reproduced";
3. data without the effect (both runs drawn alike): never "reproduced";
4. data whose effect is smaller than its seed-to-seed noise: "not reproduced (within noise)".
One seed has no interval and never reproduces a claim; a run that recorded nothing never does.
"""

import math

import numpy as np
import pytest

from bnviz.reproduce.evidence import Interval, interval, t_quantile, verdict
from bnviz.reproduce.measures import collapse_cycles, collapses, mean_accuracy, slow_and_fast, tail_accuracy
from bnviz.reproduce.registry import REPRODUCTIONS, check_claims, get_reproduction

SEEDS = 5
STEPS = 400


def fake_run(accuracy=None, unit=None, saturation=None, landscape=None, status="finished", steps=STEPS):
    """The parts of a read_run() dict that the claims read. ``accuracy`` is evaluated every
    tenth of the run; ``unit`` is (median, spread) per step; both default to flat."""
    columns = np.arange(1, steps + 1)
    accuracy = np.asarray(accuracy if accuracy is not None else np.full(10, 0.9), dtype=float)
    median, spread = (np.asarray(v, dtype=float) for v in (unit if unit is not None else (np.zeros(steps), np.ones(steps))))
    layer = {"name": "layer3", "saturation": np.asarray(saturation if saturation is not None else np.full(steps, 0.5)),
             "unit_percentiles": {"p15": median - spread / 2, "p50": median, "p85": median + spread / 2}}
    values = np.asarray(landscape if landscape is not None else np.ones(5), dtype=float)
    return {"status": status, "config": {"steps": steps}, "steps": columns, "layers": [layer],
            "test_accuracy": {"steps": np.linspace(steps / max(len(accuracy), 1), steps, len(accuracy)).astype(int),
                              "values": accuracy},
            "landscape": {"steps": np.arange(len(values)), "loss_range": values,
                          "gradient_predictiveness": 2 * values, "beta_smoothness": 3 * values}}


def seeds_of(make, n=SEEDS, start=0):
    """``n`` seeds of paired runs: ``make(rng)`` -> {norm: run} with its own generator per seed."""
    return [make(np.random.default_rng(seed)) for seed in range(start, start + n)]


def swapped(seeds, a="none", b="batchnorm"):
    return [dict(runs, **{a: runs[b], b: runs[a]}) for runs in seeds]


def verdicts(name, seeds):
    return [claim.verdict for claim in check_claims(name, seeds)]


def assert_reads(name, seeds, expected):
    """Every claim has verdict ``expected``, its line ends as the verdict says, and only
    "reproduced" holds."""
    ending = {"reproduced": ": reproduced", "within noise": ": not reproduced (within noise)",
              "not reproduced": ": not reproduced"}[expected]
    for claim in check_claims(name, seeds):
        assert claim.verdict == expected, claim.line
        assert claim.line.endswith(ending), claim.line
        assert claim.holds == (expected == "reproduced")


# --- the interval and the verdict -------------------------------------------------------------

def test_t_quantiles_match_the_table_and_approach_the_normal():
    assert t_quantile(1) == 12.706 and t_quantile(4) == 2.776
    assert abs(t_quantile(40) - 2.0211) < 1e-3 and abs(t_quantile(120) - 1.9799) < 1e-3
    with pytest.raises(ValueError):
        t_quantile(0)


def test_interval_is_the_mean_plus_minus_t_standard_errors():
    effect = interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert effect.mean == 3.0 and math.isclose(effect.low, 3 - half) and math.isclose(effect.high, 3 + half)
    assert effect.text() == "+3.0000 +- 1.9629 (95% t-interval over 5 seeds)"
    one = interval([0.5])
    assert one.seeds == 1 and math.isnan(one.low) and "one seed: no interval" in one.text()
    assert math.isnan(interval([0.1, math.nan, 0.2]).mean)  # a seed is never silently dropped


def test_verdicts():
    assert verdict(Interval(0.3, 0.1, 0.5, 5)) == "reproduced"
    assert verdict(Interval(0.1, -0.1, 0.3, 5)) == "within noise"
    assert verdict(Interval(-0.3, -0.5, -0.1, 5)) == "not reproduced"
    assert verdict(Interval(0.3, math.nan, math.nan, 1)) == "not reproduced"  # one seed
    assert verdict(Interval(-0.01, -0.02, 0.0, 5), margin=-0.03) == "reproduced"  # within a tolerance


# --- the measures ------------------------------------------------------------------------------

def test_final_accuracy_averages_the_last_tenth_and_a_diverged_run_is_chance():
    run = fake_run(accuracy=[0.5] * 8 + [0.9, 0.94])
    assert math.isclose(tail_accuracy(run), 0.92)  # the evaluations at steps 360 and 400
    assert tail_accuracy(fake_run(status="diverged")) == 0.1
    assert math.isnan(tail_accuracy(fake_run(accuracy=[])))


def test_mean_accuracy_is_larger_for_the_curve_that_rises_first():
    early, late = fake_run(accuracy=[0.9] * 10), fake_run(accuracy=[0.5] * 5 + [0.9] * 5)
    assert mean_accuracy(early) > mean_accuracy(late)
    assert mean_accuracy(fake_run(accuracy=[0.9] * 10, status="diverged")) < mean_accuracy(early)


def test_slow_and_fast_separate_drift_from_noise():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1.0, 2000)
    drift, fast = slow_and_fast(noise)
    assert drift < 0.1 and 0.9 < fast < 1.1  # large per-batch noise is not drift
    trend = np.linspace(0, 3, 2000)
    drift, fast = slow_and_fast(trend + 0.1 * noise)
    assert abs(drift - np.std(trend)) < 0.05 and fast < 0.15
    assert all(math.isnan(v) for v in slow_and_fast(np.ones(4)))  # too short to separate


def test_collapse_cycles_count_rise_collapse_recovery():
    ramp = lambda a, b, n=10: np.linspace(a, b, n)
    once_no_recovery = np.r_[ramp(0.1, 0.7), ramp(0.7, 0.14), np.full(30, 0.14)]
    assert collapse_cycles(once_no_recovery) == 0  # the no-BN run: falls once, never recovers
    repeated = np.r_[ramp(0.05, 0.6), ramp(0.6, 0.05), ramp(0.05, 0.7), ramp(0.7, 0.1), ramp(0.1, 0.6)]
    assert collapse_cycles(repeated) == 2
    assert collapse_cycles(np.array([0.5, 0.45, 0.5, 0.45] * 10)) == 0  # jitter below the threshold
    assert collapse_cycles(np.r_[np.nan, repeated]) == 2  # NaN (undefined) columns are skipped


# --- each claim: effect, swapped, no effect, within noise --------------------------------------

def _curve(rng, rise, final, noise=0.004):
    """Accuracy at ten evaluations: from 0.5 towards ``final`` with time constant ``rise`` (in evaluations)."""
    return final - (final - 0.5) * np.exp(-np.arange(1, 11) / rise) + rng.normal(0, noise, 10)


def ioffe(effect: float, drift: float, noise_across_seeds: float = 0.0):
    """ioffe-fig1 runs; ``effect`` scales BN's lead (0: none), ``drift`` the no-BN unit's slow drift,
    ``noise_across_seeds`` how much the pair's difference varies from seed to seed."""
    def make(rng):
        wobble = rng.normal(0, noise_across_seeds)
        base = _curve(rng, 3.0, 0.94)
        bn_curve = _curve(rng, 3.0 / (1 + 2 * effect), 0.94 + 0.02 * effect + wobble)
        steps = np.arange(STEPS)
        def unit(slow):  # per-batch noise of the same size in both runs
            return (slow * np.sin(steps / 60) + rng.normal(0, 0.3, STEPS), 1 + slow * np.cos(steps / 50) + rng.normal(0, 0.3, STEPS))
        return {"none": fake_run(accuracy=base, unit=unit(drift)), "batchnorm": fake_run(accuracy=bn_curve, unit=unit(0.02))}
    return make


def test_ioffe_claims_follow_the_evidence():
    shown = seeds_of(ioffe(effect=1.0, drift=1.0))
    assert_reads("ioffe-fig1", shown, "reproduced")
    assert_reads("ioffe-fig1", swapped(shown), "not reproduced")
    line = check_claims("ioffe-fig1", shown)[0].line
    assert line.startswith("BN final test accuracy 0.9") and "(mean of 5 seeds); paired difference +0.0" in line
    assert "95% t-interval over 5 seeds" in line


def test_ioffe_claims_without_the_effect_are_never_reproduced():
    for seeds in (seeds_of(ioffe(effect=0.0, drift=0.02)), seeds_of(ioffe(effect=0.0, drift=0.02), start=10)):
        assert "reproduced" not in verdicts("ioffe-fig1", seeds)


def test_ioffe_claims_within_noise():
    """A lead of a tenth of the seed-to-seed spread: the interval holds 0."""
    seeds = seeds_of(ioffe(effect=0.05, drift=0.02, noise_across_seeds=0.02))
    accuracy, faster, _ = verdicts("ioffe-fig1", seeds)
    assert accuracy == faster == "within noise"


def test_drift_made_of_noise_alone_is_not_drift():
    """The old check compared std over time, noise included: larger per-batch noise without BN passed it."""
    def make(rng):
        flat = lambda size: (rng.normal(0, size, STEPS), 1 + rng.normal(0, size, STEPS))
        return {"none": fake_run(unit=flat(0.5)), "batchnorm": fake_run(unit=flat(0.1))}
    assert verdicts("ioffe-fig1", seeds_of(make))[2] != "reproduced"


def fastai(cycles_without: int, cycles_with: int = 0):
    def make(rng):
        def fraction(cycles):
            ramp = lambda a, b: np.linspace(a, b, 20)
            parts = [ramp(0.05, 0.4)] + [np.r_[ramp(0.6, 0.05), ramp(0.05, 0.6)] for _ in range(cycles)]
            series = np.concatenate(parts)
            series = np.r_[series, np.full(STEPS - len(series), series[-1])]
            return np.clip(series + rng.normal(0, 0.01, STEPS), 0, 1)
        return {"none": fake_run(accuracy=_curve(rng, 3, 0.975), saturation=1 - fraction(cycles_without)),
                "batchnorm": fake_run(accuracy=_curve(rng, 2, 0.985), saturation=1 - fraction(cycles_with))}
    return make


def test_fastai_claims_follow_the_evidence():
    shown = seeds_of(fastai(3))
    assert_reads("fastai-collapse", shown, "reproduced")
    assert_reads("fastai-collapse", swapped(shown), "not reproduced")
    assert "book: 0.9864 vs 0.9743)" in check_claims("fastai-collapse", shown)[0].line


def test_one_collapse_without_recovery_is_not_the_pattern_but_a_collapse():
    def fall_once(rng):  # the no-BN run: rises to 0.71, falls to 0.14 and stays there
        fraction = np.r_[np.linspace(0.5, 0.71, 8), np.linspace(0.71, 0.14, 30), np.full(STEPS - 38, 0.14)]
        flat = np.full(STEPS, 0.48) + rng.normal(0, 0.005, STEPS)
        return {"none": fake_run(saturation=1 - fraction - rng.normal(0, 0.005, STEPS)), "batchnorm": fake_run(saturation=1 - flat)}
    _, pattern, collapsed = verdicts("fastai-collapse", seeds_of(fall_once))
    assert pattern == "not reproduced" and collapsed == "reproduced"
    assert collapses(np.r_[np.linspace(0.5, 0.71, 8), np.linspace(0.71, 0.14, 30)]) == (1, 0)
    verdict_of = lambda make: verdicts("fastai-collapse", seeds_of(make))[1]
    assert verdict_of(fastai(0)) == "not reproduced"  # no cycle on either side
    assert verdict_of(fastai(1)) == "not reproduced"  # one cycle: the pattern does not repeat


def noisy(noisy_gap: float, plain_gap: float, noise_gap: float, spread: float = 0.003):
    """noisy-bn runs: BN at 0.97, noisy BN ``noisy_gap`` below it, no BN ``plain_gap`` below it,
    the noise alone ``noise_gap`` below no BN."""
    def make(rng):
        level = lambda value: fake_run(accuracy=np.full(10, value) + rng.normal(0, spread, 10))
        plain = 0.97 - plain_gap
        return {"none": level(plain), "batchnorm": level(0.97), "noisy-batchnorm": level(0.97 - noisy_gap),
                "noise": level(plain - noise_gap)}
    return make


def test_noisy_bn_claims_follow_the_evidence():
    assert_reads("noisy-bn", seeds_of(noisy(0.005, 0.05, 0.3)), "reproduced")
    # the same runs under other names: noise alone best, BN worst, noisy BN far below BN
    reverse = [{"none": runs["noisy-batchnorm"], "batchnorm": runs["none"], "noisy-batchnorm": runs["noise"],
                "noise": runs["batchnorm"]} for runs in seeds_of(noisy(0.005, 0.05, 0.3))]
    assert_reads("noisy-bn", reverse, "not reproduced")


def test_noisy_bn_claims_without_the_effect_or_within_noise():
    assert "reproduced" not in verdicts("noisy-bn", seeds_of(noisy(0.03, 0.0, 0.0)))
    close, _, bn_beats, hurts = verdicts("noisy-bn", seeds_of(noisy(0.03, 0.0005, 0.0005, spread=0.01)))
    assert close == bn_beats == hurts == "within noise"  # gaps far inside the noise


def test_landscape_claims_follow_the_evidence():
    def make(rng, rough=10.0):
        return {"none": fake_run(landscape=rough * rng.uniform(0.5, 1.5, 8)),
                "batchnorm": fake_run(landscape=rng.uniform(0.5, 1.5, 8))}
    shown = seeds_of(make)
    assert_reads("landscape", shown, "reproduced")
    assert_reads("landscape", swapped(shown), "not reproduced")
    alike = seeds_of(lambda rng: make(rng, rough=1.0))
    assert "reproduced" not in verdicts("landscape", alike)


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_one_seed_never_reproduces_a_claim(name):
    shown = {"ioffe-fig1": ioffe(1.0, 1.0), "fastai-collapse": fastai(3), "noisy-bn": noisy(0.005, 0.05, 0.3),
             "landscape": lambda rng: {"none": fake_run(landscape=[10.0] * 5), "batchnorm": fake_run()}}[name]
    one = seeds_of(shown, n=1)
    for claim in check_claims(name, one[0]):  # a single {norm: run}, as the app passes it
        assert claim.verdict == "not reproduced" and "one seed" in claim.line, claim.line


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_a_run_with_nothing_recorded_is_not_reproduced(name):
    empty = fake_run(steps=0, accuracy=[], saturation=[], landscape=[], unit=([], []), status="error")
    seeds = [{norm: empty for norm in get_reproduction(name).norms}] * SEEDS
    for claim in check_claims(name, seeds):
        assert claim.verdict == "not reproduced" and claim.line.endswith(": not reproduced"), claim.line


def test_a_diverged_run_counts_as_chance():
    def make(rng):
        runs = noisy(0.005, 0.05, 0.0)(rng)
        return dict(runs, noise=fake_run(accuracy=np.full(10, 0.95), status="diverged"))
    last = check_claims("noisy-bn", seeds_of(make))[-1]
    assert last.holds and "vs 0.1000" in last.line
