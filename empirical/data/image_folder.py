"""ImageNet-style image folders (``ROOT/{train,val}/CLASS/IMAGE``), decoded with Pillow batch by batch."""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empirical.data.splits import (
    DataNotFoundError,
    Dataset,
    Inputs,
)

__all__ = [
    "DEFAULT_DECODE_WORKERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderSplit",
    "load_image_folder",
]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Decoding threads of an image folder unless ``data.num_workers`` says otherwise.
DEFAULT_DECODE_WORKERS = min(8, os.cpu_count() or 1)

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _forget_pools_after_fork() -> None:
    """In a forked child: the parent's pools have no threads there (fork copies only the calling thread), so a
    batch submitted to one would wait forever; start afresh (a new lock too: the parent's may be held)."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _decode_pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per worker count, shared by every split and thread (no thread start-up per batch)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mvm-decode")
        return pool


@dataclass(frozen=True)
class ImageFolderSplit:
    """Images listed from an ImageFolder tree, decoded with Pillow batch by batch (a streamed split).

    ``train=True``: random resized crop (area fraction in [0.08, 1], aspect ratio in [3/4, 4/3], up to
    10 tries, else the centred largest valid crop) to ``image_size`` and a random horizontal flip, with
    every draw taken from the batch's generator.  ``train=False``: resize the shorter side to
    ``resize_size`` and centre-crop ``image_size``.  Both normalise with the ImageNet channel statistics.
    The images of a batch are decoded concurrently in ``num_workers`` threads (Pillow releases the GIL while it
    decodes and resizes); every random draw is taken before decoding starts and results are collected in
    order, so a batch is bitwise the same for every worker count.  The training loop fetches the next batch
    in a background thread meanwhile, so decoding overlaps with the device's compute.  ``batch(..., part=s)``
    decodes only the examples ``s`` of the batch, with the draws made for the whole batch (a data-parallel
    rank's shard, :mod:`empirical.distributed`): the same images as slicing the whole batch's result.
    """

    paths: tuple[str, ...]
    targets: torch.Tensor
    train: bool = False
    image_size: int = 224
    resize_size: int = 256
    num_workers: int = DEFAULT_DECODE_WORKERS
    streaming: bool = field(default=True, init=False)

    def __len__(self) -> int:
        return len(self.paths)

    def batch(
        self, indices: torch.Tensor, generator: torch.Generator | None = None, part: slice | None = None
    ) -> tuple[Inputs, torch.Tensor]:
        n = len(indices)
        if self.train:
            if generator is None:
                raise ValueError("training batches of an image folder need a generator for their augmentation")
            draws = torch.rand(n, 10, 4, generator=generator, dtype=torch.float64).numpy()
            flips = (torch.rand(n, generator=generator) < 0.5).tolist()
        else:
            draws, flips = [None] * n, [False] * n
        if part is not None:
            indices, draws, flips = indices[part], draws[part], flips[part]
        rows = indices.tolist()
        paths = [self.paths[i] for i in rows]
        workers = max(1, self.num_workers)
        if workers == 1 or len(rows) <= 1:
            arrays = [self._decode(*job) for job in zip(paths, draws, flips, strict=True)]
        else:
            arrays = list(_decode_pool(workers).map(self._decode, paths, draws, flips))
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
    num_workers: int = DEFAULT_DECODE_WORKERS,
) -> Dataset:
    """ImageNet-style tree ``root/{train_dir,test_dir}/CLASS/IMAGE`` as streamed splits.

    Class indices follow the sorted class-folder names of the training tree; the test tree must have the
    same class folders.  Decoding uses Pillow (installed with matplotlib); no torchvision.  ``num_workers``:
    decoding threads per batch (default ``min(8, os.cpu_count())``); the batches do not depend on it.
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
