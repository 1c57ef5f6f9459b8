"""Image datasets held as tensors: Fashion-MNIST (IDX files), MNIST-1D, scikit-learn's digits, CIFAR-10, and the
crop-and-flip augmentation of CIFAR-10 batches."""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import random
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from empirical.data.splits import (
    DataNotFoundError,
    Dataset,
    TensorSplit,
    _seeded_generator,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_ROOT",
    "load_cifar10",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_mnist1d",
    "random_crop_flip",
    "read_idx",
]


FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"


def _standardize(train: torch.Tensor, test: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise both splits with the mean and standard deviation of the training split over ``dims``."""
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True)
    return (train - mean) / std, (test - mean) / std


# ------------------------------------------------------------------------------------------- IDX files

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or not.

    Header: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then each dimension as a big-endian uint32.
    """
    path = Path(path)
    opener: Callable[..., io.BufferedIOBase] = gzip.open if path.suffix == ".gz" else open  # type: ignore[assignment]
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = 4 + 4 * ndim + dtype.itemsize * math.prod(shape)
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header announces shape {shape} ({expected} bytes) but the file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _find_file(root: Path, stem: str, hint: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(f"missing {root / stem}[.gz]. {hint}")


_FASHION_HINT = (
    "Fashion-MNIST is read from local IDX files. On Debian/Ubuntu run, as root: "
    "`apt-get update && apt-get install -y dataset-fashion-mnist` (it installs them under "
    f"{FASHION_MNIST_DEFAULT_ROOT}); or pass the folder holding train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz as data.root."
)

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_fashion_mnist(root: str | os.PathLike[str] = FASHION_MNIST_DEFAULT_ROOT) -> Dataset:
    """Fashion-MNIST (60k train / 10k test 28x28 grey images, 10 classes) from IDX files in ``root``.

    Pixels are scaled to [0, 1] and standardised with the training mean and standard deviation.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"Fashion-MNIST folder {root} does not exist. {_FASHION_HINT}")
    arrays = {
        name: read_idx(_find_file(root, f"{name}-ubyte", _FASHION_HINT))
        for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
    }
    train_x = torch.from_numpy(arrays["train-images-idx3"]).float().div(255.0).unsqueeze(1)
    test_x = torch.from_numpy(arrays["t10k-images-idx3"]).float().div(255.0).unsqueeze(1)
    train_x, test_x = _standardize(train_x, test_x, dims=(0, 1, 2, 3))
    train_y = torch.from_numpy(arrays["train-labels-idx1"]).long()
    test_y = torch.from_numpy(arrays["t10k-labels-idx1"]).long()
    return Dataset(
        "fashion_mnist",
        TensorSplit(train_x, train_y),
        TensorSplit(test_x, test_y),
        num_classes=10,
        input_shape=tuple(train_x.shape[1:]),
        class_names=FASHION_MNIST_CLASSES,
    )


# --------------------------------------------------------------------------------- procedural / bundled


def load_mnist1d(num_samples: int = 5000, generator_seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020): 10 classes of length-40 signals, generated procedurally.

    Calls ``mnist1d.data.make_dataset`` directly (``get_dataset`` would try a download).  The generator
    seeds and uses Python's and NumPy's global random state; that state is saved and restored around the
    call so that loading the data leaves no trace on global randomness.  80% train / 20% test, as the package
    splits it; standardised by the package.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - mnist1d is a declared dependency
        raise DataNotFoundError("MNIST-1D needs the `mnist1d` package: pip install mnist1d") from exc
    if int(num_samples) != num_samples or num_samples < 20:
        raise ValueError(f"num_samples must be an integer >= 20, got {num_samples!r}")
    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(generator_seed)
    # mnist1d reseeds the legacy global generators; restore them afterwards.
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
    return Dataset(
        "mnist1d",
        TensorSplit(torch.as_tensor(data["x"], dtype=torch.float32), torch.as_tensor(data["y"], dtype=torch.long)),
        TensorSplit(
            torch.as_tensor(data["x_test"], dtype=torch.float32), torch.as_tensor(data["y_test"], dtype=torch.long)
        ),
        num_classes=10,
        input_shape=(int(data["x"].shape[1]),),
    )


def load_digits_dataset(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """scikit-learn's bundled digits (1797 8x8 images, 10 classes), split by a seeded permutation.

    Pixels (0..16) are standardised with the training mean and standard deviation.
    """
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=_seeded_generator(split_seed, "digits-split"))
    n_test = round(test_fraction * len(labels))
    test_idx, train_idx = order[:n_test], order[n_test:]
    train_x, test_x = _standardize(images[train_idx], images[test_idx], dims=(0, 1, 2, 3))
    return Dataset(
        "digits",
        TensorSplit(train_x, labels[train_idx]),
        TensorSplit(test_x, labels[test_idx]),
        num_classes=10,
        input_shape=(1, 8, 8),
    )


# -------------------------------------------------------------------------------------------- CIFAR-10

_CIFAR_HINT = (
    "CIFAR-10 is read from the standard python pickle batches: download cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html on a machine with network access, unpack it and pass "
    "the folder cifar-10-batches-py (holding data_batch_1..5 and test_batch) as data.root."
)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (a dict with ``data`` and ``labels``).

    The official distribution is a Python pickle, and unpickling can run code: this reads only the folder the
    user names as ``data.root`` on their own disk, a format they choose to load (DESIGN.md 4).  Nothing the
    package writes or caches (records, checkpoints) is ever read with pickle (:mod:`empirical.checkpoints`).
    """
    with open(path, "rb") as handle:
        entry = pickle.load(handle, encoding="bytes")
    data = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (no 'data' and 'labels' entries)")
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(root: str | os.PathLike[str]) -> Dataset:
    """CIFAR-10 (50k / 10k 32x32 colour images) from the python pickle batches in ``root``.

    Channels are standardised with the training split's per-channel mean and standard deviation.  The
    trainer applies the standard augmentation (:func:`random_crop_flip`) to training batches.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"CIFAR-10 folder {root} does not exist. {_CIFAR_HINT}")
    parts = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        path = root / name
        if not path.is_file():
            raise DataNotFoundError(f"missing {path}. {_CIFAR_HINT}")
        parts.append(_read_cifar_batch(path))
    train_x = torch.from_numpy(np.concatenate([x for x, _ in parts[:5]])).float().div(255.0)
    train_y = torch.from_numpy(np.concatenate([y for _, y in parts[:5]]))
    test_x = torch.from_numpy(parts[5][0]).float().div(255.0)
    test_y = torch.from_numpy(parts[5][1])
    train_x, test_x = _standardize(train_x, test_x, dims=(0, 2, 3))
    return Dataset(
        "cifar10",
        TensorSplit(train_x, train_y),
        TensorSplit(test_x, test_y),
        num_classes=10,
        input_shape=(3, 32, 32),
        augmentation="crop_flip",
    )


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    r"""Standard CIFAR augmentation on a batch: random crop after zero padding, and random horizontal flip.

    Each image :math:`(C,H,W)` is zero-padded by ``padding`` pixels on every side, an :math:`H\times W`
    window at a uniform offset in :math:`\{0,\dots,2p\}^2` is cut out, and with probability 1/2 it is
    mirrored left-right.  The random draws (two offsets and one flip bit per image, in that order) come from
    ``generator``, a CPU generator, so a batch's augmentation depends only on the generator's seed and not on
    the device; they are applied where ``images`` live (the training device, for data held there: CIFAR-10 on
    a GPU is augmented on the GPU, as airbench does) with two gathers along rows and columns whose index
    tensors are broadcast views (no Python loop over images, no index tensor the size of the batch).  The
    result is a copy of input values, so it is bitwise the same on every device.
    """
    n, channels, height, width = images.shape
    device = images.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    if device.type != "cpu":
        offsets, flips = offsets.to(device, non_blocking=True), flips.to(device, non_blocking=True)
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[0, :, None] + torch.arange(height, device=device)  # (n, H)
    cols = offsets[1, :, None] + torch.arange(width, device=device)  # (n, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    padded_width = width + 2 * padding
    cut_rows = padded.gather(2, rows[:, None, :, None].expand(n, channels, height, padded_width))
    return cut_rows.gather(3, cols[:, None, None, :].expand(n, channels, height, width))
