"""The budget: a run's cost estimated from its config, checked against torch's shapes and against
the memory a real run process takes, and the refusals that say what to change."""

from __future__ import annotations

import math

import pytest

from bnviz import budget
from bnviz.config import DATASETS, NORMS, OPTIMIZERS, RunConfig
from bnviz.history import CAPACITY
from bnviz.model import CNN_CHANNELS, build_model
from bnviz.presets import PRESETS
from bnviz.probes import MAX_RING_STEPS, RING_ELEMENTS, _pre_activation_shapes
from testsupport.pss import fresh_run_peak_mb

AT_THE_LIMITS = RunConfig(depth=20, width=1024, batch_size=2048, steps=200_000)  # the run: ~850 MB
SHAPES = [RunConfig(), RunConfig(depth=1, width=8), RunConfig(depth=20, width=1024, norm="batchnorm"),
          RunConfig(norm="noisy-batchnorm"), RunConfig(norm="noise"),
          RunConfig(arch="cnn", activation="relu"), RunConfig(arch="cnn", activation="relu", norm="batchnorm")]


@pytest.mark.parametrize("config", SHAPES, ids=lambda c: f"{c.arch}-{c.depth}x{c.width}-{c.norm}")
def test_the_estimate_counts_the_network_torch_builds(config):
    network = build_model(config)
    net = budget._shapes(config)
    assert net.params == sum(p.numel() for p in network.parameters())
    assert net.features == tuple(math.prod(shape) for shape in _pre_activation_shapes(network, budget.INPUT_SHAPE))


def test_the_estimate_knows_every_optimizer_norm_and_dataset():
    assert set(budget.OPTIMIZER_STATE) == set(OPTIMIZERS)
    assert set(budget.DATASET_IMAGES) == set(DATASETS)
    assert set(budget.LAYER_TENSORS) <= set(NORMS)  # a norm not listed counts as batchnorm


def test_the_estimate_uses_the_engine_s_constants():
    assert (budget.RING_ELEMENTS, budget.MAX_RING_STEPS, budget.HISTORY_COLUMNS) == (RING_ELEMENTS, MAX_RING_STEPS, CAPACITY)
    assert budget.CNN_CHANNELS == CNN_CHANNELS


def test_every_preset_fits_the_default_budget_also_compared():
    for preset in PRESETS.values():
        configs = [preset.config.replace(norm=norm) for norm in preset.compare]
        assert budget.refusals([preset.config], budget.Budget()) == [], preset.name
        assert budget.refusals(configs, budget.Budget()) == [], preset.name


def test_a_run_at_every_limit_is_refused_with_what_to_change():
    problems = budget.refusals([AT_THE_LIMITS], budget.Budget(run_mb=300))
    assert any(p.startswith("This run needs ~") and "this server allows 300 MB per run: a smaller batch or fewer units"
               in p for p in problems), problems
    assert any("a step on one core; this server allows 250 ms" in p for p in problems), problems


def test_url_only_settings_count_and_their_advice_names_them():
    heavy = AT_THE_LIMITS.replace(optimizer="adam", landscape_every=1, eval_every=1)
    assert budget.estimate(heavy).memory_mb > budget.estimate(AT_THE_LIMITS).memory_mb
    assert budget.estimate(heavy).step_seconds > 5 * budget.estimate(AT_THE_LIMITS).step_seconds
    text = " ".join(budget.refusals([heavy], budget.Budget()))
    assert "SGD instead of adam" in text and "landscape_every" in text and "eval_every" in text


def test_a_long_run_is_refused_with_the_steps_that_fit():
    config = RunConfig(depth=20, width=1024, steps=200_000)
    (problem,) = budget.refusals([config], budget.Budget())
    fits = int(budget.DEFAULT_RUN_MINUTES * 60 / budget.estimate(config).step_seconds)
    assert f"at most {fits:,} steps" in problem
    assert budget.refusals([config.replace(steps=fits)], budget.Budget()) == []


def test_a_tab_s_runs_count_together():
    config = RunConfig(depth=20, width=512, batch_size=128, steps=1000)
    norms = ("none", "batchnorm", "noisy-batchnorm", "noise")
    configs = [config.replace(norm=norm) for norm in norms]
    each = max(budget.estimate(c).memory_mb for c in configs)
    total = sum(budget.estimate(c).memory_mb for c in configs)
    tight = budget.Budget(run_mb=each + 1, tab_mb=total - 1)
    (problem,) = budget.refusals(configs, tight)
    assert problem.startswith(f"These 4 runs side by side need ~{total:,.0f} MB together") and "turn off the comparison" in problem
    assert budget.refusals(configs[:1], tight) == []


def test_the_budget_reads_the_environment_and_names_what_it_ignored():
    chosen, problems = budget.Budget.from_env({budget.ENV_RUN_MB: "250", budget.ENV_TAB_MB: "-1",
                                               budget.ENV_STEP_MS: "nan", budget.ENV_RUN_MINUTES: "5"})
    assert chosen == budget.Budget(run_mb=250, run_minutes=5)
    assert len(problems) == 2 and problems[0].startswith(f"{budget.ENV_TAB_MB}='-1' is not a positive number")
    assert budget.Budget.from_env({}) == (budget.Budget(), ())


# Presets as the app starts them, the corners of the limits and the two runs the default budget admits
# that need the most memory and the most time; steps enough to see each one's peak: past the history's
# 1,024 columns where that is quick, the first steps of the big ones (seconds each).
MEASURED = [(preset.config.replace(steps=200_000), 120 if preset.config.arch == "cnn" else 1100)
            for preset in PRESETS.values()] + [
    (AT_THE_LIMITS, 2),
    (AT_THE_LIMITS.replace(norm="noisy-batchnorm", optimizer="adam"), 2),  # the most memory the limits admit
    (RunConfig(arch="cnn", activation="relu", norm="noisy-batchnorm", batch_size=2048, landscape_every=1, steps=1000), 2),
    (RunConfig(depth=20, width=1024, batch_size=1, eval_every=1, eval_size=10_000, steps=1000), 3),
    (RunConfig(depth=1, width=8, batch_size=1, dataset="fashion-mnist", steps=200_000), 1500),
    (RunConfig(dataset="fashion-mnist", depth=19, width=1024, activation="relu", norm="noise", batch_size=64,
               steps=1000), 120),
    (RunConfig(depth=8, width=1024, activation="relu", norm="batchnorm", optimizer="adam", batch_size=256,
               landscape_every=50, steps=1000), 60),
]
# The budget must hold (measured at most 25% above the estimate: up to 1.13x was seen on a loaded
# machine, README "Reliability"); and the estimate must not be far above: it counts a full ring and a
# full history, which a run slowed by a loaded machine fills later.
LOW, HIGH = 0.3, 1.25


@pytest.mark.parametrize("config, steps", MEASURED, ids=[str(i) for i in range(len(MEASURED))])
def test_the_estimate_holds_against_the_memory_a_run_process_takes(config, steps):
    """Memory is not timing: the peak PSS of a run does not depend on the machine's load (much)."""
    measured, trained = fresh_run_peak_mb(config, steps)
    estimated = budget.estimate(config).process_mb
    print(f"measured {measured:.1f} MB, estimated {estimated:.1f} MB ({measured / estimated:.2f}), {trained} steps: "
          f"{config.to_query()}")
    assert trained >= 1, "the run did not train"
    assert LOW * estimated <= measured <= HIGH * estimated, f"measured {measured:.0f} MB, estimated {estimated:.0f} MB"
