"""Data at device speed: crop-and-flip applied where the images live, image folders decoded by a thread pool.

The augmentation keeps its random draws on a CPU generator (so a batch depends on the seed, not on the device)
and applies them with two gathers; two reference implementations serve as oracles: the per-image loop and the
single advanced-indexing gather the package used before.  Image-folder batches must not depend on the number
of decoding threads.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from empirical.data import DATASET_OPTION_CHECKS, DEFAULT_DECODE_WORKERS, ImageFolderSplit, random_crop_flip
from empirical.data.image_folder import load_image_folder


def _loop_reference(images: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """The draws of :func:`random_crop_flip` (offsets, then flip bits), applied one image at a time."""
    n = images.shape[0]
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = []
    for image, (top, left), flip in zip(images, offsets.T.tolist(), flips.tolist(), strict=True):
        padded = F.pad(image, (padding, padding, padding, padding))
        crop = padded[:, top : top + image.shape[1], left : left + image.shape[2]]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def _indexing_reference(images: torch.Tensor, generator: torch.Generator, padding: int) -> torch.Tensor:
    """The previous implementation: one advanced-indexing gather with four broadcast index tensors."""
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


@given(
    n=st.integers(1, 40),
    channels=st.integers(1, 4),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    padding=st.integers(0, 5),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.uint8]),
    channels_last=st.booleans(),
)
def test_crop_flip_is_bitwise_the_per_image_loop(
    n: int, channels: int, height: int, width: int, padding: int, seed: int, dtype: torch.dtype, channels_last: bool
) -> None:
    images = (torch.randn(n, channels, height, width, generator=torch.Generator().manual_seed(seed)) * 50).to(dtype)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    result = random_crop_flip(images, torch.Generator().manual_seed(seed + 1), padding=padding)
    loop = _loop_reference(images, torch.Generator().manual_seed(seed + 1), padding)
    indexed = _indexing_reference(images, torch.Generator().manual_seed(seed + 1), padding)
    assert result.dtype == dtype and result.shape == images.shape
    assert torch.equal(result, loop)
    assert torch.equal(result, indexed)


def test_crop_flip_draws_the_same_numbers_as_before_and_detects_a_wrong_oracle() -> None:
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(7)
    result = random_crop_flip(images, generator)
    # the generator advanced by exactly the old draws: the next number is the same as after the old code
    replay = torch.Generator().manual_seed(7)
    _indexing_reference(images, replay, 4)
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=replay))
    # a reference with the flips switched off differs (the test can fail)
    wrong = torch.Generator().manual_seed(7)
    offsets = torch.randint(0, 9, (2, 64), generator=wrong)
    padded = F.pad(images, (4, 4, 4, 4))
    unflipped = torch.stack(
        [p[:, top : top + 32, left : left + 32] for p, (top, left) in zip(padded, offsets.T.tolist(), strict=True)]
    )
    assert not torch.equal(result, unflipped)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_crop_flip_on_cuda_equals_cpu() -> None:  # pragma: no cover - CPU-only CI
    images = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    on_cpu = random_crop_flip(images, torch.Generator().manual_seed(9))
    on_gpu = random_crop_flip(images.cuda(), torch.Generator().manual_seed(9))
    assert torch.equal(on_gpu.cpu(), on_cpu)


# ------------------------------------------------------------------------------------- image folder


def _jpeg_folder(root: Path, per_class: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(11)
    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                height, width = int(rng.integers(24, 48)), int(rng.integers(24, 48))
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


def test_image_folder_batches_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    _jpeg_folder(tmp_path)
    one = load_image_folder(tmp_path, image_size=16, resize_size=20, num_workers=1)
    three = load_image_folder(tmp_path, image_size=16, resize_size=20, num_workers=3)
    assert isinstance(one.train, ImageFolderSplit) and three.train.num_workers == 3
    indices = torch.tensor([5, 0, 11, 3, 7, 7, 2])
    for split_one, split_three in ((one.train, three.train), (one.test, three.test)):
        x1, y1 = split_one.batch(indices, torch.Generator().manual_seed(4))
        x3, y3 = split_three.batch(indices, torch.Generator().manual_seed(4))
        assert torch.equal(x1, x3) and torch.equal(y1, y3)
        assert x1.shape == (7, 3, 16, 16)
    # a data-parallel shard (``part``) decoded by 3 threads is the slice of the whole batch decoded by 1
    whole, _ = one.train.batch(indices, torch.Generator().manual_seed(4))
    shard, _ = three.train.batch(indices, torch.Generator().manual_seed(4), part=slice(2, 6))
    assert torch.equal(shard, whole[2:6])
    # the training augmentation does vary with the generator (the equality above is not vacuous)
    other, _ = one.train.batch(indices, torch.Generator().manual_seed(5))
    assert not torch.equal(other, one.train.batch(indices, torch.Generator().manual_seed(4))[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_image_folder_decodes_in_a_child_forked_after_the_parent_used_its_threads(tmp_path: Path) -> None:
    """A child forked after the parent decoded with 3 threads gets no threads of the parent's pool: it must start
    a pool of its own (``os.register_at_fork``), not wait forever on the inherited one."""
    _jpeg_folder(tmp_path / "images")
    split = load_image_folder(tmp_path / "images", image_size=16, resize_size=20, num_workers=3).train
    indices = torch.tensor([5, 0, 11, 3, 7, 2])
    expected, _ = split.batch(indices, torch.Generator().manual_seed(4))  # the parent's pool now exists
    result = tmp_path / "child.pt"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            signal.alarm(60)  # a hung child dies rather than outliving the test
            found, _ = split.batch(indices, torch.Generator().manual_seed(4))
            torch.save(found, result)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not decode its batch within 30 s (inherited a pool with no threads)")
    assert os.waitstatus_to_exitcode(status) == 0
    assert torch.equal(torch.load(result), expected)


def test_decode_workers_option_is_checked() -> None:
    check = DATASET_OPTION_CHECKS["image_folder"]["num_workers"]
    assert check(3, "data.num_workers") == 3
    for bad in (0, -1, 1.5, "4", True):
        with pytest.raises((ValueError, TypeError)):
            check(bad, "data.num_workers")
    assert 1 <= DEFAULT_DECODE_WORKERS <= 8
