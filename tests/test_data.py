"""Tests for bnviz.data: the bundled files, IDX parsing, synthetic data and BatchStream.

IDX tests write tiny files of their own, so they need no download and check the parser
against bytes whose meaning we know.
"""

import gzip
import re

import numpy as np
import pytest
import torch

from bnviz.data import ASSETS_DIR, BatchStream, Dataset, load_dataset


def tiny_dataset(n: int = 10) -> Dataset:
    """A dataset whose label is each example's index, so batches show which examples came."""
    x = torch.arange(n, dtype=torch.float32).repeat_interleave(28 * 28).reshape(n, 1, 28, 28)
    return Dataset("tiny", x, torch.arange(n), x[:2], torch.arange(2), tuple("0123456789"), "test")


@pytest.mark.parametrize("name, n_train, n_test", [("mnist", 8000, 2000),
                                                   ("fashion-mnist", 10000, 2000)])
def test_bundled_dataset_shapes_dtypes_and_labels(name, n_train, n_test):
    data = load_dataset(name)
    assert data.train_x.shape == (n_train, 1, 28, 28) and data.train_x.dtype == torch.float32
    assert data.test_x.shape == (n_test, 1, 28, 28) and data.test_x.dtype == torch.float32
    assert data.train_y.shape == (n_train,) and data.train_y.dtype == torch.int64
    assert data.test_y.shape == (n_test,) and data.test_y.dtype == torch.int64
    for y in (data.train_y, data.test_y):
        assert set(y.tolist()) == set(range(10))
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert not data.train_x.requires_grad
    assert abs(data.train_x.mean().item()) < 1e-4 and abs(data.train_x.std().item() - 1) < 1e-4
    assert load_dataset(name) is data  # cached: one copy shared by every run


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_bundled_test_split_is_disjoint_from_train(name):
    with np.load(ASSETS_DIR / f"{name}.npz", allow_pickle=False) as npz:
        train = {row.tobytes() for row in npz["train_x"]}
        assert not any(row.tobytes() in train for row in npz["test_x"])


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_bundled_npz_loads_without_pickle(name):
    with np.load(ASSETS_DIR / f"{name}.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"train_x", "train_y", "test_x", "test_y", "classes", "source"}
        assert all(npz[key].dtype == np.uint8 for key in ("train_x", "train_y", "test_x", "test_y"))
        assert npz["classes"].dtype.kind == "U" and len(npz["classes"]) == 10
        assert npz["source"].dtype.kind == "U"


def test_same_seed_same_batches_different_seed_different():
    data = load_dataset("mnist")
    first, again, other = (BatchStream(data, 60, seed) for seed in (1, 1, 2))
    for _ in range(5):
        (x1, y1), (x2, y2), (_, y3) = first.next_batch(), again.next_batch(), other.next_batch()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(y1, y3)
    assert x1.shape == (60, 1, 28, 28) and y1.shape == (60,)


def test_epochs_wrap_and_drop_the_remainder():
    stream = BatchStream(tiny_dataset(10), batch_size=3, seed=0)
    epoch = torch.cat([stream.next_batch()[1] for _ in range(3)])  # 9 of 10, each once
    assert len(set(epoch.tolist())) == 9 and stream.epoch == 0
    next_epoch = torch.cat([stream.next_batch()[1] for _ in range(3)])
    assert stream.epoch == 1 and len(set(next_epoch.tolist())) == 9
    assert not torch.equal(epoch, next_epoch)  # a fresh permutation, not a replay


def test_batch_size_larger_than_training_set_is_an_error():
    message = "batch_size must be between 1 and the tiny training set size 10 (got 11)"
    with pytest.raises(ValueError, match=re.escape(message)):
        BatchStream(tiny_dataset(10), batch_size=11, seed=0)


def write_idx(path, array: np.ndarray, magic: int | None = None) -> None:
    magic = 0x0800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as file:
        file.write(header + array.tobytes())


def write_idx_dir(tmp_path, suffix: str, image_magic: int | None = None):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
              "t10k": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)}
    labels = {"train": np.arange(7, dtype=np.uint8), "t10k": np.array([9, 0, 5], np.uint8)}
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", images[split], image_magic)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", labels[split])
    return images, labels


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_directory(tmp_path, suffix):
    images, labels = write_idx_dir(tmp_path, suffix)
    data = load_dataset("fashion-mnist", str(tmp_path))
    assert data.train_x.shape == (7, 1, 28, 28) and data.test_x.shape == (3, 1, 28, 28)
    assert data.train_y.tolist() == list(range(7)) and data.test_y.tolist() == [9, 0, 5]
    assert data.classes[0] == "T-shirt/top" and str(tmp_path) in data.source
    # Standardization is affine with the train set's statistics: undo it and compare.
    raw = images["train"].astype(np.float32)
    restored = data.test_x[:, 0].numpy() * raw.std(ddof=1) + raw.mean()
    np.testing.assert_allclose(restored, images["t10k"], atol=1e-3)


