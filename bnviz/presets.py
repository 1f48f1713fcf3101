"""Named starting points: the published experiments bnviz reproduces, and what they found.

Each preset is a RunConfig plus one line on what it shows, the published result to show
next to ours, and which ``norm`` values to run side by side. Settings a paper does not
state are bnviz's own choice and are listed in ``assumed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bnviz.config import RunConfig


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str  # one line: what a user sees
    config: RunConfig
    published: str  # the paper's result, in a sentence
    source: str  # citation
    compare: tuple[str, ...] = ("none", "batchnorm")  # norm values for a paired comparison
    assumed: tuple[str, ...] = ()  # settings the source does not state
    published_accuracy: tuple[tuple[str, float], ...] = ()  # (norm, final test accuracy) where published


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="ioffe-fig1",
            summary="The BN paper's Figure 1: a 3x100 sigmoid MLP on MNIST; without BN the sigmoid inputs drift.",
            config=RunConfig(arch="mlp", depth=3, width=100, activation="sigmoid", norm="none",
                             init="gaussian", init_sigma=0.1, optimizer="sgd", lr=1.0, batch_size=60,
                             steps=50_000, eval_every=500),
            published="With BN the network trains faster and reaches higher test accuracy; the input to a "
                      "last-layer sigmoid keeps a stable distribution with BN and drifts without it.",
            source="Ioffe & Szegedy 2015, arXiv:1502.03167, Figure 1",
            assumed=("optimizer sgd (plain, constant rate)",
                     "lr 1.0: the rate at which the network WITHOUT BN learns fastest (largest area under its "
                     "test accuracy curve over 1,000 steps, 3 seeds, on the grid 0.2, 0.5, 1, 2, 5); chosen "
                     "for the baseline, never for BN's lead (README: 'How the unstated settings were chosen')",
                     "init_sigma 0.1: inside the band where the network without BN trains best in the "
                     "trainability map (bnviz map ioffe-fig1)"),
        ),
        Preset(
            name="fastai-collapse",
            summary="fastai's 'colorful dimension': a simple CNN whose activations collapse and recover without BN.",
            config=RunConfig(arch="cnn", activation="relu", norm="none", init="default", optimizer="fastai-adam",
                             lr=0.06, schedule="onecycle", batch_size=512, steps=117, eval_every=39),
            published="Without BN the non-zero activations grow, collapse and repeat before training settles "
                      "(accuracy 0.9743 after one epoch); with Conv-BN-ReLU training is smooth (0.9864).",
            source="Howard & Gugger, Deep Learning for Coders, chapter 13",
            published_accuracy=(("none", 0.9743), ("batchnorm", 0.9864)),
            assumed=("117 steps = one epoch of the full 60,000-image MNIST; our bundled set is 8,000 images",
                     "the book's optimizer as fastai runs it (bnviz.optim): Adam with beta2 0.99, eps 1e-5, decoupled "
                     "weight decay 0.01 on the weights only, beta1 cycled 0.95 -> 0.85 -> 0.95 against the rate "
                     "(lr/25 -> 0.06 -> lr/1e5)",
                     "what still differs: pixels standardized with the whole training set's mean and std (fastai's "
                     "Normalize takes one batch's); the batch order is ours; ActivationStats hooks the Conv2d "
                     "output, which without BN is our pre-activation (with BN, ours is the BatchNorm's output, "
                     "which ActivationStats also hooks); its histogram keeps [0, 10] in 40 bins, ours is signed"),
        ),
        Preset(
            name="noisy-bn",
            summary="Santurkar et al.: BN with heavy noise added after it still trains about as well as BN.",
            config=RunConfig(arch="mlp", depth=4, width=100, activation="relu", norm="noisy-batchnorm",
                             init="kaiming-normal", optimizer="sgd", lr=0.1, batch_size=128, steps=3000,
                             eval_every=250),
            published="A network with noisy BN trains about as well as one with plain BN, and both beat the "
                      "network without BN; the same noise without BN stops training.",
            source="Santurkar et al. 2018, arXiv:1805.11604, §2.1 (VGG on CIFAR-10 in the paper)",
            compare=("none", "batchnorm", "noisy-batchnorm", "noise"),
            assumed=("a 4x100 ReLU MLP on MNIST instead of VGG on CIFAR-10",
                     "noise mean from U(-0.5, 0.5), std from U(1, 1.25), redrawn every step"),
        ),
        Preset(
            name="deep-sigmoid",
            summary="A 10-layer sigmoid MLP with a poor init: without BN the units saturate and it barely learns.",
            config=RunConfig(arch="mlp", depth=10, width=100, activation="sigmoid", norm="none",
                             init="gaussian", init_sigma=1.0, optimizer="sgd", lr=0.5, batch_size=60,
                             steps=3000, eval_every=250),
            published="Saturating nonlinearities in deep networks stall training unless the layer inputs are "
                      "normalized (the BN paper, §1 and §4.2 'BN-x5-Sigmoid').",
            source="Ioffe & Szegedy 2015, arXiv:1502.03167",
            assumed=("depth 10, init_sigma 1.0, lr 0.5: chosen to saturate",),
        ),
        Preset(
            name="landscape",
            summary="Santurkar et al.'s smoothness probe: loss and gradient change less along the gradient with BN.",
            config=RunConfig(arch="mlp", depth=4, width=100, activation="relu", norm="none",
                             init="kaiming-normal", optimizer="sgd", lr=0.1, batch_size=128, steps=2000,
                             eval_every=250, landscape_every=50),
            published="With BN the loss range, the gradient predictiveness and the effective beta-smoothness "
                      "along the gradient direction are all smaller.",
            source="Santurkar et al. 2018, arXiv:1805.11604, §3.2, Figure 4",
            assumed=("a 4x100 ReLU MLP on MNIST", "step sizes 0.25x to 4x the learning rate"),
        ),
        Preset(
            name="bn-eval-pitfall",
            summary="BN's train/eval pitfall: lagging running averages; re-estimating them on training data fixes it.",
            config=RunConfig(norm="batchnorm", bn_momentum=0.001, steps=1500, eval_every=100),
            published="A BN network is evaluated with population statistics estimated while training; with "
                      "an exponential moving average they can be far from the network's true statistics "
                      "(a small momentum, early in training), and re-computing them on training data "
                      "(\"precise BN\") restores the accuracy.",
            source="Ioffe & Szegedy 2015, arXiv:1502.03167, §3.1; Wu & Johnson 2021, arXiv:2105.07576, §3",
            compare=("batchnorm", "layernorm"),
            assumed=("the ioffe-fig1 network, 1,500 steps", "bn_momentum 0.001 (torch's default is 0.1), chosen "
                     "so the running averages lag: the pitfall on purpose"),
        ),
        Preset(
            name="bn-shift",
            summary="A train/test shift: BN's running averages miss it; the batch's own statistics undo it.",
            config=RunConfig(norm="batchnorm", dataset="mnist-shifted", steps=1500, eval_every=100),
            published="A BN network's statistics carry its domain: replacing the running averages, estimated on "
                      "the training (source) domain, by statistics of the test (target) domain adapts the network "
                      "to the new domain without any training (AdaBN).",
            source="Li, Wang, Shi, Liu & Hou 2016, arXiv:1603.04779, §3",
            compare=("batchnorm", "none"),
            assumed=("the ioffe-fig1 network, 1,500 steps", "the shift, our choice: each held-out pixel x "
                     "(standardized) becomes 0.75 x + 0.5, an affine change that a BN layer before the first "
                     "activation undoes with the batch's statistics", "the batch's statistics are each held-out "
                     "batch's own (the training batch size), not the whole test domain's as in AdaBN"),
        ),
        Preset(
            name="wu-he-batch",
            summary="Wu & He: BN gets worse as the batch shrinks to 2; GroupNorm and LayerNorm do not.",
            config=RunConfig(activation="relu", norm="batchnorm", init="kaiming-normal", lr=0.05, batch_size=2,
                             steps=1000, eval_every=100),
            published="ResNet-50 on ImageNet, Figure 1: BN's error rises from 23.6% at 32 images per batch to "
                      "34.7% at 2, GroupNorm's stays near 24% (24.1% at 32, 24.8% at 2).",
            source="Wu & He 2018, arXiv:1803.08494, Figure 1 and Table 3",
            compare=("batchnorm", "groupnorm", "layernorm"),
            published_accuracy=(("batchnorm", 1 - 0.347), ("groupnorm", 1 - 0.248)),
            assumed=("a 3x100 ReLU MLP on MNIST instead of ResNet-50 on ImageNet (the CNN, arch=cnn, is the "
                     "closer match and 10x the cost a step)",
                     "SGD at lr 0.05 for every batch size, 1,000 steps (not equal epochs)",
                     "groups 4 (of 25 units each; Wu & He use 32 groups of channels)"),
        ),
        Preset(
            name="bn-regularizer",
            summary="BN as a regularizer? None, dropout, BN, BN + dropout on a net that overfits 8,000 images.",
            config=RunConfig(activation="relu", init="kaiming-normal", depth=3, width=256, lr=0.05,
                             steps=6000, eval_every=500),
            published="\"Batch Normalization also acts as a regularizer, in some cases eliminating the need "
                      "for Dropout\" (the abstract); the effect is debated.",
            source="Ioffe & Szegedy 2015, arXiv:1502.03167, abstract and §3.4",
            assumed=("a 3x256 ReLU MLP, SGD at lr 0.05, 6,000 steps of 60 (45 epochs of the 8,000 images): "
                     "chosen to overfit", "dropout 0.5 where on"),
        ),
    )
}

DEFAULT_PRESET = "ioffe-fig1"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]
