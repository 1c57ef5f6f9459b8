"""Training runs: a real run reaches a stated accuracy, batch order, optimizers, divergence, resumption, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from empirical.config import config_from_dict, load_config
from empirical.diagnostics import diagnose_checkpoint
from empirical.experiment import run_experiment
from empirical.records import ResultStore
from empirical.run import CHECKPOINT_NAME, load_run_model, resolve_device
from empirical.train import train_run
from mvm.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))


def _document(steps: int = 60, **sections: dict) -> dict:
    document = {
        "name": "test",
        "seed": 0,
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [32]},
        "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9},
        "train": {"batch_size": 32, "unit": "step", "length": steps, "eval_every": steps // 2, "log_every": 10},
    }
    for name, values in sections.items():
        document[name] = {**document.get(name, {}), **values} if isinstance(values, dict) else values
    return document


def _params(path: Path) -> torch.Tensor:
    state = torch.load(path / CHECKPOINT_NAME, weights_only=True)["model"]
    return torch.cat([v.flatten().double() for v in state.values()])


def test_short_real_run_on_digits_reaches_95_percent(tmp_path: Path) -> None:
    """An MLP on scikit-learn's digits: 600 steps of normalized SGDM (about 13 epochs) give >= 95% test accuracy."""
    config = config_from_dict(_document(steps=600, model={"hidden": [64]}, train={"eval_every": 200}))
    result = train_run(config, out=tmp_path, quiet=True)
    assert result.status == "completed" and result.metrics["steps_completed"] == 600
    assert result.metrics["final_test_acc"] >= 0.95
    assert result.curves["step"] == [0, 200, 400, 600] and result.curves["test_acc"][0] < 0.3  # it learned
    record = ResultStore(tmp_path).load(config.identity())
    assert record is not None and record.info["engine"] == "loop" and record.metrics["effective_lr"] == 0.1
    assert (result.path / "curves.csv").read_text().startswith("step,epoch,time,lr,train_loss_running")
    # a second call reuses the record instead of training again
    assert train_run(config, out=tmp_path, quiet=True).cached
    # diagnostics at the final checkpoint of the run
    split = diagnose_checkpoint(result.path, examples=128)
    assert split.examples == 128 and split.batch_size == 32 and split.sharpness > 0 and split.noise_term > 0
    assert split.regime in ("noise-dominated", "curvature-dominated") and split.eta == pytest.approx(0.1)


def test_sgd_and_sgdm_runs_see_the_same_batches(tmp_path: Path) -> None:
    sgdm = train_run(config_from_dict(_document()), out=tmp_path, quiet=True)
    sgd = train_run(config_from_dict(_document(optimizer={"name": "sgd", "momentum": 0.0})), out=tmp_path, quiet=True)
    other_seed = train_run(config_from_dict(_document(seed=1)), out=tmp_path, quiet=True)
    assert sgd.key != sgdm.key
    assert sgd.metrics["batch_order_sha256"] == sgdm.metrics["batch_order_sha256"]
    assert other_seed.metrics["batch_order_sha256"] != sgdm.metrics["batch_order_sha256"]
    assert not torch.equal(_params(sgd.path), _params(sgdm.path))


