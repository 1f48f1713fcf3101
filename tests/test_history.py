"""Tests for bnviz.history: merging loses no counts, memory stays fixed, views never change,
pooled stds are those of the underlying values, and series thin without growing.
"""

import numpy as np
import pytest

from bnviz.history import SUMMED, History, Series
from bnviz.stats import StepStats

LAYERS, PRE_BINS, POST_BINS = 2, 6, 4


def synthetic_stats(first_step: int, count: int, rng: np.random.Generator) -> StepStats:
    """`count` steps of random but well-formed statistics, numbered from `first_step`."""
    shape = (count, LAYERS)
    return StepStats(
        steps=np.arange(first_step, first_step + count, dtype=np.int64),
        loss=rng.random(count),
        hist_pre=rng.integers(0, 50, (*shape, PRE_BINS)),
        hist_post=rng.random((*shape, POST_BINS)) * 10,
        mean=rng.normal(size=shape),
        std=rng.random(shape) + 0.1,
        percentiles=np.sort(rng.normal(size=(*shape, 3)), axis=2),
        unit_percentiles=np.sort(rng.normal(size=(*shape, 3)), axis=2),
        saturation=rng.random(shape),
        near_zero=rng.random(shape),
        nonfinite=rng.integers(0, 3, shape),
        grad_norm=rng.random(shape),
    )


def totals(arrays: dict) -> dict:
    return {key: arrays[key].sum(0) for key in SUMMED}


def add_randomly(history: History, total_steps: int, seed: int) -> dict:
    """Add `total_steps` steps in random-sized pieces; returns what was added, summed."""
    rng = np.random.default_rng(seed)
    added = {key: 0 for key in SUMMED}
    step = 1
    while step <= total_steps:
        count = int(min(rng.integers(1, 20), total_steps - step + 1))
        stats = synthetic_stats(step, count, rng)
        history.add(stats)
        for key in ("hist_pre", "hist_post", "nonfinite"):
            added[key] = added[key] + getattr(stats, key).sum(0)
        added["count"] += count
        step += count
    return added


def held(history: History) -> dict:
    """Sums over the complete columns plus the pending partial column."""
    columns = history.columns()
    result = totals(columns)
    if history._partial is not None:
        for key in SUMMED:
            result[key] = result[key] + history._partial[key].sum(0)
    return result


@pytest.mark.parametrize("seed", range(5))
def test_merging_keeps_every_count(seed):
    history = History(capacity=8)
    total_steps = 500 + 37 * seed  # 8 columns: strides up to 64, several halvings
    added = add_randomly(history, total_steps, seed)
    assert history.stride >= 32
    kept = held(history)
    assert kept["count"] == added["count"] == total_steps
    np.testing.assert_array_equal(kept["hist_pre"], added["hist_pre"])
    np.testing.assert_array_equal(kept["nonfinite"], added["nonfinite"])
    np.testing.assert_allclose(kept["hist_post"], added["hist_post"], rtol=1e-12)


def test_columns_cover_consecutive_steps_of_one_stride():
    history = History(capacity=8)
    add_randomly(history, 300, seed=9)
    columns = history.columns()
    assert history.size <= 8
    assert (columns["count"] == history.stride).all()
    np.testing.assert_array_equal(columns["steps"], history.stride * np.arange(1, history.size + 1))
    partial = 0 if history._partial is None else int(history._partial["count"].sum())
    assert partial < history.stride and history.size * history.stride + partial == 300


def test_memory_stays_fixed():
    history = History(capacity=16)
    rng = np.random.default_rng(0)
    history.add(synthetic_stats(1, 1, rng))
    size = history.nbytes()
    assert size > 0
    step = 2
    while step <= 10_000:
        count = int(rng.integers(1, 130))
        history.add(synthetic_stats(step, count, rng))
        step += count
        assert history.nbytes() == size
    assert history.size <= 16


def test_views_are_read_only_and_never_change():
    history = History(capacity=8)
    rng = np.random.default_rng(1)
    step = 1
    handed_out = []
    for _ in range(60):
        count = int(rng.integers(1, 12))
        history.add(synthetic_stats(step, count, rng))
        step += count
        views = history.columns()
        handed_out.append((views, {key: value.copy() for key, value in views.items()}))
        for value in views.values():
            assert not value.flags.writeable
            with pytest.raises(ValueError):
                value[...] = 0
    assert history.stride >= 16  # the views lived through several halvings
    for views, copies in handed_out:
        for key, value in views.items():
            np.testing.assert_array_equal(value, copies[key], err_msg=key)


