"""RunConfig: the one frozen description of a training run.

Everything that decides what a run does lives here, validated on construction, and
round-trips through JSON (run files), URL query parameters (shared links) and the command
line's ``--set key=value``. Field names are the public vocabulary of all three.
The limits below exist so that one visitor of a shared deployment cannot take it down.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields

DATASETS = ("mnist", "fashion-mnist", "synthetic", "mnist-shifted")  # mnist-shifted: held-out images shifted (bnviz.data)
ARCHS = ("mlp", "cnn")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky-relu", "gelu", "linear")
NORMS = ("none", "batchnorm", "noisy-batchnorm", "noise",  # "noise": the same noise, no BN
         "layernorm", "groupnorm", "instancenorm", "rmsnorm")  # per example: bnviz.norms
RUNNING_STATS_NORMS = ("batchnorm", "noisy-batchnorm")  # norms that evaluate with running averages
CNN_ONLY_NORMS = ("instancenorm",)  # an MLP unit holds one value per example: nothing to average over
CNN_FIRST_CHANNELS = 8  # bnviz.model.CNN_CHANNELS[0], the fewest channels a CNN layer has (config imports no torch)
NORM_POSITIONS = ("before", "after")
INITS = ("default", "xavier-normal", "xavier-uniform", "kaiming-normal", "kaiming-uniform", "gaussian")
OPTIMIZERS = ("sgd", "momentum", "adam", "fastai-adam")  # "fastai-adam": the fastai book's (bnviz.optim)
SCHEDULES = ("constant", "onecycle")

KEY_LENGTH = 16  # hex digits of RunConfig.key(): 64 bits, no collision among any number of runs a server sees

# Sizes a shared deployment can afford: (lowest, highest) for each bounded field.
LIMITS = {
    "depth": (1, 20),  # deep enough to show saturation, shallow enough for a laptop
    "width": (8, 1024),
    "batch_size": (1, 2048),  # the fastai chapter uses 512
    "steps": (1, 200_000),  # 4x the BN paper's 50,000
    "lr": (1e-5, 100.0),  # the trainability map goes a decade past where a plain net diverges (the BN paper ran 30x rates)
    "init_sigma": (1e-4, 10.0),
    "seed": (0, 2**31 - 1),
    "record_every": (1, 10_000),
    "eval_every": (1, 200_000),
    "eval_size": (100, 10_000),
    "noise_mean": (0.0, 10.0),
    "noise_std": (1.0, 10.0),
    "landscape_every": (0, 200_000),
    "groups": (1, 1024),  # at most one per channel (InstanceNorm's limit); must also divide them
    "dropout": (0.0, 0.9),  # a rate of 1 drops everything
    "bn_momentum": (0.0001, 1.0),  # torch's range is (0, 1]; 0 would freeze the running averages
}


@dataclass(frozen=True)
class RunConfig:
    """What to train and how; every field has a default that is a sensible first run."""

    dataset: str = "mnist"  # bundled with the app, so the default path needs no download
    arch: str = "mlp"  # "cnn" is the fastai chapter's stride-2 conv net
    depth: int = 3  # hidden layers; the BN paper's Figure 1 uses 3
    width: int = 100  # units per hidden layer; Figure 1 uses 100
    activation: str = "sigmoid"  # the paper's choice, and the one that saturates visibly
    norm: str = "none"  # the paper compares none and "batchnorm"; NORMS lists the others (bnviz.model, bnviz.norms)
    norm_position: str = "before"  # the paper normalizes x = Wu + b, then applies the nonlinearity
    groups: int = 4  # groupnorm: channel groups; divides the CNN's 8..64 channels and width 100 (Wu & He use 32)
    dropout: float = 0.0  # rate of nn.Dropout at the end of every hidden block (after activation and norm); 0 = none
    bn_momentum: float = 0.1  # BatchNorm's running-average momentum; torch's default
    noise_mean: float = 0.5  # noisy BN: the per-step noise mean is drawn from U(-noise_mean, noise_mean)
    noise_std: float = 1.25  # noisy BN: the per-step noise std is drawn from U(1, noise_std)
    init: str = "gaussian"  # the paper's "small random Gaussian"
    init_sigma: float = 0.1  # sigma of that Gaussian; the paper does not state it (our choice)
    optimizer: str = "sgd"  # the paper does not state it; plain SGD shows the effect most clearly
    lr: float = 0.5  # a fixed rate at which both the BN and the plain net train (ioffe-fig1 chooses its own: README)
    schedule: str = "constant"  # "onecycle" follows fastai's fit_one_cycle
    batch_size: int = 60  # Figure 1 uses 60 examples per mini-batch
    steps: int = 5000  # a few minutes on a laptop; Figure 1 runs 50,000
    seed: int = 0  # same seed: same data order and same initial weights
    record_every: int = 1  # record statistics every N steps; 1 = every step
    eval_every: int = 250  # held-out accuracy every N steps
    eval_size: int = 2000  # held-out examples per evaluation: enough for +-1% accuracy
    landscape_every: int = 0  # Santurkar's loss-landscape probe every N steps; 0 = off

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes) -> RunConfig:
        """A copy with some fields changed, validated like any other."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """Strict: an unknown key is a ValueError, never silently ignored."""
        if not isinstance(values, dict):
            raise ValueError(f"expected a mapping of settings (got {type(values).__name__})")
        return cls().replace(**{key: _coerce(key, value) for key, value in values.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            values = json.loads(text)
        except RecursionError:  # deeply nested input: not a config, and not a crash either
            raise ValueError("config JSON is nested too deeply") from None
        return cls.from_dict(values)

    def to_query(self) -> dict[str, str]:
        """Only the fields that differ from the defaults, so shared links stay short."""
        default = RunConfig()
        return {
            f.name: _format(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    @classmethod
    def from_query(cls, query: dict[str, str]) -> RunConfig:
        return cls.from_dict(dict(query))

    def key(self) -> str:
        """A short name for this exact run: every cache by config (the server's runs, the map's
        cells) files a run under it. Equal configs give equal keys on every machine, since
        one config gives one bit-identical run; any changed field gives another key."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:KEY_LENGTH]

    def paired_with(self, **changes) -> RunConfig:
        """The same run with one setting changed: same seed, so same data order and weights."""
        return self.replace(**changes)


