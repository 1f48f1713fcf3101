"""Tests for bnviz.stats: every statistic of ``Reducer.reduce`` against direct numpy.

The reference bins are right-closed, (e_i, e_i+1], built with ``np.searchsorted`` and
clipped into the edge bins, which is what the module promises; the rings are as large as
the trainer's (128 steps), since the per-step offsets are where precision could be lost.
"""

import math

import numpy as np
import pytest
import torch

from bnviz.model import ACTIVATION_MODULES
from bnviz.percentiles import PERCENTILES, Ranks, order_statistics, sorted_percentiles
from bnviz.post_map import post_map, runs
from bnviz.saturation import LN19, NEAR_ZERO
from bnviz.stats import FINE_BINS, GROUP, SATURATION_THRESHOLD, Reducer, post_edges, pre_edges, pre_range

RING = 128  # the trainer's largest ring: row offsets up to 128 * 768
EDGE_TOLERANCE = 2e-6  # the engine bins float32 values in float32: a value a few ulps from an edge may go either way
BATCH, FEATURES = 60, 50
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky-relu", "gelu", "linear")


def right_closed_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (e_i, e_i+1], values beyond the range in the edge bins."""
    index = np.clip(np.searchsorted(edges, values, side="left") - 1, 0, len(edges) - 2)
    return np.bincount(index, minlength=len(edges) - 1)


def assert_counts_match(actual: np.ndarray, values: np.ndarray, edges: np.ndarray) -> None:
    """``actual`` is the right-closed histogram of ``values``, except that a value within
    EDGE_TOLERANCE of an inner edge may sit in either neighbouring bin."""
    inner = edges[1:-1]
    position = np.clip(np.searchsorted(inner, values), 1, len(inner) - 1)
    below, above = inner[position - 1], inner[position]
    nearest = np.where(np.abs(values - below) <= np.abs(values - above), position - 1, position)  # index in inner
    ambiguous = np.abs(values - inner[nearest]) <= EDGE_TOLERANCE
    assert ambiguous.mean() < 1e-3  # the slack is rare, so the comparison is not vacuous
    sure = right_closed_counts(values[~ambiguous], edges)
    bins = len(edges) - 1
    slack = np.bincount(nearest[ambiguous], minlength=bins) + np.bincount(nearest[ambiguous] + 1, minlength=bins)
    assert actual.sum() == len(values)
    assert (sure <= actual).all() and (actual <= sure + slack).all(), np.flatnonzero(actual != sure)


def assert_saturation_matches(actual: float, values: np.ndarray, activation: str) -> None:
    """A direct count, with values within EDGE_TOLERANCE of the threshold counted either way."""
    if activation in SATURATION_THRESHOLD:
        threshold = SATURATION_THRESHOLD[activation]
        surely, maybe = np.abs(values) > threshold + EDGE_TOLERANCE, np.abs(values) > threshold - EDGE_TOLERANCE
    else:
        surely, maybe = values <= -EDGE_TOLERANCE, values <= EDGE_TOLERANCE
    assert surely.mean() - 1e-12 <= actual <= maybe.mean() + 1e-12, (actual, surely.mean(), maybe.mean())


def activations(steps: int = RING, scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    """(steps, batch, features) float32 pre-activations, each step with its own mean and scale,
    wide enough that some values fall beyond the range."""
    generator = torch.Generator().manual_seed(seed)
    shift = torch.linspace(-2, 2, steps).view(-1, 1, 1)
    spread = scale * torch.linspace(0.5, 1.5, steps).view(-1, 1, 1)
    return torch.randn(steps, BATCH, FEATURES, generator=generator) * spread + shift


def test_thresholds_are_fine_bin_edges_and_display_bins_group_fine_ones():
    for activation in ACTIVATIONS:
        reducer = Reducer(activation, 1)
        assert len(reducer.fine_edges) == FINE_BINS + 1
        np.testing.assert_allclose(reducer.fine_edges[::GROUP], pre_edges(activation), atol=1e-12)
        assert pre_edges(activation)[0] == -pre_range(activation)
        threshold = SATURATION_THRESHOLD.get(activation)
        if threshold is not None:
            assert np.min(np.abs(reducer.fine_edges - threshold)) < 1e-12
    assert math.isclose(1 / (1 + math.exp(-LN19)), 0.95)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_pre_histogram_equals_right_closed_numpy_histogram(activation):
    pre = activations()
    stats = Reducer(activation, RING).reduce(pre, unit=7)
    edges = pre_edges(activation)
    assert stats["hist_pre"].shape == (RING, len(edges) - 1)
    assert stats["hist_pre"].dtype == np.int64
    for step in range(RING):
        assert_counts_match(stats["hist_pre"][step], pre[step].double().numpy().ravel(), edges)
    assert (stats["hist_pre"].sum(1) == BATCH * FEATURES).all()
    assert (stats["nonfinite"] == 0).all()


def test_values_beyond_the_range_land_in_the_edge_bins():
    half = pre_range("sigmoid")
    pre = torch.tensor([-1e30, -100.0, -half - 1e-3, -half, half, half + 1e-3, 100.0, 1e30]).view(1, 2, 4)
    stats = Reducer("sigmoid", 4).reduce(pre, unit=0)
    hist = stats["hist_pre"][0]
    assert hist[0] == 4 and hist[-1] == 4 and hist.sum() == 8


def test_a_ring_filled_only_in_part_is_reduced_row_by_row():
    pre = activations()
    reducer = Reducer("tanh", RING)
    part = reducer.reduce(pre[:5], unit=3)
    whole = reducer.reduce(pre, unit=3)
    for key, value in part.items():
        if value.dtype == np.int64:
            np.testing.assert_array_equal(value, whole[key][:5], err_msg=key)
        else:  # the matrix products may round differently for a different number of rows
            np.testing.assert_allclose(value, whole[key][:5], rtol=1e-12, err_msg=key)


def test_relu_input_of_exactly_zero_is_dead_and_in_the_bin_below_zero():
    pre = torch.zeros(2, 4, 5)
    pre[1, :, :2] = 1.0
    stats = Reducer("relu", 2).reduce(pre, unit=0)
    edges = pre_edges("relu")
    below_zero = int(np.searchsorted(edges, 0.0, side="left")) - 1  # the bin (e, 0]
    assert edges[below_zero] < 0 <= edges[below_zero + 1] + 1e-12
    assert stats["hist_pre"][0, below_zero] == 20
    np.testing.assert_array_equal(stats["saturation"], [1.0, 0.6])


def test_mean_and_std_match_numpy():
    pre = activations()
    stats = Reducer("sigmoid", RING).reduce(pre, unit=0)
    values = pre.double().numpy().reshape(RING, -1)
    np.testing.assert_allclose(stats["mean"], values.mean(1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats["std"], values.std(1), rtol=1e-5)


def test_std_of_a_narrow_distribution_far_from_zero():
    # A saturated sigmoid layer can collapse: every input near one value. Its std must not read 0.
    generator = torch.Generator().manual_seed(2)
    pre = torch.randn(4, BATCH, FEATURES, generator=generator) * torch.tensor([1.0, 0.1, 0.01, 0.001]).view(-1, 1, 1) + 3.0
    stats = Reducer("sigmoid", 4).reduce(pre, unit=0)
    values = pre.double().numpy().reshape(4, -1)
    np.testing.assert_allclose(stats["mean"], values.mean(1), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], values.std(1), rtol=1e-3)


def assert_layer_percentiles(actual: np.ndarray, values: np.ndarray, activation: str) -> np.ndarray:
    """At every step, each layer percentile is numpy's of the step's finite values within the
    documented bound: one fine bin's width (plus float32 rounding at a bin edge). Returns the errors."""
    bound = 2 * pre_range(activation) / FINE_BINS + EDGE_TOLERANCE
    errors = np.zeros_like(actual)
    for step, row in enumerate(values):
        finite = row[np.isfinite(row)]
        if not len(finite):
            assert np.isnan(actual[step]).all()
            continue
        errors[step] = np.abs(actual[step] - np.percentile(finite, PERCENTILES))
    assert errors.max() <= bound, (errors.max(), bound, np.argwhere(errors > bound)[:5])
    return errors


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_layer_percentiles_within_one_fine_bin_of_numpy_at_every_step(activation):
    pre = activations(scale=1.0)  # in range: |x| < 2 + 1.5 * 5.5 < 8.8
    assert pre.abs().max() < pre_range(activation)
    stats = Reducer(activation, RING).reduce(pre, unit=0)
    assert_layer_percentiles(stats["percentiles"], pre.double().numpy().reshape(RING, -1), activation)


