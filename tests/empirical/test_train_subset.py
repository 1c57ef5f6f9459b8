"""``data.train_subset``: one fixed training subset for every seed and optimizer, and a disjoint held-out split."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from empirical.config import DataConfig, ModelConfig, OptimizerConfig, RunConfig, TrainConfig, config_from_dict
from empirical.data import TensorSplit, TextSplit, fixed_subset
from empirical.records import config_key
from empirical.run import prepare_dataset


def _split(size: int = 100) -> TensorSplit:
    return TensorSplit(torch.arange(float(size))[:, None], torch.arange(size) % 10)


def test_fixed_subset_is_fixed_and_disjoint_from_what_follows_it() -> None:
    split = _split()
    subset = fixed_subset(split, 40)
    again = fixed_subset(split, 40)
    held_out = fixed_subset(split, 30, skip=40)
    rows, held_rows = subset.inputs[:, 0], held_out.inputs[:, 0]
    assert len(subset) == 40 and len(held_out) == 30
    assert torch.equal(rows, again.inputs[:, 0])
    assert torch.equal(rows, torch.sort(rows).values)  # the original order is kept
    assert not set(rows.tolist()) & set(held_rows.tolist())
    assert torch.equal(subset.targets, rows.long() % 10)  # inputs and targets stay together
    assert rows.tolist() != list(range(40))  # a random subset, not the first rows
    # the first n rows of one permutation: a larger subset contains the smaller one
    assert set(rows.tolist()) <= set(fixed_subset(split, 70).inputs[:, 0].tolist())
    text = TextSplit(tuple(f"t{i}" for i in range(100)), torch.arange(100) % 10)
    assert [int(t[1:]) for t in fixed_subset(text, 40).texts] == rows.long().tolist()


@pytest.mark.parametrize(
    ("count", "skip", "message"),
    [(0, 0, "train_subset must be an integer >= 1"), (2.5, 0, "must be an integer >= 1 .*got 2.5"),
     (101, 0, "exceed the 100"), (60, 50, "60 examples after the first 50 exceed"), (10, -1, "skip must be")],
)  # fmt: skip
def test_fixed_subset_rejects_bad_sizes(count: float, skip: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fixed_subset(_split(), count, skip=skip)  # type: ignore[arg-type]


def _config(seed: int = 0, train_subset: int = 0, momentum: float = 0.0) -> RunConfig:
    return RunConfig(
        data=DataConfig("digits", train_subset=train_subset),
        model=ModelConfig("mlp", {"hidden": [8]}),
        optimizer=OptimizerConfig("normalized_sgdm" if momentum else "sgd", eta=0.1, momentum=momentum),
        train=TrainConfig(batch_size=16, length=1),
        seed=seed,
    )


def test_runs_train_on_the_same_subset_whatever_the_seed_and_optimizer() -> None:
    full = prepare_dataset(_config(), torch.device("cpu"))
    subsets = [prepare_dataset(_config(s, 300, m), torch.device("cpu")) for s, m in ((0, 0.0), (1, 0.9))]
    expected = fixed_subset(full.train, 300)
    for dataset in subsets:
        assert len(dataset.train) == 300 and len(dataset.test) == len(full.test)
        assert torch.equal(dataset.train.inputs, expected.inputs)
        assert torch.equal(dataset.train.targets, expected.targets)


def test_train_subset_is_validated_and_part_of_the_run_key_only_when_set() -> None:
    with pytest.raises(ValueError, match=r"data.train_subset must be an integer >= 1"):
        DataConfig("digits", train_subset=-5)
    plain, subset = _config(), _config(train_subset=300)
    assert "train_subset" not in plain.identity()["data"]  # runs on the whole set keep their earlier keys
    assert subset.identity()["data"]["train_subset"] == 300
    assert config_key(plain.identity()) != config_key(subset.identity())
    assert RunConfig.from_identity(subset.identity()) == dataclasses.replace(subset, name="run")
    document = {
        "data": {"name": "digits", "train_subset": 300},
        "model": {"name": "mlp"},
        "optimizer": {"name": "sgd", "eta": 0.1},
        "train": {"batch_size": 16, "length": 1},
    }
    assert config_from_dict(document).data == DataConfig("digits", train_subset=300)
