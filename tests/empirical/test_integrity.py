"""Issue 13, items 1, 2, 5, 6: nothing runs from a file, stored values are integrity-checked, divergence is told
truthfully, killed ensembles resume bit for bit, and two processes never train one run twice.

Each test's docstring names the wrong behaviour it catches.
"""

from __future__ import annotations

import contextlib
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

from empirical.checkpoints import (
    CHECKPOINT_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    CorruptCheckpointError,
    read_checkpoint,
    write_checkpoint,
)
from empirical.config import config_from_dict, expand_grid, load_config
from empirical.ensemble import ensemble_checkpoint_identity
from empirical.experiment import run_experiment
from empirical.records import CorruptRecordError, ResultStore
from empirical.run import load_final_checkpoint, load_run_model, prepare_dataset
from empirical.train import _Run, train_run
from mvm.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),  # the planted files' protocol
]


def _document(steps: int = 40, **sections: dict) -> dict:
    document = {
        "name": "integrity",
        "seed": 0,
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9},
        "train": {"batch_size": 32, "unit": "step", "length": steps, "eval_every": steps // 2, "log_every": 10},
    }
    for name, values in sections.items():
        document[name] = {**document.get(name, {}), **values} if isinstance(values, dict) else values
    return document


def _toml(folder: Path, document: dict, name: str = "config.toml") -> Path:
    lines = [f'name = "{document["name"]}"', f"seed = {document['seed']}"]
    for section in ("data", "model", "optimizer", "train", "svag", "grid"):
        if section in document:
            lines.append(f"[{section}]")
            lines += [f"{json.dumps(key)} = {json.dumps(value)}" for key, value in document[section].items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if (and only if) the pickle is executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, marker: Path, form: str) -> None:
    """A checkpoint whose unpickling would create ``marker``: a raw pickle or a torch zip file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"config": {}, "model": _Payload(marker), "progress": {"step": 1}}
    if form == "pickle":
        path.write_bytes(pickle.dumps(state))
    else:
        torch.save(state, path)


def _params(state: dict) -> torch.Tensor:
    return torch.cat([v.flatten().double() for v in state["model"].values()])


@pytest.mark.parametrize("form", ["pickle", "torch_zip"])
def test_a_planted_checkpoint_runs_nothing_through_mvm_train_resume(
    tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong behaviour caught: ``torch.load(weights_only=False)`` in ``--resume`` executed the planted pickle."""
    live = tmp_path / "live_marker"
    _plant(tmp_path / "live.pt", live, form)
    with pytest.raises(Exception) if form == "pickle" else contextlib.nullcontext():  # no magic number: an error,
        torch.load(tmp_path / "live.pt", weights_only=False)  # but only after the payload ran
    assert live.exists()  # the payload is live under weights_only=False: the checks below can fail

    document = _document(train={"checkpoint_every": 10})
    path = _toml(tmp_path, document)
    out = tmp_path / "runs"
    folder = ResultStore(out).entry_dir(load_config(path).identity())
    marker = tmp_path / "marker"
    _plant(folder / CHECKPOINT_NAME, marker, form)
    assert main(["train", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "cannot be read as a checkpoint" in err and "set aside" in err and "continuing from" in err
    assert list(folder.glob(f"{CHECKPOINT_NAME}.corrupt-*"))  # kept for inspection, not deleted
    record = ResultStore(out).load(load_config(path).identity())
    assert record is not None and record.status == "completed" and record.info["resumed_from_step"] is None
    # diagnostics read checkpoints the same way
    _plant(tmp_path / "diag" / CHECKPOINT_NAME, marker, form)
    with pytest.raises(CorruptCheckpointError, match="cannot be read as a checkpoint"):
        load_run_model(tmp_path / "diag")
    assert not marker.exists()


def _checkpointed_run(out: Path, steps: int = 40) -> tuple:
    """A run of ``steps`` steps trained to its end by the loop alone, checkpointing every 10 steps (no record)."""
    config = config_from_dict(_document(steps=steps, train={"checkpoint_every": 10, "dtype": "float64"}))
    folder = ResultStore(out).entry_dir(config.identity())
    run = _Run(config, prepare_dataset(config, torch.device("cpu")), torch.device("cpu"), True)
    run.train(folder / CHECKPOINT_NAME)
    return config, folder


def _flip_a_tensor_byte(path: Path) -> None:
    """Change one parameter by one bit inside the zip, keeping the file loadable (torch checks no CRC)."""
    state = torch.load(path, weights_only=True)
    target = next(iter(state["model"].values())).flatten()[0].item()
    data = bytearray(path.read_bytes())
    needle = np.float64(target).tobytes()
    offset = bytes(data).find(needle)
    assert offset > 0
    data[offset] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "flip_a_tensor_byte", "both_damaged"])