def test_layer_percentiles_exact_when_most_values_lie_beyond_the_range():
    generator = torch.Generator().manual_seed(1)
    pre = torch.rand(3, 100, 20, generator=generator) * 80 - 40  # uniform on [-40, 40], mostly beyond the range
    stats = Reducer("sigmoid", 3).reduce(pre, unit=0)
    values = pre.double().numpy().reshape(3, -1)
    reference = np.percentile(values, PERCENTILES, axis=1).T
    assert (np.abs(reference[:, [0, 2]]) > pre_range("sigmoid")).all()  # p15 and p85 in the edge bins: exact
    np.testing.assert_allclose(stats["percentiles"][:, [0, 2]], reference[:, [0, 2]], rtol=1e-12)
    assert_layer_percentiles(stats["percentiles"], values, "sigmoid")  # the medians, inside: within one fine bin


@pytest.mark.parametrize("below_range", [0.05, 0.24, 0.5, 0.9])
def test_layer_percentiles_when_part_of_a_layer_lies_below_the_bins(below_range):
    """The audit's case (fastai-collapse without BN, last conv, step 115): 23.8% of a ReLU layer's
    inputs below the lowest edge; p15 read 27.71 where numpy says 11.10. Every step, every share."""
    generator = torch.Generator().manual_seed(int(below_range * 100))
    steps, half = 40, pre_range("relu")
    inside = torch.rand(steps, 64, 50, generator=generator) * 2 * half - half
    outside = -half - torch.rand(steps, 64, 50, generator=generator).pow(2) * 30 * torch.linspace(0.1, 1, steps).view(-1, 1, 1)
    pre = torch.where(torch.rand(steps, 64, 50, generator=generator) < below_range, outside, inside)
    stats = Reducer("relu", steps).reduce(pre, unit=0)
    values = pre.double().numpy().reshape(steps, -1)
    errors = assert_layer_percentiles(stats["percentiles"], values, "relu")
    beyond = np.percentile(values, PERCENTILES, axis=1).T < -half  # a percentile outside the bins
    assert beyond.any() == (below_range > 0.15)
    assert errors[beyond].max(initial=0) <= 1e-9  # exact, not merely bounded


