"""The norms' claim lines (bnviz.reproduce.norm_claims) on made-up maps: each reads
"reproduced" on data with the effect, "within noise" on a small one and "not reproduced"
on data without it; and the cells and map files carry the training accuracy they need."""

import math

import numpy as np
import pytest

from bnviz.reproduce.map import named_map
from bnviz.reproduce.map_claims import check_map
from bnviz.reproduce.map_data import MapData
from bnviz.reproduce.norm_claims import bn_depends_on_batch_size, bn_narrows_gap


def map_data(spec, accuracy, train_accuracy=None) -> MapData:
    shape = spec.shape
    nan = np.full(shape, math.nan)
    return MapData(spec=spec, accuracy=np.asarray(accuracy, float).reshape(shape), diverged_step=nan,
                   error=np.zeros(shape, bool), steps_to=nan, saturation=nan, last_saturation=nan, grad_ratio=nan,
                   train_accuracy=None if train_accuracy is None else np.asarray(train_accuracy, float).reshape(shape))


def batch_map(bn_small: float) -> MapData:
    """Accuracy at batch 2, 4, ..., 64: GN and LN flat at 0.97, BN from ``bn_small`` at 2 to 0.97 at 64."""
    spec = named_map("wu-he-batch", steps=100)
    flat = [0.97] * 6
    bn = list(np.linspace(bn_small, 0.97, 6))
    return map_data(spec, [bn, flat, flat])


def test_batch_size_claim_reads_reproduced_with_the_effect():
    verdict, line = bn_depends_on_batch_size(batch_map(0.60))
    assert verdict == "reproduced", line
    assert line.startswith("held-out error from batch 64 to 2: BN 3.0% -> 40.0% (+37.0 pts), GroupNorm 3.0% -> 3.0%")
    assert "Wu & He" in line and line.endswith(": reproduced")


def test_batch_size_claim_reads_not_reproduced_without_the_effect():
    verdict, line = bn_depends_on_batch_size(batch_map(0.97))  # BN as flat as the others
    assert verdict == "not reproduced" and line.endswith(": not reproduced")
    verdict, _ = bn_depends_on_batch_size(batch_map(0.965))  # half a point: less than two standard errors
    assert verdict == "within noise"


def test_batch_size_claim_is_what_the_map_checks():
    claims = check_map(batch_map(0.5))
    assert [claim.name for claim in claims] == ["bn_depends_on_batch_size"]
    assert claims[0].holds and "Wu & He 2018" in claims[0].definition


def regularizer_map(bn_gap: float, plain_gap: float, jitter: float = 0.002) -> MapData:
    """Test accuracy 0.95 everywhere (seeds jittered); training accuracy = test + the gap."""
    spec = named_map("bn-regularizer", steps=100)  # (norm: none, batchnorm) x (seed 0..2) x (dropout 0, 0.5)
    test = np.full(spec.shape, 0.95) + jitter * np.array([-1, 0, 1])[None, :, None]
    gaps = np.zeros(spec.shape)
    gaps[0], gaps[1] = plain_gap, bn_gap  # the same with and without dropout, for simplicity
    return map_data(spec, test, test + gaps)


def test_regularizer_claim_reads_reproduced_when_bn_narrows_the_gap():
    verdict, line = bn_narrows_gap(regularizer_map(bn_gap=0.01, plain_gap=0.045))
    assert verdict == "reproduced"
    assert line.startswith("BN narrows the generalization gap: 0.010 vs 0.045 (training minus test accuracy at the "
                           "end, mean of 3 seeds, no dropout; with dropout 0.5: 0.010 with BN vs 0.045 without)")


@pytest.mark.parametrize("bn_gap, plain_gap, verdict", [(0.045, 0.044, "not reproduced"), (0.05, 0.04, "not reproduced"),
                                                        (0.040, 0.044, "within noise")])
def test_regularizer_claim_reads_not_reproduced_without_the_effect(bn_gap, plain_gap, verdict):
    found, line = bn_narrows_gap(regularizer_map(bn_gap, plain_gap))
    assert found == verdict and line.endswith(f": {verdict}")


def test_regularizer_map_round_trips_its_training_accuracy(tmp_path):
    data = regularizer_map(0.01, 0.04)
    data.write(tmp_path / "map.json")
    again = MapData.read(tmp_path / "map.json")
    np.testing.assert_allclose(again.train_accuracy, data.train_accuracy, atol=1e-4)
    assert [claim.name for claim in check_map(again)] == ["bn_narrows_gap"]


def test_a_cell_keeps_the_training_accuracy_and_reads_it_back():
    from bnviz.config import RunConfig
    from bnviz.reproduce.cells import Cell, run_cell

    cell = run_cell(RunConfig(width=16, depth=1, steps=20, eval_every=10, eval_size=100))
    assert len(cell.train_accuracy) == len(cell.accuracy) == 2
    assert all(0 <= value <= 1 for value in cell.train_accuracy)
    assert Cell.from_dict(cell.to_dict()).train_accuracy == cell.train_accuracy
