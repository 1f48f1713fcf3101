"""Tests for bnviz.model: shapes, block order, BN against hand-built torch layers, seeding,
initialization and the noisy BatchNorm of Santurkar et al.
"""

import pytest
import torch
from torch import nn

from bnviz.config import RunConfig
from bnviz.model import CNN_CHANNELS, HiddenBlock, NoisyBatchNorm, StepNoise, build_model


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as every trainer runs: on a busy machine, tiny ops split over
    several threads stall for tens of milliseconds waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp(**changes) -> nn.Module:
    return build_model(RunConfig(arch="mlp", **changes))


def batch(size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(size, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def order_of_calls(block: HiddenBlock, x: torch.Tensor) -> list[str]:
    """Which of the block's parts run, in the order they run, seen by forward hooks."""
    calls = []
    parts = {"layer": block.layer, "norm": block.norm, "activation": block.activation}
    handles = [module.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
               for name, module in parts.items() if module is not None]
    try:
        block(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def linear_weights(network) -> list[torch.Tensor]:
    """Every weighted layer's weight, the head's included (the CNN's head is conv [-> BN])."""
    head = network.head[0] if isinstance(network.head, nn.Sequential) else network.head
    return [layer.weight.detach().clone() for layer in network.weighted_layers()] + [head.weight.detach().clone()]


def test_mlp_shapes():
    network = mlp(depth=4, width=32)
    assert [block.layer.weight.shape for block in network.blocks] == [(32, 784), (32, 32), (32, 32), (32, 32)]
    assert network.head.weight.shape == (10, 32)
    assert network(batch(5)).shape == (5, 10)
    assert network.layer_names() == ["linear1", "linear2", "linear3", "linear4"]


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_cnn_shapes(norm):
    network = build_model(RunConfig(arch="cnn", activation="relu", norm=norm))
    sizes = []
    handles = [block.activation.register_forward_hook(lambda m, i, o: sizes.append(tuple(i[0].shape[1:])))
               for block in network.blocks]
    assert network(batch(3)).shape == (3, 10)
    for handle in handles:
        handle.remove()
    assert sizes == [(8, 14, 14), (16, 7, 7), (32, 4, 4), (64, 2, 2)]
    assert [block.layer.out_channels for block in network.blocks] == list(CNN_CHANNELS)
    assert network.blocks[0].layer.kernel_size == (5, 5)
    assert network.layer_names() == ["conv2d1", "conv2d2", "conv2d3", "conv2d4"]
    assert isinstance(network.head[-1], nn.BatchNorm2d) == (norm == "batchnorm")


@pytest.mark.parametrize("position, expected", [("before", ["layer", "norm", "activation"]),
                                                ("after", ["layer", "activation", "norm"])])
def test_batchnorm_placement(position, expected):
    network = mlp(depth=2, width=16, norm="batchnorm", norm_position=position)
    x = batch(8).flatten(1)
    assert order_of_calls(network.blocks[0], x) == expected
    assert [type(part) for part in network.blocks[0]._parts] == [nn.Linear, *[
        nn.BatchNorm1d if name == "norm" else nn.Sigmoid for name in expected[1:]]]


def test_no_norm_means_layer_then_activation():
    network = mlp(depth=2, width=16)
    assert network.blocks[0].norm is None
    assert order_of_calls(network.blocks[0], batch(4).flatten(1)) == ["layer", "activation"]


@pytest.mark.parametrize("position", ["before", "after"])
def test_bn_block_equals_hand_built_torch_layers(position):
    network = mlp(depth=2, width=20, norm="batchnorm", norm_position=position, init="xavier-normal")
    network.train()
    block = network.blocks[0]
    linear = nn.Linear(784, 20)
    norm = nn.BatchNorm1d(20)
    with torch.no_grad():
        linear.weight.copy_(block.layer.weight)
        linear.bias.copy_(block.layer.bias)
        norm.weight.uniform_(0.5, 2.0)  # non-trivial affine parameters, copied into ours
        norm.bias.uniform_(-1.0, 1.0)
        block.norm.weight.copy_(norm.weight)
        block.norm.bias.copy_(norm.bias)
    parts = [linear, norm, nn.Sigmoid()] if position == "before" else [linear, nn.Sigmoid(), norm]
    reference = nn.Sequential(*parts).train()
    x = batch(64).flatten(1)
    for _ in range(3):  # running statistics must track too
        torch.testing.assert_close(block(x), reference(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(block.norm.running_mean, norm.running_mean)
    torch.testing.assert_close(block.norm.running_var, norm.running_var)
    network.eval(), reference.eval()
    torch.testing.assert_close(block(x), reference(x), rtol=1e-5, atol=1e-6)


def test_whole_mlp_equals_a_plain_torch_sequential():
    network = mlp(depth=3, width=24, norm="batchnorm", activation="tanh", init="kaiming-normal", seed=5)
    layers = []
    for block in network.blocks:
        linear = nn.Linear(block.layer.in_features, block.layer.out_features)
        linear.load_state_dict(block.layer.state_dict())
        layers += [linear, nn.BatchNorm1d(linear.out_features), nn.Tanh()]
    head = nn.Linear(24, 10)
    head.load_state_dict(network.head.state_dict())
    reference = nn.Sequential(nn.Flatten(), *layers, head)
    x = batch(50)
    torch.testing.assert_close(network(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_same_seed_same_initial_weights(arch):
    config = RunConfig(arch=arch, seed=3, init="default", activation="relu")
    first, second = build_model(config), build_model(config)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_weights_do_not_depend_on_the_global_generator():
    torch.manual_seed(1)
    first = mlp(seed=4)
    torch.manual_seed(2)
    second = mlp(seed=4)
    for a, b in zip(linear_weights(first), linear_weights(second)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("init", ["gaussian", "default", "kaiming-normal"])
def test_paired_norms_start_from_identical_weights(arch, init):
    base = RunConfig(arch=arch, init=init, seed=9, activation="relu")
    networks = [build_model(base.paired_with(norm=norm, norm_position=position))
                for norm in ("none", "batchnorm", "noisy-batchnorm", "noise") for position in ("before", "after")]
    reference = linear_weights(networks[0])
    reference_biases = [layer.bias.detach() for layer in networks[0].weighted_layers()]
    for network in networks[1:]:
        for a, b in zip(reference, linear_weights(network)):
            assert torch.equal(a, b)
        for a, layer in zip(reference_biases, network.weighted_layers()):
            assert torch.equal(a, layer.bias.detach())


def test_different_seed_different_weights():
    first, second = mlp(seed=0), mlp(seed=1)
    for a, b in zip(linear_weights(first), linear_weights(second)):
        assert not torch.equal(a, b)
    layers = linear_weights(first)
    assert not torch.equal(layers[1], layers[2])  # the layers of one network differ too


@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0])
def test_gaussian_init_has_the_requested_sigma(sigma):
    network = mlp(depth=2, width=200, init="gaussian", init_sigma=sigma)
    for layer in network.weighted_layers():
        weight = layer.weight.detach()  # 156,800 or 40,000 draws: the std is within 1%
        assert weight.std().item() == pytest.approx(sigma, rel=0.02)
        assert abs(weight.mean().item()) < 0.02 * sigma
        assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))


def test_default_init_matches_pytorchs_bounds():
    network = mlp(depth=1, width=50, init="default")
    layer = network.blocks[0].layer
    bound = 1 / 784 ** 0.5
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert layer.bias.abs().max() <= bound


def noise_of(module: NoisyBatchNorm | StepNoise, x: torch.Tensor) -> torch.Tensor:
    """What the module added on top of BatchNorm (or on top of nothing, the noise alone)."""
    if isinstance(module, NoisyBatchNorm):
        plain = nn.BatchNorm1d(x.shape[1])
        plain.load_state_dict(module.bn.state_dict())
        return module(x) - plain.train()(x)
    return module(x) - x


@pytest.mark.parametrize("batchnorm", [True, False])
def test_noisy_batchnorm_adds_noise_whose_distribution_changes_every_step(batchnorm):
    noise_mean, noise_std = 0.5, 2.0
    module = (NoisyBatchNorm(64, dims=1, noise_mean=noise_mean, noise_std=noise_std, seed=1) if batchnorm
              else StepNoise(noise_mean=noise_mean, noise_std=noise_std, seed=1)).train()
    x = torch.randn(128, 64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    means, stds = [], []
    for _ in range(150):
        noise = noise_of(module, x)  # 8,192 draws: the mean within ~0.05, the std within ~2%
        means.append(noise.mean().item())
        stds.append(noise.std().item())
    means, stds = torch.tensor(means), torch.tensor(stds)
    assert (means.abs() <= noise_mean + 0.08).all()
    assert ((stds >= 1 * 0.95) & (stds <= noise_std * 1.05)).all()
    # the distribution changes: over 150 steps the draws cover most of both ranges
    assert means.min() < -0.8 * noise_mean and means.max() > 0.8 * noise_mean
    assert stds.min() < 1.1 and stds.max() > 0.9 * noise_std
    assert means.std() > 0.2 and stds.std() > 0.2


def test_noisy_batchnorm_in_eval_mode_equals_batchnorm_exactly():
    module = NoisyBatchNorm(16, dims=1, noise_mean=1.0, noise_std=3.0, seed=2).train()
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(4)) * 2 + 0.5
    module(x)  # one training step: running statistics move
    plain = nn.BatchNorm1d(16)
    plain.load_state_dict(module.bn.state_dict())
    module.eval(), plain.eval()
    assert torch.equal(module(x), plain(x))
    assert torch.equal(module(x), plain(x))  # and no noise on a second call either


def test_noisy_batchnorm_2d_has_the_shape_of_its_input():
    module = NoisyBatchNorm(8, dims=2, noise_mean=0.5, noise_std=1.25, seed=0).train()
    assert isinstance(module.bn, nn.BatchNorm2d)
    x = torch.randn(4, 8, 5, 5)
    assert module(x).shape == x.shape


@pytest.mark.parametrize("norm, module", [("noisy-batchnorm", NoisyBatchNorm), ("noise", StepNoise),
                                          ("batchnorm", nn.BatchNorm1d)])
def test_norm_choices_build_the_right_module(norm, module):
    network = mlp(depth=2, width=16, norm=norm)
    for block in network.blocks:
        assert type(block.norm) is module
        if norm != "batchnorm":
            noise = block.norm if norm == "noise" else block.norm.noise
            assert (noise.noise_mean, noise.noise_std) == (0.5, 1.25)


def test_noise_without_bn_is_the_linear_output_plus_noise():
    network = mlp(depth=1, width=30, norm="noise", activation="linear")
    network.train()
    block = network.blocks[0]
    x = batch(200).flatten(1)
    state = block.norm.generator.get_state()
    noise = block(x) - block.layer(x)  # linear activation: the block is layer + noise
    assert 1 * 0.95 < noise.std().item() < 1.25 * 1.05
    assert abs(noise.mean().item()) < 0.5 + 0.05
    block.norm.generator.set_state(state)  # the same generator state gives the same noise
    torch.testing.assert_close(block(x) - block.layer(x), noise)
    network.eval()
    torch.testing.assert_close(block(x), block.layer(x))


def test_noise_seeds_differ_between_layers():
    network = mlp(depth=2, width=16, norm="noisy-batchnorm")
    first, second = (block.norm.noise.generator.get_state() for block in network.blocks)
    assert not torch.equal(first, second)
