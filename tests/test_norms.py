"""Tests for bnviz.norms and the norm settings: each per-example norm against torch's own module
(output, input gradient and parameter gradients), where each one applies, and how the
networks place them."""

import pytest
import torch
from torch import nn

from bnviz.config import CNN_FIRST_CHANNELS, RunConfig
from bnviz.model import CNN_CHANNELS, build_model
from bnviz.norms import GroupNorm

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def compare(ours: GroupNorm, reference: nn.Module, x: torch.Tensor, expand=lambda p: p) -> None:
    """Same output and input gradient in float64; ours' random affine copied into the reference
    (``expand`` maps our per-channel parameter to the reference's shape); parameter gradients match
    once the reference's are summed back to one per channel."""
    ours, reference, x = ours.double(), reference.double(), x.double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ours.weight.copy_(torch.rand(ours.weight.shape, generator=generator, dtype=torch.float64) * 1.5 + 0.5)
        reference.weight.copy_(expand(ours.weight))
        if ours.bias is not None:
            ours.bias.copy_(torch.rand(ours.bias.shape, generator=generator, dtype=torch.float64) * 2 - 1)
            reference.bias.copy_(expand(ours.bias))
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_ref = ours(x_ours), reference(x_ref)
    torch.testing.assert_close(out_ours, out_ref)
    upstream = torch.randn(out_ours.shape, generator=generator, dtype=torch.float64)
    out_ours.backward(upstream), out_ref.backward(upstream)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    per_channel = (lambda g: g.sum(tuple(range(1, g.dim())))) if reference.weight.dim() > 1 else (lambda g: g)
    torch.testing.assert_close(ours.weight.grad, per_channel(reference.weight.grad))
    if ours.bias is not None:
        torch.testing.assert_close(ours.bias.grad, per_channel(reference.bias.grad))


