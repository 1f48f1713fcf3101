"""A run's cost estimated from its config before it starts, and the deployment's budget for it.

Limits on each field (``bnviz.config.LIMITS``) hold one at a time, but together they admit
a run of 20 x 1024 units at batch 2048 that needs ~0.7 GB and seconds a step. So before a
run starts the page asks ``estimate`` what it will cost and ``refusals`` whether that fits:
memory per run, memory per tab (a comparison's runs together), CPU time per step and for the
whole run, each with a refusal that says what to change.

The estimate adds up, from the network's shapes (counted here without torch: the web server
never loads it):
1. parameters: weights and gradients, plus Adam's two moments or momentum's one, plus the
   landscape probe's copies of the weights and gradients;
2. activations kept for backward: the batch times every hidden layer's features times the
   tensors a layer keeps (``LAYER_TENSORS``), and for the CNN the unfolded inputs of its
   convolutions, twice (``UNFOLDED_COPIES``); held-out evaluation runs in chunks and counts
   when it is larger;
3. the probe's ring of raw pre-activations and the reducer's work buffers (``RING_BYTES``);
4. the bounded history, once in the run and once in the server that draws it;
5. the dataset when it is not the one the fork server preloaded; and a fixed base.
Then a factor for what the allocator keeps (``ALLOCATOR``). Time is floating-point work at
a measured rate plus a cost per value touched and per step. The constants were fitted to
runs measured in a real process on this 2-core machine (README, "A class at once");
``tests/test_budget.py`` checks the memory against measured PSS within a tolerance.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from bnviz.config import RunConfig

# Deployers set the budget with environment variables, like the other limits.
ENV_RUN_MB = "BNVIZ_RUN_MB"  # memory one run may need
ENV_TAB_MB = "BNVIZ_TAB_MB"  # memory one tab's runs may need together (a comparison runs up to 4)
ENV_STEP_MS = "BNVIZ_STEP_MS"  # CPU time one step may take on one core
ENV_RUN_MINUTES = "BNVIZ_RUN_MINUTES"  # CPU time a whole run may take on one core

# Defaults for a class of thirty on a 2.7 GB, one-core container with 4 trainer slots: the server,
# the fork server and thirty sessions take ~0.6 GB, so 4 runs of 400 MB leave ~0.5 GB to spare.
DEFAULT_RUN_MB = 400.0
DEFAULT_TAB_MB = 800.0  # one tab at most half of what the runs may take together
DEFAULT_STEP_MS = 250.0  # four steps a second on a free core: slower runs look frozen on a shared one
DEFAULT_RUN_MINUTES = 30.0  # of one core: a lesson's length; a longer run holds a slot too long

# Shapes the config does not hold (bnviz.data, bnviz.model, bnviz.probes, bnviz.history, bnviz.stats)
INPUT_SHAPE = (1, 28, 28)  # every bundled dataset
CLASSES = 10
CNN_CHANNELS = (8, 16, 32, 64)
CNN_KERNELS = (5, 3, 3, 3)
CNN_STRIDE = 2
DATASET_IMAGES = {"mnist": 0, "fashion-mnist": 12_000, "synthetic": 7_000,  # mnist is the fork server's, shared
                  "mnist-shifted": 2_000}  # its own shifted held-out images beside mnist's shared training set
DATASET_LOAD = 1.5  # while it loads: the images as bytes and the synthetic set made in float64, beside the float copy kept
RING_ELEMENTS = 2_000_000
MAX_RING_STEPS = 128
HISTORY_COLUMNS = 1024
HISTORY_VALUES = 48 + 40 + 16  # per layer and column: pre bins, post bins, the lines
EVAL_CHUNK = 1000
STEP_SCALES = 5  # the landscape probe's forward and backward passes

# Fitted to measured runs (README): what each part costs beyond its raw floats.
FLOAT = 4  # bytes
LAYER_TENSORS = {"none": 2, "batchnorm": 3, "noisy-batchnorm": 5, "noise": 4}  # kept per layer for backward;
#                  any other normalization counts as batchnorm (one more tensor than none)
OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2, "fastai-adam": 2}  # tensors the size of the weights (AdamW: 2)
RING_BYTES = 16  # per ring value: the ring, the tensors caught for it, the reducer's index and work buffers
BASE_MB = 45.0  # a run process doing nothing: the interpreter and torch's pages it dirties after the fork
ALLOCATOR = 1.15  # freed blocks the allocator keeps, measured over runs at every size
UNFOLDED_COPIES = 2  # the CNN's unfolded inputs: a step's own, and last step's, freed but kept by glibc's
#                      allocator (its dynamic mmap threshold), more or less of them from one run to the next
GEMM_FLOPS = 75e9  # one core's matrix products, measured (3 x 1024 at batch 2048: 494 ms a step)
CONV_FLOPS = 17e9  # convolutions use that core less well (the CNN at batch 2048: 243 ms a step)
VALUE_SECONDS = 2e-9  # each activation value: elementwise passes forward and back, the norm's work
RING_VALUE_SECONDS = 8e-9  # each recorded value: stacked, binned, counted (bnviz.stats)
STEP_SECONDS = 0.6e-3  # each step: Python, the loss, the optimizer's calls, a publish now and then
LAYER_SECONDS = 0.09e-3  # each layer of a step: its modules' calls forward and back, its hook, its norm
PARAM_SECONDS = 0.5e-9  # each weight, per pass over the weights: zeroing, the gradient norm, the update


@dataclass(frozen=True)
class Cost:
    """What a run is expected to need: memory in MB (its parts too) and CPU seconds on one core."""

    config: RunConfig
    memory_mb: float
    step_seconds: float
    parts: dict[str, float] = field(default_factory=dict, compare=False)  # MB by part, before ALLOCATOR

    @property
    def run_seconds(self) -> float:
        return self.step_seconds * self.config.steps

    @property
    def server_mb(self) -> float:
        """The part the web server holds (the history it draws), not the run's process."""
        return self.parts.get("history in the server", 0.0) * ALLOCATOR

    @property
    def process_mb(self) -> float:
        return self.memory_mb - self.server_mb


