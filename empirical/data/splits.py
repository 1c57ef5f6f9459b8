r"""Splits, datasets, seeds and data order: what every source of :mod:`empirical.data` produces and what the
trainers consume.

:class:`TensorSplit` (examples held as tensors, batched by indexing), :class:`TextSplit` (raw text),
:class:`Dataset` (train and test splits), :func:`derive_seed` (every source of randomness is seeded from the
run seed and a purpose), :class:`EpochSampler` (the mini-batch order), :func:`few_shot_subset` and
:func:`fixed_subset` (seeded subsets of a held split).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from theory.validation import check_int, check_nonnegative_int

__all__ = [
    "DataNotFoundError",
    "Dataset",
    "EpochSampler",
    "Inputs",
    "Split",
    "TensorSplit",
    "TextSplit",
    "derive_seed",
    "few_shot_subset",
    "fixed_subset",
]


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