def test_layer_percentiles_of_sparse_values_are_exact_across_empty_bins():
    # Few values far apart: the two order statistics of a percentile lie in different bins.
    pre = torch.tensor([[-5.0, -1.0, 0.3, 2.0, 7.5], [0.1, 0.1, 0.1, 0.1, 6.0]]).view(2, 1, 5)
    stats = Reducer("sigmoid", 2).reduce(pre, unit=0)
    values = pre.double().numpy().reshape(2, -1)
    reference = np.percentile(values, PERCENTILES, axis=1).T
    np.testing.assert_allclose(stats["percentiles"][0], reference[0], rtol=1e-7)
    np.testing.assert_allclose(stats["percentiles"][1, 2], reference[1, 2], rtol=1e-7)  # between 0.1 and 6.0
    assert_layer_percentiles(stats["percentiles"], values, "sigmoid")  # four equal values: inside one bin


def test_unit_percentiles_are_numpy_percentiles_of_that_unit():
    pre = activations()
    for unit in (0, 17, FEATURES - 1):
        stats = Reducer("tanh", RING).reduce(pre, unit=unit)
        reference = np.percentile(pre[:, :, unit].double().numpy(), PERCENTILES, axis=1).T  # (K, 3)
        np.testing.assert_allclose(stats["unit_percentiles"], reference, rtol=0, atol=1e-6)


def test_sorted_percentiles_match_numpy_and_a_nan_row_is_nan():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(6, 61)).astype(np.float32)
    values[1, 5] = np.inf
    values[2, :3] = -np.inf
    reference = np.percentile(values.astype(np.float64), PERCENTILES, axis=1).T
    values[4, 7] = np.nan
    reference[4] = np.nan
    np.testing.assert_allclose(sorted_percentiles(values), reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "leaky-relu", "gelu"])
