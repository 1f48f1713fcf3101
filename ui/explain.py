"""Short explanations next to the pictures: what a column is, what saturation means, why BN matters.

A sentence or two each, in the words a teacher would use in front of a class; they adapt
to the activation, because "saturated" means something different for a sigmoid and a ReLU.
"""

from __future__ import annotations

import streamlit as st

from bnviz.config import RunConfig
from bnviz.presets import Preset
from bnviz.reproduce.registry import REPRODUCTIONS
from bnviz.saturation import DEAD_ACTIVATIONS, SATURATION_THRESHOLD

INTRO = ("Pick a setup in the sidebar, press **Start**, and watch every hidden layer's activations "
         "while the network trains. Turn on **Compare** to run the same network with and without "
         "Batch Normalization side by side.")


def heatmap(activation: str, kind: str) -> str:
    where = "entering" if kind == "pre" else "leaving"
    text = (f"Each column is one moment of training: a histogram of every value {where} the layer's "
            f"{activation}, bright where many values are (colour = log(1 + count)). Time runs left to right.")
    if activation in SATURATION_THRESHOLD:
        text += " Outside the dashed lines the unit is saturated: its output barely moves, so it passes almost no gradient."
    elif activation in DEAD_ACTIVATIONS and kind == "pre":
        text += " Below the dashed line at 0 a ReLU outputs 0 and passes no gradient."
    return text


def saturation(activation: str) -> str:
    if activation in SATURATION_THRESHOLD:
        return (f"Share of units whose {activation} output is within 5% of its limits "
                f"(for a sigmoid: below 0.05 or above 0.95). Saturated units learn slowly.")
    if activation in DEAD_ACTIVATIONS:
        return ("Solid: share of units whose input is at or below 0 (dead: they output a constant and pass no "
                "gradient). Dotted: fastai's \"near zero\", the share at or below 0.05, as the book's "
                "ActivationStats counts it.")
    return "A linear unit never saturates."


PERCENTILES = ("One fixed unit per layer, as in the BN paper's Figure 1(b, c): the line is the median of its "
               "input over a batch, the band the 15th to 85th percentile. Without BN it drifts as the "
               "layers below change; with BN it stays put.")
LOSS = ("Training loss per step and accuracy on held-out images the network never trains on (solid); dotted, the "
        "accuracy on the training batches themselves. The distance between the two is the generalization gap.")
TRAIN_EVAL = ("While training, BatchNorm normalizes with the batch's mean and variance; a trained network is "
              "evaluated with running averages of them instead. Left: held-out accuracy both ways. Middle and "
              "right: how far each layer's batch mean is from its running mean (in running standard deviations) "
              "and its batch variance over its running variance. When the "
              "running averages lag (a small momentum, small batches, a sudden change) the evaluated network is "
              "not the one that trained; re-estimating them on training data is the usual remedy. When the "
              "held-out data itself differs from the training data (dataset mnist-shifted), the running averages "
              "are right for the training data and re-estimating them there changes nothing; the held-out "
              "batches' own statistics undo the shift.")
DATASETS = {
    "mnist": "Handwritten digits: 8,000 training and 2,000 held-out images bundled with the app.",
    "fashion-mnist": "Zalando's clothing images, the same size as MNIST and harder: 10,000 and 2,000 bundled.",
    "synthetic": "Ten smooth random patterns, shifted and noised: generated in code, no file needed.",
    "mnist-shifted": "MNIST trained as usual, evaluated on shifted held-out images: fainter strokes on a lighter "
                     "background (each standardized pixel x becomes 0.75 x + 0.5). A shift between training and "
                     "test data, which BatchNorm's running averages do not follow.",
}
GRADIENTS = "Size of each layer's weight gradient (log scale): tiny means that layer has stopped learning."
WHY_BN = ("**Why BN changes the picture.** Batch Normalization rescales each unit's input to mean 0 and "
          "variance 1 over the batch (then learns a scale and shift). Inputs stay in the range where the "
          "activation is steep, so fewer units saturate and all layers keep learning, even at large "
          "learning rates.")


def published(preset: Preset, config: RunConfig, accuracies: dict[str, float]) -> None:
    """The preset's published result next to ours, with the settings the paper does not state."""
    with st.expander(f"Published result: {preset.source}"):
        st.markdown(preset.published)
        for norm, value in preset.published_accuracy:
            ours = accuracies.get(norm)
            st.markdown(f"- {norm}: published **{value:.2%}**" + (f", this run **{ours:.2%}**" if ours is not None else ""))
        if preset.assumed:
            st.caption("Not stated in the source, chosen by bnviz: " + "; ".join(preset.assumed))
        if config != preset.config and config.replace(norm=preset.config.norm) != preset.config:
            st.caption("Your settings differ from the preset's, so the numbers need not match.")
        if preset.name in REPRODUCTIONS:
            st.caption("Turn on **Compare** and press Start for the reproduce view: the paired runs side by side, "
                       "and each published claim checked on their data when they finish.")
LANDSCAPE = ("Santurkar et al.'s landscape probe (2018, §3.2, Figure 4): every few steps the network steps along "
             "its gradient by a few step sizes. Loss range: how much the loss changes along that line. Gradient "
             "predictiveness: how far the gradient there is from the gradient here. Effective β-smoothness: that "
             "change per unit of distance moved. Lower is smoother: with BN all three should be smaller.")

NORMS = {
    "none": "No normalization: each layer receives whatever the layer below produces, so its inputs drift as "
            "the weights below change.",
    "batchnorm": "**BatchNorm** normalizes each unit over the examples in the batch (mean 0, variance 1, then a "
                 "learned scale and shift). An example's output depends on the other examples in its batch: small "
                 "batches give noisy statistics, and evaluation uses running averages instead of a batch.",
    "noisy-batchnorm": "**Noisy BN** is BatchNorm followed by noise whose mean and spread change every step "
                       "(Santurkar et al. 2018): it undoes BN's stable distribution on purpose.",
    "noise": "**Noise only**: the same changing noise with no BatchNorm.",
    "layernorm": "**LayerNorm** normalizes each example over all the units of its layer (Ba et al. 2016). Nothing "
                 "is averaged over the batch, so it behaves the same at any batch size and in evaluation.",
    "groupnorm": "**GroupNorm** normalizes each example over groups of channels (the *groups* setting; Wu & He "
                 "2018): one group is LayerNorm, one per channel is InstanceNorm. It does not depend on the batch.",
    "instancenorm": "**InstanceNorm** normalizes each channel of each example over its own pixels (Ulyanov et al. "
                    "2016). CNN only: an MLP unit has a single value per example, nothing to average.",
    "rmsnorm": "**RMSNorm** divides each example's units by their root mean square, without subtracting the mean "
               "(Zhang & Sennrich 2019): LayerNorm's rescaling without its centring.",
}