def test_idx_bad_magic_number(tmp_path):
    write_idx_dir(tmp_path, ".gz", image_magic=0x0000_0903)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    message = f"{path}: bad IDX magic number 00000903 (expected 00000803: unsigned bytes, 3-D)"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset("mnist", str(tmp_path))


def test_idx_truncated_data(tmp_path):
    write_idx_dir(tmp_path, "")
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    message = f"{path}: IDX header declares shape (3, 28, 28) but 2351 bytes of data follow"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset("mnist", str(tmp_path))


def test_idx_missing_file(tmp_path):
    write_idx_dir(tmp_path, "")
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ValueError, match="missing IDX file: expected .*t10k-labels-idx1-ubyte"):
        load_dataset("mnist", str(tmp_path))


def test_unknown_name():
    with pytest.raises(ValueError) as error:
        load_dataset("x")
    assert str(error.value) == "dataset must be one of mnist, fashion-mnist, synthetic, mnist-shifted (got 'x')"


def test_synthetic_is_deterministic_and_standardized():
    from bnviz import data as data_module

    first = load_dataset("synthetic")
    data_module._load_cached.cache_clear()  # force a second generation, not the cached copy
    second = load_dataset("synthetic")
    assert first is not second
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    assert first.train_x.shape == (6000, 1, 28, 28) and first.test_x.shape == (1000, 1, 28, 28)
    assert first.train_y.dtype == torch.int64 and set(first.train_y.tolist()) == set(range(10))
    assert abs(first.train_x.mean().item()) < 1e-4


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "synthetic"])
def test_standardization_is_the_same_bits_at_one_and_two_torch_threads(name):
    """The audit of issue 16: torch's float32 mean of MNIST read 33.4031677 with one thread and
    33.4031715 with two, so the command line (the machine's threads) and the reproduction's
    workers (one) trained on different data. Standardized in float64 numpy, then rounded once."""
    from bnviz.data import _load_cached

    before = torch.get_num_threads()
    loaded = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _load_cached.cache_clear()
            loaded.append(load_dataset(name))
    finally:
        torch.set_num_threads(before)
        _load_cached.cache_clear()
    one, two = loaded
    assert torch.equal(one.train_x, two.train_x) and torch.equal(one.test_x, two.test_x)
    if name != "synthetic":
        with np.load(ASSETS_DIR / f"{name}.npz") as npz:
            pixels = npz["train_x"].astype(np.float64)
            expected = ((npz["test_x"].astype(np.float64) - pixels.mean()) / pixels.std(ddof=1)).astype(np.float32)
        np.testing.assert_array_equal(one.test_x[:, 0].numpy(), expected)


def test_the_shifted_dataset_trains_on_mnist_and_holds_out_shifted_images():
    """mnist-shifted: MNIST's own training tensors (shared, not copied) and its held-out images
    shifted by SHIFT_SCALE x + SHIFT_OFFSET, computed in float64 and rounded once."""
    from bnviz.data import SHIFT_OFFSET, SHIFT_SCALE

    mnist, shifted = load_dataset("mnist"), load_dataset("mnist-shifted")
    assert shifted.name == "mnist-shifted" and "shifted" in shifted.source
    assert shifted.train_x is mnist.train_x and shifted.train_y is mnist.train_y
    assert torch.equal(shifted.test_y, mnist.test_y)
    expected = (mnist.test_x.numpy().astype(np.float64) * SHIFT_SCALE + SHIFT_OFFSET).astype(np.float32)
    np.testing.assert_array_equal(shifted.test_x.numpy(), expected)
    assert abs(shifted.test_x.mean().item() - mnist.test_x.mean().item()) > 0.4  # a real shift of the inputs
