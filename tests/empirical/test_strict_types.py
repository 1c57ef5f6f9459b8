"""Strict types at the empirical boundary (issue 13, item 3): each scenario that once ran silently wrong or crashed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from empirical.config import MOMENTUM_SCALINGS, config_from_dict, load_config
from empirical.data import DATASET_OPTION_CHECKS, DATASETS, TensorSplit, load_dataset
from empirical.models import MODEL_OPTION_CHECKS, MODELS, build_model
from empirical.optim import NormalizedSGDM


def _document(**changes: dict) -> dict:
    document = {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9},
        "train": {"batch_size": 32, "unit": "step", "length": 100, "milestones": [50]},
    }
    for section, values in changes.items():
        replace = not isinstance(values, dict) or (section == "model" and "name" in values)
        document[section] = values if replace else {**document.get(section, {}), **values}
    return document


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": {"eta": True}}, r"optimizer.eta \(effective learning rate\) must be .* got True \(a bool\)"),
        ({"optimizer": {"momentum": True}}, r"optimizer.momentum \(beta\) must lie in \[0, 1\) .*got True"),
        ({"optimizer": {"nesterov": "no"}}, r"optimizer.nesterov must be true or false \(a bool\), got 'no'"),
        ({"train": {"batch_size": True}}, r"train.batch_size must be an integer >= 1, got True \(a bool\)"),
        ({"train": {"batch_size": 32.5}}, r"train.batch_size must be an integer >= 1, got 32.5"),
        ({"train": {"length": float("nan")}}, r"train.length must be a finite number in \(0, inf\), got nan"),
        ({"train": {"milestones": 3}}, r"train.milestones must be a list of numbers \(durations\), got 3"),
        ({"train": {"milestones": ["a"]}}, r"train.milestones\[0\] must be a finite number"),
        ({"train": {"lr_decay": True}}, r"train.lr_decay must lie in \(0, 1\] \(a real number\), got True"),
        ({"train": {"cosine": 1}}, r"train.cosine must be true or false"),
        ({"model": {"hidden": [0]}}, r"model.hidden\[0\] must be an integer >= 1, got 0"),
        ({"model": {"hidden": [-5]}}, r"model.hidden\[0\] must be an integer >= 1, got -5"),
        ({"model": {"hidden": "abc"}}, r"model.hidden must be a list of integers >= 1, got 'abc' \(a string\)"),
        ({"model": {"hidden": [True]}}, r"model.hidden\[0\] must be an integer >= 1, got True \(a bool\)"),
        ({"model": {"name": "small_cnn", "width": 0}}, r"model.width must be an integer >= 1, got 0"),
        ({"model": {"name": 7}}, r"model.name must be a string, got 7"),
        ({"data": {"test_fraction": 1.5}}, r"data.test_fraction must lie in \(0, 1\), got 1.5"),
        ({"data": {"split_seed": -1}}, r"data.split_seed must be an integer >= 0, got -1"),
        ({"data": {"few_shot_k": True}}, r"data.few_shot_k must be an integer >= 0 .*got True"),
        ({"svag": {"ell": 2.5}}, r"svag.ell must be an integer >= 1"),
        ({"seed": True}, r"seed must be an integer >= 0, got True \(a bool\)"),
        ({"name": 3}, r"name must be a string, got 3"),
        ({"grid": {"vectorize": "yes"}}, r"grid.vectorize must be true or false"),
        ({"train": [1, 2]}, r"\[train\] must be a table"),
    ],
)
def test_config_rejects_wrong_types_naming_key_type_and_range(changes: dict, message: str) -> None:
    document = _document(**changes)
    with pytest.raises(ValueError, match=message):
        config_from_dict(document)


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[data]\nname = "digits"\n[model]\nname = "mlp"\nhidden = [0]\n'
        '[optimizer]\nname = "sgd"\neta = 0.1\n[train]\nbatch_size = 8\nlength = 1\n'
    )
    with pytest.raises(ValueError, match=r"bad.toml: model.hidden\[0\] must be an integer >= 1, got 0"):
        load_config(path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 8)
    with pytest.raises(ValueError, match=r"binary.toml is not a TOML file: not UTF-8 text"):
        load_config(binary)
    with pytest.raises(ValueError, match="is a directory"):
        load_config(tmp_path)


def test_every_builder_and_loader_option_has_a_check() -> None:
    """A new keyword of a model builder or data loader without a schema entry would go unchecked again."""
    import inspect

    for name, builder in MODELS.items():
        assert set(list(inspect.signature(builder).parameters)[1:]) == set(MODEL_OPTION_CHECKS[name]), name
    for name, loader in DATASETS.items():
        assert set(inspect.signature(loader).parameters) == set(DATASET_OPTION_CHECKS[name]), name
    assert MOMENTUM_SCALINGS  # the choice lists exist for the messages


def test_build_model_and_load_dataset_check_options_too() -> None:
    from empirical.data import Dataset

    tiny = Dataset("tiny", TensorSplit(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)), None, 2, (3,))
    with pytest.raises(ValueError, match=r"model.hidden\[0\] must be an integer >= 1, got 0"):
        build_model("mlp", tiny, 0, hidden=[0])
    with pytest.raises(ValueError, match=r"model.zero_init_residual must be true or false"):
        build_model("resnet50", tiny, 0, zero_init_residual="no")
    with pytest.raises(ValueError, match=r"data.num_samples must be an integer >= 20, got 5.5"):
        load_dataset("mnist1d", num_samples=5.5)


def _model_and_optimizer(**options):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, NormalizedSGDM(model.parameters(), **{"lr": 0.1, "momentum": 0.9, **options})


def _step(model, optimizer) -> None:
    optimizer.zero_grad()
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()


def test_nesterov_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match=r"nesterov must be true or false \(a bool\), got 'no' \(a string\)"):
        _model_and_optimizer(nesterov="no")
    with pytest.raises(ValueError, match=r"nesterov must be true or false"):
        _model_and_optimizer(nesterov=1)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", float("nan"), r"lr \(effective learning rate eta\) must be a finite number in \(0, inf\), got nan"),
        ("lr", True, r"lr \(effective learning rate eta\) must be .*got True \(a bool\)"),
        ("momentum", 1.5, r"momentum \(beta\) must lie in \[0, 1\), got 1.5"),
        ("weight_decay", -1.0, r"weight_decay must be a finite number in \[0, inf\), got -1.0"),
        ("nesterov", "no", r"nesterov must be true or false"),
    ],
)
def test_edited_param_groups_are_checked_at_step_before_anything_moves(key: str, value: object, message: str) -> None:
    model, optimizer = _model_and_optimizer()
    _step(model, optimizer)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.param_groups[0][key] = value
    with pytest.raises(ValueError, match=message):
        _step(model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_loaded_state_with_momentum_out_of_range_is_rejected_at_load() -> None:
    model, optimizer = _model_and_optimizer()
    _step(model, optimizer)
    state = optimizer.state_dict()
    state["param_groups"][0]["momentum"] = 1.5
    _, fresh = _model_and_optimizer()
    with pytest.raises(ValueError, match=r"momentum \(beta\) must lie in \[0, 1\), got 1.5"):
        fresh.load_state_dict(state)
    good = optimizer.state_dict()
    fresh.load_state_dict(good)  # a valid state still loads
    assert math.isclose(fresh.param_groups[0]["momentum"], 0.9)