def test_a_corrupt_checkpoint_is_set_aside_and_the_run_continues(tmp_path: Path, damage: str, capsys) -> None:
    """Wrong behaviours caught: a truncated checkpoint crashed ``--resume`` with a raw error; a flipped byte in a
    tensor loaded silently (torch.load checks no checksum); no earlier checkpoint was kept to fall back on."""
    config, folder = _checkpointed_run(tmp_path / "runs")
    assert read_checkpoint(folder / PREVIOUS_CHECKPOINT_NAME)["progress"]["step"] == 30
    newest = folder / CHECKPOINT_NAME
    if damage == "flip_a_tensor_byte":
        _flip_a_tensor_byte(newest)
    else:
        newest.write_bytes(newest.read_bytes()[:-100])
    if damage == "both_damaged":
        previous = folder / PREVIOUS_CHECKPOINT_NAME
        previous.write_bytes(previous.read_bytes()[:100])
    resumed = train_run(config, out=tmp_path / "runs", resume=True, quiet=True)
    err = capsys.readouterr().err
    assert "set aside" in err
    assert ("differ from its digest" in err) == (damage == "flip_a_tensor_byte")
    record = ResultStore(tmp_path / "runs").load(config.identity())
    assert record.info["resumed_from_step"] == (None if damage == "both_damaged" else 30)
    reference = train_run(config, out=tmp_path / "reference", quiet=True)
    assert torch.equal(_params(read_checkpoint(resumed.path / CHECKPOINT_NAME)), _params(read_checkpoint(
        reference.path / CHECKPOINT_NAME)))  # fmt: skip
    assert resumed.metrics == reference.metrics
    assert not (folder / PREVIOUS_CHECKPOINT_NAME).exists()  # a finished run keeps only its final checkpoint


def test_an_edited_record_is_an_exit_3_naming_the_folder_and_recompute_redoes_it(tmp_path: Path, capsys) -> None:
    """Wrong behaviour caught: an edited ``final_test_acc`` in record.json was used silently by ``mvm train`` (and
    flowed into figures); the only remedy was deleting the folder by hand."""
    path = _toml(tmp_path, _document())
    out = tmp_path / "runs"
    args = ["train", str(path), "--out", str(out), "--quiet"]
    assert main(args) == 0
    original = capsys.readouterr().out
    record_path = next(out.glob("*/record.json"))
    document = json.loads(record_path.read_text())
    document["metrics"]["final_test_acc"] = 0.99
    record_path.write_text(json.dumps(document, indent=2))
    assert main(args) == 3
    captured = capsys.readouterr()
    assert "0.99" not in captured.out
    (line,) = captured.err.strip().splitlines()
    assert str(record_path.parent) in line and "--recompute" in line
    assert main([*args, "--recompute"]) == 0
    assert capsys.readouterr().out == original  # retrained: the same numbers as the first time
    assert main(args) == 0 and "(cached)" in capsys.readouterr().out