def test_pooled_std_is_the_std_of_the_underlying_values():
    rng = np.random.default_rng(2)
    steps, per_step = 64, 500
    # Each step's values have their own mean and spread, so pooling must account for both.
    values = rng.normal(rng.normal(0, 2, (steps, LAYERS, 1)), rng.uniform(0.5, 3, (steps, LAYERS, 1)),
                        (steps, LAYERS, per_step))
    stats = StepStats(
        steps=np.arange(1, steps + 1), loss=np.zeros(steps),
        hist_pre=np.zeros((steps, LAYERS, PRE_BINS), np.int64), hist_post=np.zeros((steps, LAYERS, POST_BINS)),
        mean=values.mean(2), std=values.std(2),  # population stds: pooling them is exact
        percentiles=np.zeros((steps, LAYERS, 3)), unit_percentiles=np.zeros((steps, LAYERS, 3)),
        saturation=np.zeros((steps, LAYERS)), near_zero=np.zeros((steps, LAYERS)),
        nonfinite=np.zeros((steps, LAYERS), np.int64), grad_norm=np.zeros((steps, LAYERS)),
    )
    grouped = values.reshape(4, 16, LAYERS, per_step).transpose(0, 2, 1, 3).reshape(4, LAYERS, -1)
    at_once, one_by_one = History(capacity=4), History(capacity=4)
    at_once.add(stats)  # 64 steps into 4 columns: 16 steps each
    for row in range(steps):  # the same through partial columns and a halving every few adds
        one_by_one.add(StepStats(**{key: value[row:row + 1] for key, value in stats.__dict__.items()}))
    for history in (at_once, one_by_one):
        columns = history.columns()
        assert history.stride == 16 and history.size == 4
        np.testing.assert_allclose(columns["mean"], grouped.mean(2), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(columns["std"], grouped.std(2), rtol=1e-10)


def test_averaged_fields_are_count_weighted_means():
    rng = np.random.default_rng(3)
    stats = synthetic_stats(1, 32, rng)
    history = History(capacity=4)
    history.add(stats)
    columns = history.columns()
    for key in ("loss", "saturation", "percentiles", "grad_norm"):
        value = getattr(stats, key)
        expected = value.reshape(4, 8, *value.shape[1:]).mean(1)
        np.testing.assert_allclose(columns[key], expected, rtol=1e-12, err_msg=key)
    np.testing.assert_array_equal(columns["steps"], [8, 16, 24, 32])


@pytest.mark.parametrize("total_steps", [1, 7, 8, 9, 16, 17, 40, 123])
def test_close_turns_the_partial_column_into_the_last_one(total_steps):
    history = History(capacity=8)
    added = add_randomly(history, total_steps, seed=total_steps)
    before = history.columns()
    copies = {key: value.copy() for key, value in before.items()}
    history.close()
    history.close()  # twice is harmless
    assert history._partial is None and history.size <= 8
    kept = totals(history.columns())
    assert kept["count"] == total_steps
    np.testing.assert_array_equal(kept["hist_pre"], added["hist_pre"])
    assert history.columns()["steps"][-1] == total_steps  # the last step is shown
    for key, value in before.items():  # views handed out before closing are untouched
        np.testing.assert_array_equal(value, copies[key])


def test_capacity_must_be_even():
    with pytest.raises(ValueError, match="capacity must be an even number"):
        History(capacity=7)


def test_series_thinning_keeps_the_size_bounded_and_the_first_point():
    series = Series(width=2, capacity=16)
    for step in range(1, 1001):
        series.add(step, [step * 0.5, -step])
        assert series.size <= 16
    steps, values = series.arrays()
    assert steps[0] == 1 and steps[-1] == 1000
    assert len(steps) <= 16 and (np.diff(steps) > 0).all()
    np.testing.assert_array_equal(values[:, 0], steps * 0.5)
    np.testing.assert_array_equal(values[:, 1], -steps)
    steps[0] = -1  # copies: the series is unaffected
    assert series.arrays()[0][0] == 1


@pytest.mark.parametrize("total_steps", [5, 40, 123, 300])
def test_columns_do_not_depend_on_how_steps_arrive(total_steps):
    """One config, one run: a trainer drains its ring when the clock says, so the same steps
    arrive in other pieces on another machine or entry point; the columns must be the same bits."""
    stats = synthetic_stats(1, total_steps, np.random.default_rng(total_steps))
    everything = np.arange(total_steps)
    splits = [[everything], np.split(everything, np.arange(1, total_steps))]  # at once; one step at a time
    for seed in range(3):
        cuts = np.unique(np.random.default_rng(seed).integers(1, total_steps, 6)) if total_steps > 1 else []
        splits.append(np.split(everything, cuts))
    results = []
    for pieces in splits:
        history = History(capacity=8)
        for piece in pieces:
            history.add(StepStats(**{name: value[piece] for name, value in vars(stats).items()}))
        before = {key: value.copy() for key, value in history.columns().items()}
        history.close()
        results.append((before, history.columns()))
    for before, after in results[1:]:
        for key in after:
            np.testing.assert_array_equal(before[key], results[0][0][key], err_msg=key)
            np.testing.assert_array_equal(after[key], results[0][1][key], err_msg=key)


@pytest.mark.parametrize("total_steps", [1, 8, 9, 17, 123, 300])
def test_every_column_but_the_last_holds_stride_steps(total_steps):
    """What docs/run-format.md promises: complete columns hold `stride` steps; an ended run's
    last column holds the rest (1 to `stride`), labelled with the last step."""
    history = History(capacity=8)
    add_randomly(history, total_steps, seed=total_steps + 1)
    assert (history.columns()["count"] == history.stride).all()  # while training: complete columns only
    history.close()
    count = history.columns()["count"]
    assert (count[:-1] == history.stride).all() and 1 <= count[-1] <= history.stride
    assert count.sum() == total_steps and history.columns()["steps"][-1] == total_steps


def test_at_stride_one_a_column_is_its_step_as_recorded():
    stats = synthetic_stats(1, 30, np.random.default_rng(5))
    history = History(capacity=64)
    history.add(stats)
    for key, value in vars(stats).items():
        np.testing.assert_array_equal(history.columns()[key], value, err_msg=key)  # std too: no pooling round trip