def data(*shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 3 + 1.5


def per_position(shape):
    return lambda p: p.view(-1, 1, 1).expand(shape)


def test_layernorm_mlp_equals_nn_layernorm():
    compare(GroupNorm(20, groups=1), nn.LayerNorm(20), data(16, 20))


def test_layernorm_cnn_equals_nn_layernorm_over_channels_and_positions():
    """Wu & He's LayerNorm of a conv layer: each example over (C, H, W), a scale and shift per channel."""
    compare(GroupNorm(8, groups=1), nn.LayerNorm([8, 5, 5]), data(4, 8, 5, 5), per_position((8, 5, 5)))


@pytest.mark.parametrize("shape", [(6, 8), (6, 8, 5, 5)])
@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_groupnorm_equals_nn_groupnorm(shape, groups):
    compare(GroupNorm(8, groups=groups), nn.GroupNorm(groups, 8), data(*shape))


def test_instancenorm_equals_nn_instancenorm2d():
    compare(GroupNorm(8, groups=8), nn.InstanceNorm2d(8, affine=True), data(4, 8, 5, 5))


def test_rmsnorm_mlp_equals_nn_rmsnorm():
    compare(GroupNorm(20, groups=1, center=False), nn.RMSNorm(20, eps=1e-5), data(16, 20))


def test_rmsnorm_cnn_equals_nn_rmsnorm_over_channels_and_positions():
    compare(GroupNorm(8, groups=1, center=False), nn.RMSNorm([8, 5, 5], eps=1e-5), data(4, 8, 5, 5),
            per_position((8, 5, 5)))


def test_per_example_norms_do_not_depend_on_the_batch():
    """The point of them: an example's output is the same alone or in any batch (BN's is not)."""
    x = data(32, 16, 4, 4)
    for norm in (GroupNorm(16, 1), GroupNorm(16, 4), GroupNorm(16, 16), GroupNorm(16, 1, center=False)):
        torch.testing.assert_close(norm(x)[:1], norm(x[:1]))
    batchnorm = nn.BatchNorm2d(16).train()
    assert not torch.allclose(batchnorm(x)[:1], batchnorm(x[:1]))


def test_groupnorm_refuses_groups_that_do_not_divide_and_wrong_inputs():
    with pytest.raises(ValueError, match="groups must divide the 10 channels"):
        GroupNorm(10, groups=4)
    with pytest.raises(ValueError, match=r"expected \(batch, 8\)"):
        GroupNorm(8)(torch.zeros(2, 8, 3))


def test_instancenorm_is_refused_for_the_mlp_with_the_reason():
    with pytest.raises(ValueError, match="instancenorm normalizes each channel of each example over its positions"):
        RunConfig(arch="mlp", norm="instancenorm")
    with pytest.raises(ValueError, match="use arch cnn"):
        RunConfig().replace(norm="instancenorm")
    assert RunConfig(arch="cnn", norm="instancenorm").norm == "instancenorm"


@pytest.mark.parametrize("changes, message", [
    (dict(norm="groupnorm", width=50, groups=4), "groups must divide width 50"),
    (dict(norm="groupnorm", arch="cnn", groups=16), "groups must divide the CNN's 8..64 channels"),
    (dict(groups=0), "groups must be between 1 and 1024"),
    (dict(dropout=1.0), "dropout must be between 0 and 0.9"),
    (dict(bn_momentum=0.0), "bn_momentum must be between 0.0001 and 1"),
])
def test_bad_norm_settings_are_refused_with_a_clear_message(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**changes)


def test_groups_only_matter_for_groupnorm():
    assert RunConfig(norm="layernorm", width=50, groups=4).width == 50  # groups unused: no error


def test_cnn_first_channels_constant_matches_the_model():
    assert CNN_FIRST_CHANNELS == min(CNN_CHANNELS)


@pytest.mark.parametrize("norm, groups_of", [("layernorm", lambda c, g: 1), ("rmsnorm", lambda c, g: 1),
                                             ("groupnorm", lambda c, g: g), ("instancenorm", lambda c, g: c)])
@pytest.mark.parametrize("position", ["before", "after"])
def test_networks_place_each_norm_like_bn(norm, groups_of, position):
    archs = ("cnn",) if norm == "instancenorm" else ("mlp", "cnn")
    for arch in archs:
        config = RunConfig(arch=arch, norm=norm, norm_position=position, groups=2, activation="relu")
        network = build_model(config)
        for block in network.blocks:
            channels = block.layer.out_channels if arch == "cnn" else block.layer.out_features
            assert isinstance(block.norm, GroupNorm)
            assert block.norm.groups == groups_of(channels, 2)
            assert block.norm.center == (norm != "rmsnorm")
            parts = [type(part).__name__ for part in block._parts]
            expected = ["GroupNorm", "ReLU"] if position == "before" else ["ReLU", "GroupNorm"]
            assert parts[1:] == expected
        if arch == "cnn":  # the head (10 logits of one pixel) stays unnormalized: see bnviz.model
            assert len(network.head) == 1
        assert network(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_dropout_ends_every_hidden_block_and_is_off_in_eval(arch):
    network = build_model(RunConfig(arch=arch, norm="batchnorm", norm_position="after", dropout=0.5,
                                    activation="relu"))
    for block in network.blocks:
        assert isinstance(block._parts[-1], nn.Dropout) and block.dropout.p == 0.5
    assert not any(isinstance(m, nn.Dropout) for m in build_model(RunConfig(arch=arch, activation="relu")).modules())
    x = torch.randn(8, 1, 28, 28)
    network.eval()
    torch.testing.assert_close(network(x), network(x))  # no randomness left in evaluation


def test_paired_norms_start_from_identical_weights():
    base = RunConfig(arch="cnn", activation="relu", seed=4)
    networks = [build_model(base.paired_with(norm=norm)) for norm in
                ("none", "batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm")]
    for network in networks[1:]:
        for ours, theirs in zip(network.weighted_layers(), networks[0].weighted_layers()):
            assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


def test_bn_momentum_reaches_every_batchnorm():
    for norm in ("batchnorm", "noisy-batchnorm"):
        network = build_model(RunConfig(norm=norm, bn_momentum=0.01))
        momenta = {m.momentum for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        assert momenta == {0.01}