def test_the_final_checkpoint_is_covered_by_the_record(tmp_path: Path, capsys) -> None:
    """Wrong behaviour caught: fig1's held-out accuracies came from checkpoint.pt, which no digest covered."""
    config, folder = _checkpointed_run(tmp_path / "runs", steps=20)
    (folder / CHECKPOINT_NAME).unlink()
    (folder / PREVIOUS_CHECKPOINT_NAME).unlink()
    result = train_run(config, out=tmp_path / "runs", quiet=True)
    assert torch.equal(_params(load_final_checkpoint(ResultStore(tmp_path / "runs"), result)), _params(
        read_checkpoint(folder / CHECKPOINT_NAME)))  # fmt: skip
    # replace the final parameters by an earlier, well-formed checkpoint with its own valid digest
    state = read_checkpoint(folder / CHECKPOINT_NAME)
    state["model"] = {name: torch.zeros_like(value) for name, value in state["model"].items()}
    state.pop("sha256")
    write_checkpoint(folder / CHECKPOINT_NAME, state)
    (folder / PREVIOUS_CHECKPOINT_NAME).unlink()
    with pytest.raises(CorruptRecordError, match="differ from the record's SHA-256"):
        load_final_checkpoint(ResultStore(tmp_path / "runs"), result)
    with pytest.raises(CorruptRecordError, match="differ from the record's SHA-256"):
        load_run_model(folder)
    path = _toml(tmp_path, _document(steps=20, train={"checkpoint_every": 10, "dtype": "float64"}))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 3
    assert "checkpoint.pt: contents differ" in capsys.readouterr().err


@pytest.mark.parametrize("eta", [1e30, 1e300])
def test_divergence_is_told_truthfully(tmp_path: Path, eta: float, capsys) -> None:
    """Wrong behaviours caught: at eta = 1e30 the step-0 metrics were recorded as final, with steps_completed = 44
    against diverged_at_step = 1; at eta = 1e300 a raw overflow error escaped and no record was written."""
    path = _toml(tmp_path, _document(steps=100, optimizer={"eta": eta}, train={"log_every": 44, "eval_every": 50}))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 1
    out = capsys.readouterr().out
    record = ResultStore(tmp_path / "runs").load(load_config(path).identity())
    metrics = record.metrics
    assert record.status == "diverged"
    step = metrics["diverged_at_step"]
    assert metrics["steps_completed"] == step and step <= 1
    assert all(metrics[f"final_{name}"] is None for name in ("train_loss", "train_acc", "test_loss", "test_acc"))
    assert metrics["last_finite"]["step"] == 0 and metrics["last_finite"]["test_acc"] == record.curves["test_acc"][0]
    assert f"diverged at step {step}" in metrics["warning"]
    assert f"diverged at step {step} of 100" in out and "last finite metrics (step 0)" in out


def test_a_run_that_learned_nothing_says_so(tmp_path: Path, capsys) -> None:
    """Wrong behaviour caught: a run ending at chance accuracy with its loss above the initial loss was reported as
    a plain "completed" with nothing to tell it from a good run."""
    path = _toml(tmp_path, _document(steps=60, model={"hidden": [32]}, optimizer={"eta": 30.0}))
    assert main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    assert "warning: learned nothing: test accuracy" in capsys.readouterr().out
    record = ResultStore(tmp_path / "runs").load(load_config(path).identity())
    assert record.status == "completed" and record.metrics["warning"].startswith("learned nothing")
    assert record.metrics["final_train_loss"] > record.curves["train_loss"][0]
    good = train_run(config_from_dict(_document(steps=60)), out=tmp_path / "runs", quiet=True)
    assert good.metrics["warning"] is None