@dataclass(frozen=True)
class Budget:
    """What a deployment allows: memory per run and per tab, CPU time per step and per run."""

    run_mb: float = DEFAULT_RUN_MB
    tab_mb: float = DEFAULT_TAB_MB
    step_ms: float = DEFAULT_STEP_MS
    run_minutes: float = DEFAULT_RUN_MINUTES

    @classmethod
    def from_env(cls, environ=os.environ) -> tuple[Budget, tuple[str, ...]]:
        """The budget from the environment, and a line for each value that was not usable (its default kept)."""
        values, problems = {}, []
        for name, env in (("run_mb", ENV_RUN_MB), ("tab_mb", ENV_TAB_MB), ("step_ms", ENV_STEP_MS),
                          ("run_minutes", ENV_RUN_MINUTES)):
            text = environ.get(env)
            if text is None:
                continue
            try:
                value = float(text)
                if not (math.isfinite(value) and value > 0):
                    raise ValueError
                values[name] = value
            except ValueError:
                problems.append(f"{env}={text[:20]!r} is not a positive number; using {getattr(cls(), name):g}")
        return cls(**values), tuple(problems)

    def describe(self) -> str:
        return (f"{self.run_mb:,.0f} MB a run, {self.tab_mb:,.0f} MB a tab, {self.step_ms:,.0f} ms a step "
                f"and {self.run_minutes:,.0f} minutes a run")


