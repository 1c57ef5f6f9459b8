"""Image-folder decoding alone: images/s of ``ImageFolderSplit.batch`` with 1, 2 and 4 decoding threads.

Writes a JPEG fixture (default 512 images of 256x320, two classes) to a temporary folder, then decodes it in
training batches (random resized crop to 224 and flip, as the ImageNet runs do) with each worker count in turn,
one pass each after a warm-up batch, and prints images/s and the ratio to one thread.  The batches are the same
for every worker count (tests/empirical/test_data_speed.py); only the time differs.  On a shared 2-core machine
the ratio is bounded by the cores; on a GPU host with 8-16 cores it is what keeps the device fed.

    python bench/bench_image_folder.py [--images 512] [--batch 128] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from empirical.data.image_folder import load_image_folder


def write_fixture(root: Path, images: int, height: int = 256, width: int = 320) -> None:
    """``images`` JPEGs of ``height`` x ``width`` (smooth random colour fields: realistic JPEG sizes) in 2 classes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("val", 2)):
        for label in range(2):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count // 2 if split == "train" else count):
                coarse = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
                image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
                noise = rng.integers(-12, 13, (height, width, 3))
                pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def measure(root: Path, workers: int, batch: int, image_size: int) -> float:
    data = load_image_folder(root, image_size=image_size, resize_size=image_size + 32, num_workers=workers)
    split = data.train
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    split.batch(order[: min(batch, 16)], torch.Generator().manual_seed(1))  # warm-up: pool, Pillow's plugins
    started = time.perf_counter()
    done = 0
    for step, start in enumerate(range(0, len(split) - batch + 1, batch)):
        images, _ = split.batch(order[start : start + batch], torch.Generator().manual_seed(step))
        done += images.shape[0]
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the normalisation after decoding stays on one core: decoding is what is measured
    with tempfile.TemporaryDirectory(prefix="mvm-bench-jpeg-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_fixture(root, args.images)
        print(f"fixture: {args.images} JPEGs 256x320 in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs")
        rates = {workers: measure(root, workers, args.batch, args.image_size) for workers in args.workers}
    base = rates[args.workers[0]]
    print(f"| decoding threads | images/s | ratio to {args.workers[0]} |")
    print("|---:|---:|---:|")
    for workers, rate in rates.items():
        print(f"| {workers} | {rate:.0f} | {rate / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
