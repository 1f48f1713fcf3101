"""Networks built from a RunConfig: the BN paper's MLP and the fastai chapter's simple CNN.

Every hidden layer is a ``HiddenBlock`` with a ``layer`` (Linear or Conv2d) whose weights
we initialize, an optional ``norm`` placed before or after the nonlinearity, an
``activation`` module that the probes hook (its input is the pre-activation the BN paper
plots, its output the post-activation fastai plots) and, when ``dropout`` > 0, an
``nn.Dropout`` at the end of the block: after the activation and after a norm placed there,
so the next layer sees the dropped units (the head gets none).

Norms: BatchNorm (torch's), noisy BN (below) and the per-example norms of ``bnviz.norms``
(LayerNorm, GroupNorm, InstanceNorm, RMSNorm). The CNN's head (10 channels of one pixel) is
normalized only by the BatchNorm family, as in the fastai chapter: InstanceNorm of a single
pixel is a constant, and a per-example norm of the logits would fix their spread across classes.

Initial weights come from a generator seeded by (seed, layer index), and norm layers draw no
random numbers, so two runs that differ only in ``norm`` start from identical weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnviz.config import RunConfig
from bnviz.norms import GroupNorm

CNN_CHANNELS = (8, 16, 32, 64)  # fastai chapter 13's simple_cnn: 1->8->16->32->64->10
CNN_FIRST_KERNEL = 5  # the chapter uses a 5x5 first conv so it sees more than its 9 inputs
CNN_KERNEL = 3
LEAKY_SLOPE = 0.01  # PyTorch's default negative slope
SEED_STRIDE = 1000  # seeds for layer i of run seed s are s * SEED_STRIDE + i: no overlap below 1000 layers

# Per-example norms as bnviz.norms.GroupNorm's groups: 1 (the whole example), or None: the
# config's ``groups`` for groupnorm, one per channel for instancenorm.
PER_EXAMPLE_GROUPS = {"layernorm": 1, "rmsnorm": 1, "groupnorm": None, "instancenorm": None}
HEAD_NORMS = ("batchnorm", "noisy-batchnorm", "noise")  # the CNN head's norm: see the module docstring

ACTIVATION_MODULES = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky-relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
    "gelu": nn.GELU,
    "linear": nn.Identity,
}


class StepNoise(nn.Module):
    """Noise whose distribution changes every step (Santurkar et al. 2018, §2.1): norm "noise"
    alone, and the second half of ``NoisyBatchNorm``.

    In training, each step draws a mean ``mu ~ U(-noise_mean, noise_mean)`` and a std
    ``sigma ~ U(1, noise_std)``, then adds i.i.d. ``N(mu, sigma^2)`` noise to every
    activation of every sample: a "covariate shift" far larger than training causes.
    The uniform ranges are bnviz's choice (the paper's appendix gives its own per network).
    In evaluation it adds nothing. Its own seeded generator keeps runs reproducible.
    """

    def __init__(self, noise_mean: float, noise_std: float, seed: int):
        super().__init__()
        self.noise_mean = noise_mean
        self.noise_std = noise_std
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        # 1. this step's noise distribution; 2. one draw per activation of every sample
        mu, sigma = torch.rand(2, generator=self.generator).tolist()
        mu = (2 * mu - 1) * self.noise_mean
        sigma = 1 + sigma * (self.noise_std - 1)
        noise = torch.randn(x.shape, generator=self.generator).mul_(sigma).add_(mu)
        return x + noise


class NoisyBatchNorm(nn.Module):
    """BatchNorm followed by ``StepNoise``: Santurkar et al.'s "noisy BN" (§2.1)."""

    def __init__(self, num_features: int, dims: int, noise_mean: float, noise_std: float, seed: int,
                 momentum: float = 0.1):
        super().__init__()
        bn_class = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.bn = bn_class(num_features, momentum=momentum)
        self.noise = StepNoise(noise_mean, noise_std, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise(self.bn(x))


class HiddenBlock(nn.Module):
    """One hidden layer: layer -> [norm] -> activation -> [norm] -> [dropout], as the config places them."""

    def __init__(self, layer: nn.Module, norm: nn.Module | None, activation: nn.Module, norm_before: bool,
                 dropout: nn.Module | None = None):
        super().__init__()
        self.layer = layer
        self.norm = norm
        self.activation = activation
        self.dropout = dropout
        parts = [layer]
        if norm is not None and norm_before:
            parts.append(norm)
        parts.append(activation)
        if norm is not None and not norm_before:
            parts.append(norm)
        if dropout is not None:
            parts.append(dropout)
        self._parts = parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for part in self._parts:
            x = part(x)
        return x


class Network(nn.Module):
    """Hidden blocks then a linear head; ``blocks`` are what the probes watch."""

    def __init__(self, blocks: list[HiddenBlock], head: nn.Module, flatten_input: bool):
        super().__init__()
        self.flatten_input = flatten_input
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten_input:
            x = x.flatten(1)  # (batch, 784)
        for block in self.blocks:
            x = block(x)
        return self.head(x).flatten(1)  # (batch, classes)

    def layer_names(self) -> list[str]:
        return [f"{type(block.layer).__name__.lower()}{i + 1}" for i, block in enumerate(self.blocks)]

    def weighted_layers(self) -> list[nn.Module]:
        return [block.layer for block in self.blocks]


def build_model(config: RunConfig, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> Network:
    """The network the config describes, with its initial weights already drawn."""
    builder = _build_cnn if config.arch == "cnn" else _build_mlp
    network = builder(config, input_shape, num_classes)
    weighted = [block.layer for block in network.blocks] + [_head_layer(network.head)]
    for index, layer in enumerate(weighted):
        generator = torch.Generator().manual_seed(config.seed * SEED_STRIDE + index)
        _initialize(layer, config, generator)
    return network


def _build_mlp(config: RunConfig, input_shape, num_classes) -> Network:
    blocks = []
    features = math.prod(input_shape)
    for index in range(config.depth):
        layer = nn.Linear(features, config.width)
        blocks.append(_block(config, layer, config.width, dims=1, index=index))
        features = config.width
    return Network(blocks, nn.Linear(features, num_classes), flatten_input=True)


def _build_cnn(config: RunConfig, input_shape, num_classes) -> Network:
    blocks = []
    channels = input_shape[0]
    for index, out_channels in enumerate(CNN_CHANNELS):
        kernel = CNN_FIRST_KERNEL if index == 0 else CNN_KERNEL
        layer = nn.Conv2d(channels, out_channels, kernel, stride=2, padding=kernel // 2)
        blocks.append(_block(config, layer, out_channels, dims=2, index=index))
        channels = out_channels
    # The chapter's last conv maps 64 channels of 2x2 to 10 of 1x1, normalized when BN is on.
    head_conv = nn.Conv2d(channels, num_classes, CNN_KERNEL, stride=2, padding=CNN_KERNEL // 2)
    head_norm = _norm(config, num_classes, dims=2, index=len(CNN_CHANNELS)) if config.norm in HEAD_NORMS else None
    head = nn.Sequential(head_conv, head_norm) if head_norm is not None else nn.Sequential(head_conv)
    return Network(blocks, head, flatten_input=False)


def _block(config: RunConfig, layer: nn.Module, features: int, dims: int, index: int) -> HiddenBlock:
    activation = ACTIVATION_MODULES[config.activation]()
    norm = _norm(config, features, dims, index)
    dropout = nn.Dropout(config.dropout) if config.dropout else None
    return HiddenBlock(layer, norm, activation, norm_before=config.norm_position == "before", dropout=dropout)


def _norm(config: RunConfig, features: int, dims: int, index: int) -> nn.Module | None:
    """The config's norm for a layer of ``features`` units (dims 1) or channels (dims 2)."""
    if config.norm == "none":
        return None
    if config.norm == "batchnorm":
        bn_class = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        return bn_class(features, momentum=config.bn_momentum)
    if config.norm in PER_EXAMPLE_GROUPS:  # validated in RunConfig: groups divide, instancenorm is CNN-only
        groups = PER_EXAMPLE_GROUPS[config.norm] or (config.groups if config.norm == "groupnorm" else features)
        return GroupNorm(features, groups, center=config.norm != "rmsnorm")
    noise_seed = config.seed * SEED_STRIDE + 500 + index  # apart from the weight seeds
    if config.norm == "noise":
        return StepNoise(config.noise_mean, config.noise_std, noise_seed)
    return NoisyBatchNorm(features, dims, config.noise_mean, config.noise_std, noise_seed, momentum=config.bn_momentum)


def _head_layer(head: nn.Module) -> nn.Module:
    return head[0] if isinstance(head, nn.Sequential) else head


@torch.no_grad()
def _initialize(layer: nn.Module, config: RunConfig, generator: torch.Generator) -> None:
    """Draw one layer's weights from its own generator, so they do not depend on other layers."""
    weight, bias = layer.weight, layer.bias
    fan_in = weight[0].numel()
    if config.init == "default":
        # PyTorch's own reset_parameters, made deterministic by our generator
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound, generator=generator)
        return
    gain = _gain(config.activation)
    if config.init == "gaussian":
        nn.init.normal_(weight, 0.0, config.init_sigma, generator=generator)
    elif config.init == "xavier-normal":
        nn.init.xavier_normal_(weight, gain=gain, generator=generator)
    elif config.init == "xavier-uniform":
        nn.init.xavier_uniform_(weight, gain=gain, generator=generator)
    elif config.init == "kaiming-normal":
        nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
    elif config.init == "kaiming-uniform":
        nn.init.kaiming_uniform_(weight, nonlinearity="relu", generator=generator)
    nn.init.zeros_(bias)  # the papers' inits set biases to zero


def _gain(activation: str) -> float:
    """Glorot's gain for the nonlinearity; sigmoid and GELU have no entry in PyTorch, so 1."""
    names = {"tanh": "tanh", "relu": "relu", "leaky-relu": "leaky_relu", "linear": "linear"}
    if activation not in names:
        return 1.0
    return nn.init.calculate_gain(names[activation], LEAKY_SLOPE if activation == "leaky-relu" else None)