def test_saturation_matches_a_direct_count(activation):
    pre = activations()
    stats = Reducer(activation, RING).reduce(pre, unit=0)
    for step in range(RING):
        assert_saturation_matches(stats["saturation"][step], pre[step].double().numpy().ravel(), activation)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturation_threshold_is_exact_up_to_float32(activation):
    threshold = SATURATION_THRESHOLD[activation]
    just = [threshold * (1 + 1e-5), -threshold * (1 + 1e-5)]  # saturated
    not_quite = [threshold * (1 - 1e-5), -threshold * (1 - 1e-5), 0.0, 1.0]
    pre = torch.tensor(just + not_quite, dtype=torch.float32).view(1, 2, 3)
    stats = Reducer(activation, RING).reduce(pre, unit=0)
    assert stats["saturation"][0] == pytest.approx(2 / 6)


def test_linear_has_no_saturation():
    stats = Reducer("linear", RING).reduce(activations(steps=4), unit=0)
    assert np.isnan(stats["saturation"]).all()


def test_nonfinite_values_are_counted_not_dropped():
    pre = activations(steps=6)
    pre[1, 0, 0] = math.nan
    pre[1, 5, 7] = math.inf
    pre[2, 3, :] = -math.inf
    pre[4] = math.nan  # a whole step
    expected = [0, 2, FEATURES, 0, BATCH * FEATURES, 0]
    stats = Reducer("sigmoid", RING).reduce(pre, unit=0)
    np.testing.assert_array_equal(stats["nonfinite"], expected)
    total = BATCH * FEATURES
    np.testing.assert_array_equal(stats["hist_pre"].sum(1) + stats["nonfinite"], total)
    np.testing.assert_allclose(stats["hist_post"].sum(1) + stats["nonfinite"], total)
    edges = pre_edges("sigmoid")
    values = pre.double().numpy().reshape(6, -1)
    for step in range(6):
        finite = values[step][np.isfinite(values[step])]
        if len(finite):
            assert_counts_match(stats["hist_pre"][step], finite, edges)
            assert_saturation_matches(stats["saturation"][step], finite, "sigmoid")
    assert not np.isfinite(stats["mean"][[1, 2, 4]]).any() and np.isfinite(stats["mean"][[0, 3, 5]]).all()
    assert_layer_percentiles(stats["percentiles"], values, "sigmoid")  # of the finite values; NaN for step 4


@pytest.mark.parametrize("layers", [3, 20])
def test_all_layers_at_once_equal_each_layer_alone(layers):
    """The probe reduces every layer in one call (one bincount over all rows): each layer's
    statistics are those of the layer reduced alone, whatever its width, also non-finite ones."""
    rings = [activations(scale=(0.3, 3.0, 30.0)[layer % 3], seed=layer)[:, :, :10 + 7 * (layer % 4)]
             for layer in range(layers)]
    rings[1][5, 2, 3] = math.nan
    rings[1][9] = math.inf
    units = [layer % 10 for layer in range(layers)]
    together = Reducer("tanh", RING, layers).reduce_layers(rings, units)
    for layer, (ring, unit) in enumerate(zip(rings, units)):
        alone = Reducer("tanh", RING).reduce(ring, unit)
        for key, value in alone.items():
            np.testing.assert_array_equal(together[key][:, layer], value, err_msg=f"{key}, layer {layer}")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_post_histogram_follows_the_activation(activation):
    pre = activations()
    stats = Reducer(activation, RING).reduce(pre, unit=0)
    edges = post_edges(activation)
    assert stats["hist_post"].shape == (RING, len(edges) - 1)
    with torch.no_grad():
        post = ACTIVATION_MODULES[activation]()(pre.double()).numpy().reshape(RING, -1)
    total = BATCH * FEATURES
    np.testing.assert_allclose(stats["hist_post"].sum(1), total, rtol=1e-9)
    worst = 0.0
    for step in range(RING):
        reference = right_closed_counts(post[step], edges)
        worst = max(worst, np.abs(stats["hist_post"][step] - reference).max())
    assert worst <= 0.01 * total, worst
    assert (stats["hist_post"] >= 0).all()