def estimate(config: RunConfig) -> Cost:
    """Memory (MB) and CPU time per step (s, one core of the measuring machine) of a run of ``config``."""
    net = _shapes(config)
    features = sum(net.features)
    params = net.params
    mb = 1e-6
    weights = params * FLOAT * (2 + _optimizer_state(config) + (2 if config.landscape_every else 0))
    kept = _tensors(config) * features + UNFOLDED_COPIES * net.unfolded + math.prod(INPUT_SHAPE)
    training = config.batch_size * kept * FLOAT
    evaluating = min(EVAL_CHUNK, config.eval_size) * (3 * max(net.features) + math.prod(INPUT_SHAPE)) * FLOAT
    rows = max(1, min(config.batch_size, RING_ELEMENTS // features))
    ring_steps = max(1, min(MAX_RING_STEPS, RING_ELEMENTS // (rows * features)))
    ring_values = ring_steps * rows * features
    history = 8 * HISTORY_COLUMNS * HISTORY_VALUES * len(net.features)
    parts = {
        "base": BASE_MB,
        "weights, gradients and optimizer": weights * mb,
        "activations": max(training, evaluating) * mb,
        "recorded activations": ring_values * RING_BYTES * mb,
        "history": 2 * history * mb,  # as kept, and pickled on its way to the server
        "dataset": DATASET_LOAD * DATASET_IMAGES.get(config.dataset, 0) * math.prod(INPUT_SHAPE) * FLOAT * mb,
        "history in the server": history * mb,
    }
    memory = ALLOCATOR * sum(parts.values())
    return Cost(config, memory, _step_seconds(config, net, ring_values / ring_steps), parts)


def refusals(configs, budget: Budget) -> list[str]:
    """Why these runs (one tab's) do not fit the budget, each in a sentence that says what to
    change; an empty list when they fit."""
    costs = [estimate(config) for config in configs]
    problems = []
    for cost in costs:
        label = _label(cost.config, len(costs))
        if cost.memory_mb > budget.run_mb:
            problems.append(f"{label} needs ~{cost.memory_mb:,.0f} MB; this server allows {budget.run_mb:,.0f} MB "
                            f"per run: {_memory_advice(cost)}.")
        if cost.step_seconds * 1000 > budget.step_ms:
            problems.append(f"{label} needs ~{_duration(cost.step_seconds)} a step on one core; this server allows "
                            f"{budget.step_ms:,.0f} ms: {_time_advice(cost)}.")
        elif cost.run_seconds > budget.run_minutes * 60:
            fits = int(budget.run_minutes * 60 / cost.step_seconds)
            problems.append(f"{label} needs ~{_duration(cost.run_seconds)} of one core for {cost.config.steps:,} steps; "
                            f"this server allows {budget.run_minutes:,.0f} minutes a run: at most {fits:,} steps, "
                            f"or {_time_advice(cost)}.")
    total = sum(cost.memory_mb for cost in costs)
    if len(costs) > 1 and total > budget.tab_mb:
        problems.append(f"These {len(costs)} runs side by side need ~{total:,.0f} MB together; this server allows "
                        f"{budget.tab_mb:,.0f} MB per tab: turn off the comparison, or choose "
                        f"{_memory_advice(max(costs, key=lambda c: c.memory_mb))}.")
    return problems


def summary(configs) -> str:
    """One line for the page: what these runs are expected to need."""
    costs = [estimate(config) for config in configs]
    memory = sum(cost.memory_mb for cost in costs)
    step = max(cost.step_seconds for cost in costs)
    runs = f"{len(costs)} runs" if len(costs) > 1 else "this run"
    return f"Estimated for {runs}: ~{memory:,.0f} MB, ~{_duration(step)} a step on one core."


@dataclass(frozen=True)
class _Net:
    features: tuple[int, ...]  # per hidden layer, per example: what its nonlinearity sees
    params: int  # trained parameters
    flops: float  # forward multiply-adds x 2, per example
    unfolded: int  # per example: the CNN's unfolded convolution inputs (0 for an MLP)
    conv: bool


def _shapes(config: RunConfig) -> _Net:
    """The network's sizes as bnviz.model builds it (tests/test_budget.py compares with torch)."""
    norm = config.norm in ("batchnorm", "noisy-batchnorm")
    inputs = math.prod(INPUT_SHAPE)
    if config.arch == "mlp":
        sizes = (inputs,) + (config.width,) * config.depth
        params = sum(a * b + b for a, b in zip(sizes, sizes[1:])) + sizes[-1] * CLASSES + CLASSES
        params += 2 * config.width * config.depth if norm else 0
        macs = sum(a * b for a, b in zip(sizes, sizes[1:])) + sizes[-1] * CLASSES
        return _Net((config.width,) * config.depth, params, 2.0 * macs, 0, conv=False)
    channels, side = INPUT_SHAPE[0], INPUT_SHAPE[1]
    features, params, macs, unfolded = [], 0, 0, 0
    for out, kernel in zip(CNN_CHANNELS + (CLASSES,), CNN_KERNELS + (3,)):
        side = (side + 2 * (kernel // 2) - kernel) // CNN_STRIDE + 1
        taps = channels * kernel * kernel
        params += out * taps + out + (2 * out if norm else 0)
        macs += out * taps * side * side
        unfolded += taps * side * side
        features.append(out * side * side)
        channels = out
    return _Net(tuple(features[:-1]), params, 2.0 * macs, unfolded, conv=True)


def _step_seconds(config: RunConfig, net: _Net, ring_values_per_step: float) -> float:
    """CPU seconds a step takes on one core: work at measured rates, plus evaluation and the
    landscape probe spread over the steps between them."""
    rate = CONV_FLOPS if net.conv else GEMM_FLOPS
    layers = len(net.features)
    values = config.batch_size * sum(net.features) * _tensors(config)
    train = (3 * net.flops * config.batch_size / rate + values * VALUE_SECONDS
             + net.params * PARAM_SECONDS * (3 + 2 * _optimizer_state(config))
             + STEP_SECONDS + LAYER_SECONDS * layers)
    recorded = ring_values_per_step * RING_VALUE_SECONDS / config.record_every
    evaluate = (config.eval_size * net.flops / rate + config.eval_size * sum(net.features) * VALUE_SECONDS) / config.eval_every
    landscape = STEP_SCALES * (train + 4 * net.params * PARAM_SECONDS) / config.landscape_every if config.landscape_every else 0.0
    return train + recorded + evaluate + landscape


def _optimizer_state(config: RunConfig) -> int:
    return OPTIMIZER_STATE.get(config.optimizer, max(OPTIMIZER_STATE.values()))  # one not listed: as many as Adam


def _tensors(config: RunConfig) -> int:
    return LAYER_TENSORS.get(config.norm, LAYER_TENSORS["batchnorm"])


def _memory_advice(cost: Cost) -> str:
    parts = cost.parts
    biggest = max(("weights, gradients and optimizer", "activations", "recorded activations", "dataset"), key=parts.get)
    config = cost.config
    if biggest == "weights, gradients and optimizer":
        advice = "fewer units or fewer layers" if config.arch == "mlp" else "a smaller batch"
        if _optimizer_state(config):
            advice += f", or SGD instead of {config.optimizer} (it keeps no extra copies of the weights)"
        if config.landscape_every:
            advice += ", or the landscape probe off (landscape_every=0: it copies the weights)"
        return advice
    if biggest == "activations":
        advice = "a smaller batch" if config.arch == "cnn" else "a smaller batch or fewer units"
        if config.norm in ("noisy-batchnorm", "noise"):
            advice += " (the noise keeps two more copies of every activation)"
        return advice
    if biggest == "dataset":
        return "the mnist dataset (already loaded for every run)"
    return "a smaller batch" if config.arch == "cnn" else "a smaller batch or fewer units"


def _time_advice(cost: Cost) -> str:
    config = cost.config
    advice = ["a smaller batch"] + ([] if config.arch == "cnn" else ["fewer units or layers"])
    if config.landscape_every and config.landscape_every < 50:
        advice.insert(0, "the landscape probe less often (landscape_every 50 or more, or 0)")
    if config.eval_every < 50:
        advice.insert(0, "evaluation less often (eval_every 50 or more)")
    return " or ".join(advice)


def _label(config: RunConfig, runs: int) -> str:
    return f"The {config.norm} run" if runs > 1 else "This run"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.0f} minutes"
    return f"{seconds / 3600:,.0f} hours" if seconds < 172_800 else f"{seconds / 86400:,.0f} days"