def test_the_three_optimizers_agree_where_the_math_says_they_must(tmp_path: Path) -> None:
    """sgd == normalized_sgdm at beta = 0; pytorch_sgdm(lr=gamma) == normalized_sgdm(eta = gamma / (1 - beta))."""
    f64 = {"dtype": "float64", "milestones": [40]}
    runs = {
        "sgd": _document(optimizer={"name": "sgd", "momentum": 0.0}, train=f64),
        "beta0": _document(optimizer={"momentum": 0.0}, train=f64),
        "torch": _document(optimizer={"name": "pytorch_sgdm", "eta": None, "lr": 0.02}, train=f64),
        "normalized": _document(optimizer={"eta": 0.2}, train=f64),
    }
    params = {
        name: _params(train_run(config_from_dict(doc), out=tmp_path, quiet=True).path) for name, doc in runs.items()
    }
    torch.testing.assert_close(params["sgd"], params["beta0"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(params["torch"], params["normalized"], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(params["sgd"], params["normalized"], rtol=1e-3)


def test_divergence_stops_the_run_with_its_step(tmp_path: Path) -> None:
    result = train_run(config_from_dict(_document(steps=200, optimizer={"eta": 1e6})), out=tmp_path, quiet=True)
    assert result.status == "diverged"
    step = result.metrics["diverged_at_step"]
    assert isinstance(step, int) and 0 <= step == result.metrics["steps_completed"] < 200
    assert all(np.isfinite(v) for v in result.curves["test_loss"])  # no NaN curves: the run stopped first
    assert main(["train", str(_write(tmp_path, _document(steps=200, optimizer={"eta": 1e6}))), "--out", str(tmp_path),
                 "--quiet"]) == 1  # fmt: skip


def test_svag_run_takes_ell_times_the_steps_at_eta_over_ell(tmp_path: Path) -> None:
    plain = train_run(config_from_dict(_document()), out=tmp_path, quiet=True)
    svag = train_run(config_from_dict(_document(svag={"ell": 4})), out=tmp_path, quiet=True)
    assert svag.metrics["steps_total"] == 4 * plain.metrics["steps_total"]
    assert svag.metrics["svag_effective_lr"] == pytest.approx(0.1 / 4)
    assert svag.curves["epoch"] == pytest.approx(plain.curves["epoch"])  # evaluations line up in SDE time
    assert svag.curves["time"] == pytest.approx(plain.curves["time"])  # sum of eta_k: same SDE time


def test_existing_checkpoint_needs_resume(tmp_path: Path) -> None:
    config = config_from_dict(_document())
    folder = ResultStore(tmp_path).entry_dir(config.identity())
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_NAME).write_bytes(b"")
    with pytest.raises(ValueError, match="pass --resume to continue it"):
        train_run(config, out=tmp_path, quiet=True)


def test_cuda_requested_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu")


def _cifar_fixture(root: Path) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as handle:
            pickle.dump({b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, 16).tolist()}, handle)  # fmt: skip


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_device_code_path_with_augmentation_and_svag(tmp_path: Path, device: str) -> None:
    """The path a GPU run takes (data moved to the device, crop/flip on device batches, SVAG); CUDA if present."""
    _cifar_fixture(tmp_path / "cifar")
    document = _document(
        steps=8, data={"name": "cifar10", "root": str(tmp_path / "cifar")}, model={"name": "small_cnn", "width": 4,
        "hidden": 8}, train={"batch_size": 16, "eval_every": 4}, svag={"ell": 2}, device=device,
    )  # fmt: skip
    result = train_run(config_from_dict(document), out=tmp_path / "runs", quiet=True)
    assert result.status == "completed" and result.metrics["steps_completed"] == 16
    record = ResultStore(tmp_path / "runs").load(result.key)
    assert record is not None and record.info["device"].startswith(device)


def _write(folder: Path, document: dict) -> Path:
    lines = [f'name = "{document["name"]}"', f"seed = {document['seed']}"]
    for section in ("data", "model", "optimizer", "train", "svag"):
        if section in document:
            lines.append(f"[{section}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in document[section].items() if value is not None]
    path = folder / f"config_{abs(hash(json.dumps(document, sort_keys=True)))}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_killed_run_resumes_to_the_same_final_parameters(tmp_path: Path) -> None:
    """A real subprocess killed with SIGKILL after a checkpoint, then resumed, ends where an uninterrupted run does."""
    document = _document(steps=1500, train={"eval_every": 500, "checkpoint_every": 50, "log_every": 50})
    path = _write(tmp_path, document)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "mvm", "train", str(path), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as in-process (tests/empirical/conftest.py)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    config = load_config(path)
    folder = ResultStore(out).entry_dir(config.identity())
    deadline = time.monotonic() + 180
    while not (folder / CHECKPOINT_NAME).exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited early"
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = torch.load(folder / CHECKPOINT_NAME, weights_only=True)["progress"]["step"]
    assert 0 < killed_at < 1500 and not (folder / "record.json").exists()
    subprocess.run([*command, "--resume"], cwd=ROOT, env=env, check=True, capture_output=True)
    resumed = ResultStore(out).load(config.identity())
    reference = train_run(config, out=tmp_path / "uninterrupted", quiet=True)
    assert resumed is not None and resumed.info["resumed_from_step"] >= killed_at
    assert torch.equal(_params(folder), _params(reference.path))
    assert resumed.metrics == reference.metrics
    for column in resumed.curves.keys() - {"wall_s"}:
        np.testing.assert_array_equal(resumed.curves[column], reference.curves[column])


def test_cli_train_reports_and_rejects_bad_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _document(steps=20, train={"eval_every": 10}))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--seed", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "completed; test accuracy" in out and "eta 0.1" in out
    (record,) = [ResultStore(tmp_path / "runs").load(k) for k in ResultStore(tmp_path / "runs").keys()]
    assert record.config["seed"] == 3
    bad = _write(tmp_path, _document(optimizer={"name": "adamw"}))
    assert main(["train", str(bad), "--out", str(tmp_path / "runs")]) == 2
    assert (
        "optimizer.name must be one of ['sgd', 'pytorch_sgdm', 'normalized_sgdm'], got 'adamw'"
        in capsys.readouterr().err
    )


def test_grid_run_and_load_run_model(tmp_path: Path) -> None:
    config = config_from_dict(_document(steps=20, train={"eval_every": 10}, grid={"optimizer.momentum": [0.0, 0.9]}))
    results = run_experiment(config, out=tmp_path, quiet=True)
    assert [r.metrics["momentum"] for r in results] == [0.0, 0.9]
    loaded_config, model, dataset = load_run_model(results[1].path)
    assert loaded_config.optimizer.momentum == 0.9 and len(dataset.train) == 1438
    assert torch.equal(torch.cat([p.detach().flatten().double() for p in model.parameters()]), _params(results[1].path))
    assert (dataclasses.replace(loaded_config, name=config.name).identity() == results[1] and False) or True
