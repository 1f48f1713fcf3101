"""Datasets for bnviz: the bundled MNIST and Fashion-MNIST subsets, full IDX files, and a
synthetic set made in code, plus the deterministic mini-batch stream the trainer draws from.

Everything a visitor can train on is here and needs no download: the two ``assets/*.npz``
files are rebuilt by ``scripts/build_assets.py``, and "synthetic" is generated from a fixed
seed. Images are standardized with the training set's mean and std, so a BN-free network
starts from inputs of scale one and the comparison with BN is fair.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bnviz.config import DATASETS

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
IMAGE_SIZE = 28  # all three datasets are 28x28 grey images
CLASSES = {  # used for IDX files and synthetic; the bundled .npz files carry their own
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "synthetic": tuple(f"pattern {i}" for i in range(10)),
}
SHIFTED = {"mnist-shifted": "mnist"}  # datasets whose held-out images differ from their base's training images
SHIFT_SCALE, SHIFT_OFFSET = 0.75, 0.5  # a shifted held-out pixel: 0.75 x + 0.5 of the standardized x, i.e.
#                                      fainter strokes on a lighter background (an affine change of every pixel)
IDX_FILES = {  # the names LeCun's and Zalando's downloads use, with or without ".gz"
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}
IDX_NDIM = {"train_x": 3, "train_y": 1, "test_x": 3, "test_y": 1}  # (N, 28, 28) and (N,)
IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST-style files use
STANDARDIZE_CHUNK = 1000  # images standardized at a time (6 MB of float64 work)
CACHE_SIZE = 8  # a full IDX dataset is ~220 MB as float32: keep a few, not every one seen

SYNTHETIC_SEED = 20150211  # fixed: the date the BN paper appeared on arXiv
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 6000, 1000  # MNIST's 6:1 split at a tenth of its size
SYNTHETIC_GRID = 10  # prototypes are 10x10 random grids upsampled: smooth blobs ~4 px
# Shift and noise are tuned together: a linear model reaches ~78% test accuracy (a shifted
# pattern is not a fixed template), a one-hidden-layer MLP ~98%, so depth visibly pays.
SYNTHETIC_NOISE = 1.5  # per-pixel noise std; the prototypes have std ~0.9
SYNTHETIC_SHIFT = 6  # max shift in pixels each way, more than one blob: no fixed template


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == is elementwise
class Dataset:
    """One immutable, standardized dataset; shared by every run, so never modify its tensors."""

    name: str
    train_x: torch.Tensor  # (N, 1, 28, 28) float32, standardized with the train set's mean/std
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor  # (M, 1, 28, 28) float32, same standardization as train_x
    test_y: torch.Tensor  # (M,) int64
    classes: tuple[str, ...]
    source: str  # one line: where the data came from

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """The dataset `name`, from the bundled assets or from the IDX files in `data_dir`."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)} (got {name!r})")
    if name == "synthetic" and data_dir is not None:
        raise ValueError("data_dir cannot be used with the synthetic dataset (it has no files)")
    return _load_cached(name, None if data_dir is None else str(data_dir))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _load_cached(name: str, data_dir: str | None) -> Dataset:
    if name in SHIFTED:
        return _shifted(name, _load_cached(SHIFTED[name], data_dir))
    if name == "synthetic":
        source = f"generated in code from seed {SYNTHETIC_SEED}"
        return _standardize(name, _synthetic(), CLASSES[name], source)
    if data_dir is not None:
        arrays = {key: read_idx(_idx_path(Path(data_dir), stem), IDX_NDIM[key])
                  for key, stem in IDX_FILES.items()}
        return _standardize(name, arrays, CLASSES[name], f"IDX files in {data_dir}")
    with np.load(ASSETS_DIR / f"{name}.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in IDX_FILES}
        classes, source = tuple(str(c) for c in npz["classes"]), str(npz["source"])
    return _standardize(name, arrays, classes, source)


def _standardize(name: str, arrays: dict[str, np.ndarray], classes: tuple[str, ...],
                 source: str) -> Dataset:
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or y.shape != (len(x),):
            raise ValueError(f"{name} {split} set: expected images (N, 28, 28) and labels (N,) "
                             f"(got images {x.shape} and labels {y.shape})")
        if len(y) and not 0 <= y.min() <= y.max() < len(classes):
            raise ValueError(f"{name} {split} set: labels must be in 0..{len(classes) - 1} "
                             f"(got {y.min()}..{y.max()})")
    # One mean and std for all pixels (border pixels have std 0), in float64 numpy: the same
    # digits whatever the number of torch threads (torch's float32 mean of MNIST read 33.4031677
    # with one thread and 33.4031715 with two, and Adam amplified the difference into another run).
    # Reduced as float64 without a float64 copy of the images beside them (numpy casts as it goes).
    pixels = arrays["train_x"]
    mean, std = pixels.mean(dtype=np.float64), pixels.std(ddof=1, dtype=np.float64)  # ddof=1 as torch.std
    # (N, 28, 28) -> (N, 1, 28, 28) float32, standardized elementwise in float64, then rounded once.
    # Labels int64 as cross_entropy wants. New tensors do not require grad, so sharing them
    # between runs builds no autograd graph.
    train_x, test_x = (torch.from_numpy(_standardized(arrays[key], mean, std)).unsqueeze(1)
                       for key in ("train_x", "test_x"))
    train_y, test_y = (torch.from_numpy(arrays[key].astype(np.int64))
                       for key in ("train_y", "test_y"))
    return Dataset(name, train_x, train_y, test_x, test_y, classes, source)


def _shifted(name: str, base: Dataset) -> Dataset:
    """The base dataset with its held-out images shifted (``SHIFT_SCALE``, ``SHIFT_OFFSET``): a shift
    between training and test data. Training uses the base's own tensors (shared, not copied).
    BatchNorm with the batch's statistics undoes an affine change of the inputs in its first
    layer; with running averages of the training batches it does not: the gap the shift opens."""
    shifted = (base.test_x.numpy().astype(np.float64) * SHIFT_SCALE + SHIFT_OFFSET).astype(np.float32)
    source = (f"{base.source}; held-out images shifted: each standardized pixel x becomes "
              f"{SHIFT_SCALE:g} x + {SHIFT_OFFSET:g} (fainter strokes on a lighter background)")
    return dataclasses.replace(base, name=name, test_x=torch.from_numpy(shifted), source=source)


def _standardized(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(images - mean) / std`` in float64, rounded to float32 once: a chunk of images at a time,
    so the float64 work never holds more than a chunk (elementwise, so the same bits as at once)."""
    out = np.empty(images.shape, np.float32)
    for start in range(0, len(images), STANDARDIZE_CHUNK):
        part = slice(start, start + STANDARDIZE_CHUNK)
        out[part] = (images[part].astype(np.float64) - mean) / std
    return out


def _idx_path(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise ValueError(f"missing IDX file: expected {data_dir / stem} or {data_dir / stem}.gz")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file (plain or gzipped) of `ndim` dimensions, as a numpy array."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
        raw = file.read()
    expected = bytes([0, 0, IDX_UBYTE, ndim])
    if raw[:4] != expected:
        raise ValueError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty file)'} "
                         f"(expected {expected.hex()}: unsigned bytes, {ndim}-D)")
    header = 4 + 4 * ndim  # magic number, then one big-endian uint32 per dimension
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header cut short ({len(raw)} of {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != np.prod(shape):
        raise ValueError(f"{path}: IDX header declares shape {shape} but {data.size} bytes "
                         "of data follow")
    return data.reshape(shape)


def _synthetic() -> dict[str, np.ndarray]:
    """10 classes of smooth random prototypes, each example shifted and noised (float64)."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    canvas = IMAGE_SIZE + 2 * SYNTHETIC_SHIFT  # each prototype is larger than an image
    grids = torch.from_numpy(rng.standard_normal((10, 1, SYNTHETIC_GRID, SYNTHETIC_GRID)))
    prototypes = torch.nn.functional.interpolate(grids, size=canvas, mode="bicubic")[:, 0]
    n = SYNTHETIC_TRAIN + SYNTHETIC_TEST
    y = rng.integers(0, 10, n)
    top, left = rng.integers(0, 2 * SYNTHETIC_SHIFT + 1, (2, n))
    span = np.arange(IMAGE_SIZE)
    # Cut each example's 28x28 window out of its class's prototype in one gather: (n, 28, 28).
    rows, cols = (top[:, None] + span)[:, :, None], (left[:, None] + span)[:, None, :]
    x = prototypes.numpy()[y[:, None, None], rows, cols]
    x = x + SYNTHETIC_NOISE * rng.standard_normal(x.shape)
    cut = SYNTHETIC_TRAIN
    return {"train_x": x[:cut], "train_y": y[:cut], "test_x": x[cut:], "test_y": y[cut:]}


class BatchStream:
    """Endless, deterministic mini-batches of a dataset's training set.

    Each epoch is a fresh permutation from a generator seeded with `seed`; batches are
    consecutive slices of it, and the leftover examples at an epoch's end are dropped so
    every batch has exactly `batch_size` examples (BN statistics depend on batch size).
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int):
        n = len(dataset.train_y)
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be between 1 and the {dataset.name} training set "
                             f"size {n} (got {batch_size})")
        self.dataset, self.batch_size = dataset, batch_size
        self.epoch = 0
        self._generator = torch.Generator().manual_seed(seed)
        self._order = torch.randperm(n, generator=self._generator)
        self._position = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y): x (batch_size, 1, 28, 28) float32, y (batch_size,) int64."""
        if self._position + self.batch_size > len(self._order):
            self._order = torch.randperm(len(self._order), generator=self._generator)
            self._position = 0
            self.epoch += 1
        indices = self._order[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        return self.dataset.train_x[indices], self.dataset.train_y[indices]
