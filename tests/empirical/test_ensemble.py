"""A torch.func ensemble gives each member the result of its separate run (same seeds and batches)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from empirical.config import config_from_dict, expand_grid
from empirical.ensemble import train_ensemble, vectorizable_groups
from empirical.experiment import run_experiment
from empirical.records import ResultStore
from empirical.run import CHECKPOINT_NAME

TOL = 1e-10  # float64: the ensemble and the loop differ only in floating-point evaluation order


def _grid(**extra: dict) -> dict:
    document = {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
        "train": {"batch_size": 32, "unit": "step", "length": 90, "eval_every": 30, "milestones": [60],
                  "dtype": "float64", "log_every": 20},
        "grid": {"seed": [0, 1], "optimizer.momentum": [0.0, 0.9], "optimizer.eta": [0.05, 0.2], "vectorize": True},
    }  # fmt: skip
    document.update(extra)
    return document


def _params(folder: Path) -> torch.Tensor:
    state = torch.load(folder / CHECKPOINT_NAME, weights_only=True)["model"]
    return torch.cat([v.flatten() for v in state.values()])


@pytest.mark.parametrize("svag", [1, 2])
def test_ensemble_members_equal_their_separate_runs(tmp_path: Path, svag: int) -> None:
    config = config_from_dict(_grid(svag={"ell": svag}))
    together = run_experiment(config, out=tmp_path / "ensemble", quiet=True)
    alone = run_experiment(dataclasses.replace(config, vectorize=False), out=tmp_path / "loop", quiet=True)
    assert len(together) == 8
    engines = {ResultStore(tmp_path / "ensemble").load(r.key).info["engine"] for r in together}
    assert engines == {"ensemble"}
    for a, b in zip(together, alone, strict=True):
        assert a.key == b.key  # the same result key as the separate run
        torch.testing.assert_close(_params(a.path), _params(b.path), rtol=TOL, atol=TOL)
        assert a.metrics["batch_order_sha256"] == b.metrics["batch_order_sha256"]
        for column in ("step", "time", "lr", "train_loss_running", "train_loss", "train_acc", "test_loss", "test_acc"):
            assert a.curves[column] == pytest.approx(b.curves[column], rel=TOL, abs=TOL, nan_ok=True), column
    # members differ from each other (the check above is not comparing identical runs)
    assert not torch.allclose(_params(together[0].path), _params(together[1].path))


def test_an_ensemble_member_that_diverges_stops_alone(tmp_path: Path) -> None:
    document = _grid(grid={"optimizer.eta": [0.1, 1e6], "vectorize": True})
    document["train"]["dtype"] = "float32"
    config = config_from_dict(document)
    together = run_experiment(config, out=tmp_path / "ensemble", quiet=True)
    alone = run_experiment(dataclasses.replace(config, vectorize=False), out=tmp_path / "loop", quiet=True)
    assert [r.status for r in together] == [r.status for r in alone] == ["completed", "diverged"]
    assert together[1].metrics["diverged_at_step"] == alone[1].metrics["diverged_at_step"]
    assert together[1].metrics["steps_completed"] == alone[1].metrics["steps_completed"]


def test_grouping_keeps_out_what_cannot_be_vectorised() -> None:
    members = expand_grid(config_from_dict(_grid()))
    assert vectorizable_groups(members) == [list(range(8))]
    batch_norm = dataclasses.replace(
        members[0], model=dataclasses.replace(members[0].model, name="resnet32", options={})
    )
    torch_sgdm = dataclasses.replace(
        members[1], optimizer=dataclasses.replace(members[1].optimizer, name="pytorch_sgdm")
    )
    other_batch = dataclasses.replace(members[2], train=dataclasses.replace(members[2].train, batch_size=64))
    groups = vectorizable_groups([*members[3:], torch_sgdm, other_batch])
    assert sorted(map(len, groups)) == [1, 1, 5]
    with pytest.raises(ValueError, match="ensemble members must share data, model, batch size"):
        train_ensemble([members[0], other_batch])
    with pytest.raises(ValueError, match=r"model in \('mlp', 'small_cnn'\)"):
        train_ensemble([batch_norm])