def _ensemble_document(steps: int) -> dict:
    return _document(
        steps=steps,
        optimizer={"eta": 0.05},
        train={"checkpoint_every": 50, "log_every": 50, "eval_every": steps // 4, "dtype": "float64"},
        grid={"optimizer.momentum": [0.0, 0.9], "seed": [0, 1], "vectorize": True},
    )


def test_a_killed_ensemble_resumes_bit_identically(tmp_path: Path) -> None:
    """Wrong behaviour caught: a vectorised ensemble killed with SIGKILL kept nothing and started over."""
    steps = 1000
    path = _toml(tmp_path, _ensemble_document(steps))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "mvm", "train", str(path), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    members = expand_grid(load_config(path))
    group = ResultStore(out).entry_dir(ensemble_checkpoint_identity(members))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not (group / CHECKPOINT_NAME).exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited early"
        assert time.monotonic() < deadline, "no ensemble checkpoint within 180 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = read_checkpoint(group / CHECKPOINT_NAME)["progress"]["step"]
    assert 0 < killed_at < steps and not list(out.glob("*/record.json"))
    with pytest.raises(ValueError, match="pass --resume"):  # never silently restarted
        run_experiment(path, out=out, quiet=True)
    assert main(["train", str(path), "--out", str(out), "--quiet", "--resume"]) == 0
    assert not group.exists()  # the group checkpoint is removed once every member's record is written
    reference = run_experiment(path, out=tmp_path / "uninterrupted", quiet=True)
    for result in reference:
        resumed = ResultStore(out).load(result.key)
        assert resumed.metrics["warning"] is None and result.status == "completed"
        assert resumed.info["engine"] == "ensemble" and resumed.info["resumed_from_step"] >= killed_at
        assert resumed.metrics == result.metrics
        for column in resumed.curves.keys() - {"wall_s"}:
            np.testing.assert_array_equal(resumed.curves[column], result.curves[column])
        ours = read_checkpoint(out / result.key / CHECKPOINT_NAME)
        assert torch.equal(_params(ours), _params(read_checkpoint(result.path / CHECKPOINT_NAME)))


def test_recompute_also_discards_a_killed_ensembles_checkpoint(tmp_path: Path) -> None:
    """Wrong behaviour caught: ``--recompute`` on a grid whose ensemble was killed stopped at "pass --resume"."""
    path = _toml(tmp_path, _ensemble_document(steps=40))
    group = ResultStore(tmp_path / "runs").entry_dir(ensemble_checkpoint_identity(expand_grid(load_config(path))))
    group.mkdir(parents=True)
    (group / CHECKPOINT_NAME).write_bytes(b"left by a killed ensemble")
    with pytest.raises(ValueError, match="pass --resume"):
        run_experiment(path, out=tmp_path / "runs", quiet=True)
    results = run_experiment(path, out=tmp_path / "runs", quiet=True, recompute=True)
    assert [r.status for r in results] == ["completed"] * 4 and not group.exists()


_TRAIN_HOLDING_THE_LOCK = """
import json, sys, time
import torch
import empirical.train as train
from empirical.config import config_from_dict

torch.set_num_threads(1)
document, out, log = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
original = train._train_run_locked


def announced(*args, **kwargs):
    with open(log, "a") as handle:
        handle.write("child trains\\n")
    time.sleep(2.0)  # hold the lock while the other process arrives
    return original(*args, **kwargs)


train._train_run_locked = announced
train.train_run(config_from_dict(document), out=out, quiet=True)
"""


def test_two_processes_never_train_one_run_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong behaviour caught: two builds on one store trained the same entry twice (no lock).

    A child process takes the entry's lock and trains; this process asks for the same run meanwhile and must wait
    for the child's record instead of training it again.
    """
    import empirical.train

    log = tmp_path / "log"
    document = _document(steps=100, train={"eval_every": 50})
    command = [sys.executable, "-c", _TRAIN_HOLDING_THE_LOCK, json.dumps(document), str(tmp_path / "runs"), str(log)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not log.exists():
        assert child.poll() is None, child.stderr.read().decode()[-2000:] if child.stderr else "exited early"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    original = empirical.train._train_run_locked

    def logged(*args, **kwargs):
        log.write_text(log.read_text() + "parent trains\n")
        return original(*args, **kwargs)

    monkeypatch.setattr(empirical.train, "_train_run_locked", logged)
    result = train_run(config_from_dict(document), out=tmp_path / "runs", quiet=True)
    assert child.wait(120) == 0
    assert log.read_text() == "child trains\n" and result.cached and result.status == "completed"
