"""Experiment configs: every shipped config validates; bad input gets a clear error listing what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from empirical.config import (
    OptimizerConfig,
    RunConfig,
    TrainConfig,
    config_from_dict,
    expand_grid,
    load_config,
)
from empirical.records import config_key

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def _document(**changes: dict) -> dict:
    document = {
        "seed": 0,
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9},
        "train": {"batch_size": 32, "unit": "step", "length": 100, "eval_every": 50},
    }
    for section, values in changes.items():
        replace = not isinstance(values, dict) or (section == "model" and "name" in values)
        document[section] = values if replace else {**document.get(section, {}), **values}
    return document


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    members = expand_grid(config)
    assert members and all(not m.grid for m in members)
    assert len({config_key(m.identity()) for m in members}) == len(members)


def test_paper_configs_hold_the_papers_settings() -> None:
    cifar = load_config(next(p for p in CONFIGS if p.stem == "cifar10_resnet32_svag"))
    assert (cifar.train.batch_size, cifar.optimizer.eta, cifar.optimizer.momentum) == (512, 0.2, 0.9)
    assert cifar.train.milestones == (80, 120) and cifar.train.lr_decay == 0.1 and cifar.model.name == "resnet32"
    members = expand_grid(cifar)
    assert sorted({m.svag.ell for m in members}) == [1, 2, 4, 8]
    schedule = next(m for m in members if m.svag.ell == 4 and m.optimizer.momentum == 0.9).schedule(train_size=50_000)
    assert schedule.lr == pytest.approx(0.05) and schedule.steps == 4 * 160 * (50_000 // 512)
    assert schedule.milestones == (4 * 80 * 97, 4 * 120 * 97) and schedule.momentum == 0.9


def test_effective_and_native_learning_rates() -> None:
    torch_style = OptimizerConfig("pytorch_sgdm", lr=0.02, momentum=0.9)
    assert torch_style.effective_lr == pytest.approx(0.2) and torch_style.native_lr(torch_style.effective_lr) == 0.02
    assert torch_style.native_lr(0.1) == pytest.approx(0.01)  # a scheduled eta is handed over as gamma
    normalized = OptimizerConfig("normalized_sgdm", eta=0.2, momentum=0.9)
    assert normalized.effective_lr == normalized.native_lr(0.2) == 0.2
    assert OptimizerConfig("sgd", lr=0.3).effective_lr == 0.3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": {"name": "adam"}}, r"optimizer.name .* \['sgd', 'pytorch_sgdm', 'normalized_sgdm'\]"),
        ({"data": {"name": "imagenet"}}, r"unknown dataset 'imagenet'; allowed: \[.*'cifar10'.*'image_folder'"),
        ({"model": {"name": "vgg"}}, r"unknown model 'vgg'; allowed: \['mlp', 'resnet32', 'resnet50'"),
        ({"train": {"batch_sise": 3}}, r"unknown key\(s\) \['batch_sise'\] in \[train\]; allowed: \['batch_size'"),
        ({"optimiser": {}}, r"unknown key\(s\) \['optimiser'\] in the config; allowed: \["),
        ({"model": {"depth": 3}}, r"unknown option\(s\) \['depth'\] for model 'mlp'; allowed: \['name', 'hidden'\]"),
        ({"data": {"rot": "/x"}}, r"option\(s\) \['rot'\] for dataset 'digits'; allowed: \['name', 'few_shot_k'"),
        ({"optimizer": {"lr": 0.1}}, "exactly one of `eta`"),
        ({"optimizer": {"name": "sgd"}}, "'sgd' has no momentum"),
        ({"optimizer": {"momentum": 1.0}}, r"momentum \(beta\) must lie in \[0, 1\)"),
        ({"optimizer": {"eta": -1.0}}, r"optimizer.eta \(effective learning rate\) must be a finite number in \(0"),
        ({"optimizer": {"weight_decay": -1e-4}}, r"weight_decay must be a finite number in \[0, inf\)"),
        ({"train": {"unit": "hour"}}, r"train.unit must be one of \['epoch', 'step'\]"),
        ({"train": {"batch_size": 0}}, "train.batch_size must be an integer >= 1"),
        ({"train": {"milestones": [80, 40]}}, "train.milestones must increase strictly"),
        ({"train": {"cosine": True, "milestones": [50]}}, "exclude each other"),
        ({"train": {"dtype": "float16"}}, r"train.dtype must be one of \['float32', 'float64'\]"),
        ({"svag": {"ell": 1.5}}, "svag.ell must be an integer"),
        ({"svag": {"ell": 0}}, r"ell \(SVAG factor\) must be a finite number in \[1, inf\)"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"device": "tpu"}, "device must be 'cpu', 'cuda' or 'cuda:N'"),
        ({"grid": {"model.name": ["mlp"]}}, r"unknown grid key 'model.name'; allowed: \["),
        ({"grid": {"seed": []}}, "grid.seed must be a non-empty list"),
        ({"grid": {"optimizer.momentum": [0.5, 2.0]}}, r"momentum \(beta\) must lie in \[0, 1\)"),
        ({"model": {"name": "sequence_classifier"}}, "text datasets"),
    ],
)  # fmt: skip
def test_bad_configs_are_rejected_with_what_is_allowed(changes: dict, message: str) -> None:
    document = _document(**changes)
    if "seed" in changes or "device" in changes:
        document.update({k: v for k, v in changes.items() if k in ("seed", "device")})
    with pytest.raises(ValueError, match=message):
        config_from_dict(document)


def test_missing_section_and_bad_toml(tmp_path: Path) -> None:
    document = _document()
    del document["train"]
    with pytest.raises(ValueError, match=r"needs a \[train\] table"):
        config_from_dict(document)
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname = 1")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "absent.toml")


def test_grid_members_have_the_keys_of_their_separate_runs() -> None:
    config = config_from_dict(_document(grid={"optimizer.momentum": [0.0, 0.9], "seed": [0, 3]}))
    members = expand_grid(config)
    assert [(m.optimizer.momentum, m.seed) for m in members] == [(0.0, 0), (0.0, 3), (0.9, 0), (0.9, 3)]
    alone = config_from_dict(_document(optimizer={"momentum": 0.0}, seed=3))
    alone = dataclasses.replace(alone, seed=3)
    assert config_key(members[1].identity()) == config_key(alone.identity())
    # a grid over eta replaces a base learning rate given as `lr`
    lr_based = config_from_dict(_document(optimizer={"eta": None, "lr": 0.05}) | {"grid": {"optimizer.eta": [0.2]}})
    (member,) = expand_grid(lr_based)
    assert member.optimizer.eta == 0.2 and member.optimizer.lr is None


def test_identity_round_trips_and_excludes_the_name() -> None:
    config = config_from_dict(_document(train={"milestones": [50, 80]}))
    renamed = dataclasses.replace(config, name="another label")
    assert config_key(config.identity()) == config_key(renamed.identity())
    assert RunConfig.from_identity(config.identity(), name=config.name) == config


def test_schedule_conversion_epochs_to_steps() -> None:
    train = TrainConfig(batch_size=100, length=3, unit="epoch", milestones=(1, 2), warmup=0.5, eval_every=0.5)
    assert train.steps_per_unit(1050) == 10 and train.to_steps(0.5, 1050, "warmup") == 5
    with pytest.raises(ValueError, match="less than one step"):
        train.to_steps(0.01, 1050, "eval_every")
    with pytest.raises(ValueError, match="exceeds the 50 training examples"):
        train.steps_per_unit(50)