def test_ranks_find_the_bins_of_both_order_statistics():
    counts = np.array([[0, 4, 4, 0],  # 8 values: p50 between the 4th and 5th smallest, in bins 1 and 2
                       [0, 0, 9, 0],  # all in bin 2
                       [3, 0, 0, 3],  # edge bins only
                       [0, 0, 0, 0]])  # nothing recorded
    below = np.zeros((4, 5), dtype=np.int64)
    np.cumsum(counts, axis=1, out=below[:, 1:])
    ranks = Ranks(below, quantiles=(15, 50, 85))
    np.testing.assert_array_equal(ranks.low[0], [1, 3, 5])  # floor(q * 7)
    np.testing.assert_array_equal(ranks.low_bin[0], [1, 1, 2])
    np.testing.assert_array_equal(ranks.high_bin[0], [1, 2, 2])
    np.testing.assert_array_equal(ranks.bounded(), [[True, True, True], [True, True, True],
                                                    [False, False, False], [False, False, False]])
    np.testing.assert_array_equal(ranks.estimate(np.arange(5.0))[0, 1], 2.0)  # across two bins: the edge between
    estimate = Ranks(below, quantiles=(50,)).estimate(np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert 2.0 < estimate[1, 0] < 3.0 and np.isnan(estimate[3, 0])


def test_ranks_estimate_is_within_its_bin_of_numpy():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, (4, 20_000))
    edges = np.linspace(-6, 6, 1201)
    counts = np.stack([right_closed_counts(row, edges) for row in values])
    below = np.zeros((4, 1201), dtype=np.int64)
    np.cumsum(counts, axis=1, out=below[:, 1:])
    ranks = Ranks(below)
    assert ranks.bounded().all()
    reference = np.percentile(values, PERCENTILES, axis=1).T
    assert np.abs(ranks.estimate(edges) - reference).max() <= edges[1] - edges[0]


def test_order_statistics_are_those_of_a_sort():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(7, 301)).astype(np.float32)
    values[2, :5] = np.inf  # non-finite values arrive as +inf: after every finite one
    ordered = np.sort(values, axis=1)
    for low in (0, 45, 150, 299, 300):
        below, above = order_statistics(values.copy(), low)
        np.testing.assert_array_equal(below, ordered[:, low])
        np.testing.assert_array_equal(above, ordered[:, min(low + 1, 300)])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_post_map_runs_give_the_dense_product(activation):
    """The post histogram is read off cumulative counts (runs of fine bins); it equals the
    dense (fine bins x post bins) spreading matrix applied to the counts."""
    reducer = Reducer(activation, RING)
    dense = post_map(activation, reducer.fine_edges, post_edges(activation))
    counts = np.random.default_rng(3).integers(0, 50, (RING, FINE_BINS))
    counts[:, [0, -1]] += 1000  # the edge bins also hold everything beyond the range
    below = np.zeros((RING, FINE_BINS + 1), dtype=np.int64)
    np.cumsum(counts, axis=1, out=below[:, 1:])
    np.testing.assert_allclose(reducer.post_map.apply(below), counts @ dense, rtol=1e-12, atol=1e-9)


def test_runs_are_the_true_stretches_of_a_mask():
    assert runs(np.array([True, True, False, False, True])) == [(0, 2), (4, 5)]
    assert runs(np.array([False, True, True, False])) == [(1, 3)]
    assert runs(np.zeros(4, dtype=bool)) == []


@pytest.mark.parametrize("activation", ["relu", "leaky-relu", "gelu", "linear"])
def test_near_zero_is_fastais_count_at_or_below_005(activation):
    """fastai's ActivationStats: (o <= 0.05).sum() / o.numel() of what feeds the nonlinearity;
    0.05 is a fine edge of these activations' range, so it is a count, not an estimate."""
    pre = activations()
    stats = Reducer(activation, RING).reduce(pre, unit=0)
    values = pre.double().numpy().reshape(RING, -1)
    surely, maybe = (values <= NEAR_ZERO - EDGE_TOLERANCE).mean(1), (values <= NEAR_ZERO + EDGE_TOLERANCE).mean(1)
    assert ((surely - 1e-12 <= stats["near_zero"]) & (stats["near_zero"] <= maybe + 1e-12)).all()
    assert (stats["near_zero"] >= stats["saturation"] - 1e-12).all() if activation != "linear" else True


def test_near_zero_is_not_counted_for_sigmoid_and_tanh():
    for activation in ("sigmoid", "tanh"):
        assert np.isnan(Reducer(activation, RING).reduce(activations(steps=4), unit=0)["near_zero"]).all()