def checked_lr(lr) -> float:
    """A live learning rate within the limits, or a ValueError that says them (a run's rate
    changes while it trains: ``Trainer.set_lr``)."""
    low, high = LIMITS["lr"]
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and low <= lr <= high):
        raise ValueError(f"lr must be between {low:g} and {high:g} (got {lr!r})")
    return float(lr)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(RunConfig))


def field_kind(name: str) -> str:
    """A field's type as its annotation spells it: "int", "float" or "str"."""
    return {f.name: f.type for f in fields(RunConfig)}[name]


def _format(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _coerce(name: str, value):
    """Turn a string (URL, command line) or JSON value into the field's type."""
    if name not in field_names():
        raise ValueError(f"unknown setting {name!r}; known settings: {', '.join(field_names())}")
    kind = field_kind(name)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text (got {value!r:.40})")
        return value.strip().lower()
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number (got {value!r})")
    try:
        if kind == "int":
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float):
                if not math.isfinite(number) or number != int(number):
                    raise ValueError
                number = int(number)
            return int(number)
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be {'a whole number' if kind == 'int' else 'a number'} (got {str(value)[:40]!r})") from None


def _validate(config: RunConfig) -> None:
    choices = {
        "dataset": DATASETS,
        "arch": ARCHS,
        "activation": ACTIVATIONS,
        "norm": NORMS,
        "norm_position": NORM_POSITIONS,
        "init": INITS,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
    }
    for name, allowed in choices.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)} (got {str(value)[:40]!r})")
    for name, (low, high) in LIMITS.items():
        value = getattr(config, name)
        expected = int if field_kind(name) == "int" else float
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number (got {value!r:.40})")
        if expected is int and not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number (got {value!r})")
        if not low <= value <= high:  # also false for NaN; math.isfinite would overflow on a huge int
            raise ValueError(f"{name} must be between {_show(low)} and {_show(high)} (got {_show(value)})")
    _validate_norm(config)


def _validate_norm(config: RunConfig) -> None:
    """Where a norm does not apply, say so (a ValueError) rather than build something meaningless."""
    if config.norm in CNN_ONLY_NORMS and config.arch != "cnn":
        raise ValueError(f"{config.norm} normalizes each channel of each example over its positions; the MLP's "
                         "units have one value per example, so there is nothing to average: use arch cnn, or "
                         "layernorm / groupnorm for the MLP")
    if config.norm == "groupnorm":
        channels = config.width if config.arch == "mlp" else CNN_FIRST_CHANNELS
        what = f"width {config.width}" if config.arch == "mlp" else f"the CNN's {CNN_FIRST_CHANNELS}..64 channels"
        if channels % config.groups:
            raise ValueError(f"groups must divide {what} into equal groups (got groups {config.groups})")


def _show(number) -> str:
    """A number exactly but briefly: ':g' where it is exact (10, 1e-05), all digits where not (2147483647)."""
    if isinstance(number, float):
        short = f"{number:g}"
        return short if float(short) == number else repr(number)
    return str(number)[:40]
