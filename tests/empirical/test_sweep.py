"""Cluster sweeps (:mod:`empirical.sweep`): planning, Slurm parameters, and a real local submitit sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from empirical import expand_grid, load_config, plan_sweep, slurm_parameters, train_run
from empirical.sweep import SweepJob, local_parameters

submitit = pytest.importorskip("submitit")

REPO = Path(__file__).resolve().parents[2]

TINY_GRID = """
name = "tiny"
seed = 0
device = "cpu"

[data]
name = "digits"

[model]
name = "mlp"
hidden = [16]

[optimizer]
name = "normalized_sgdm"
eta = 0.1
momentum = 0.9

[train]
batch_size = 32
unit = "step"
length = 20
eval_every = 10
checkpoint_every = 10

[grid]
"optimizer.momentum" = [0.0, 0.9]
vectorize = {vectorize}
"""


def write_grid(folder: Path, vectorize: bool = False) -> Path:
    path = folder / "grid.toml"
    path.write_text(TINY_GRID.format(vectorize=str(vectorize).lower()))
    return path


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local jobs are fresh interpreters: they must import this checkout, with one thread like the tests."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_plan_groups_vectorisable_members_and_skips_finished(tmp_path: Path) -> None:
    members = expand_grid(load_config(write_grid(tmp_path, vectorize=True)))
    plan = plan_sweep(members, tmp_path / "runs", vectorize=True)
    assert plan.finished == () and [len(g) for g in plan.groups] == [2]  # one ensemble, as `mvm train` trains it
    plan = plan_sweep(members, tmp_path / "runs", vectorize=False)
    assert [len(g) for g in plan.groups] == [1, 1]
    train_run(members[0], out=tmp_path / "runs", quiet=True)
    plan = plan_sweep([*members, members[0]], tmp_path / "runs", vectorize=False)  # a duplicate is planned once
    assert plan.finished == (members[0],) and plan.groups == ((members[1],),) and plan.submitted == 1


def test_slurm_parameters_map_to_sbatch_lines(tmp_path: Path) -> None:
    from submitit.slurm.slurm import _make_sbatch_string

    parameters = slurm_parameters(
        partition="gpu", gpus_per_job=2, cpus_per_job=8, time_min=90, mem_gb=32, array_parallelism=4
    )
    assert parameters == {
        "job_name": "mvm-sweep",
        "nodes": 1,
        "ntasks_per_node": 1,
        "partition": "gpu",
        "gpus_per_node": 2,
        "cpus_per_task": 8,
        "time": 90,
        "mem": "32GB",
        "array_parallelism": 4,
    }
    text = _make_sbatch_string(command="python -m x", folder=tmp_path, map_count=10, **parameters)
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --time=90",
        "#SBATCH --mem=32GB",
        "#SBATCH --array=0-9%4",
        "#SBATCH --ntasks-per-node=1",
    ):
        assert line in text
    assert slurm_parameters() == {"job_name": "mvm-sweep", "nodes": 1, "ntasks_per_node": 1}
    with pytest.raises(ValueError, match="--time"):
        slurm_parameters(time_min=0)
    with pytest.raises(ValueError, match="--partition"):
        slurm_parameters(partition="a b")
    assert local_parameters() == {"timeout_min": 7 * 24 * 60, "gpus_per_node": 0}
    assert local_parameters(gpus_per_job=1, time_min=5) == {"timeout_min": 5, "gpus_per_node": 1}
    assert local_parameters(devices=["cpu", "cuda"])["gpus_per_node"] == 1  # a CUDA run must see a GPU
    assert local_parameters(devices=["cuda:2", "cuda:0"])["gpus_per_node"] == 3
    assert local_parameters(gpus_per_job=0, devices=["cuda"])["gpus_per_node"] == 0


def test_sweep_job_requeues_itself() -> None:
    job = SweepJob((), "runs")
    delayed = job.checkpoint()
    assert delayed.function is job


def test_local_sweep_end_to_end_matches_mvm_train(
    tmp_path: Path, job_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real submitit subprocesses: a finished member is not submitted, the others land in the store, a second sweep
    submits nothing, and the records equal ``mvm train``'s of the same config."""
    from mvm.cli import main

    config = write_grid(tmp_path)
    runs, reference = tmp_path / "runs", tmp_path / "reference"
    first = expand_grid(load_config(config))[0]
    train_run(first, out=runs, quiet=True)  # finished before the sweep: never submitted

    assert main(["sweep", str(config), "--executor", "local", "--out", str(runs), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 finished, 1 submitted in 1 job(s) (local)" in out
    assert "1 of 1 job(s) finished" in out and "tiny[optimizer.momentum=0.9]: completed" in out

    assert main(["sweep", str(config), "--executor", "local", "--out", str(runs), "--no-wait"]) == 0
    assert "2 finished, 0 submitted in 0 job(s)" in capsys.readouterr().out

    assert main(["train", str(config), "--out", str(reference), "--quiet"]) == 0
    from empirical import ResultStore

    swept, trained = ResultStore(runs), ResultStore(reference)
    for member in expand_grid(load_config(config)):
        a, b = swept.load(member.identity()), trained.load(member.identity())
        assert a is not None and b is not None and a.status == b.status == "completed"
        assert a.metrics == b.metrics and a.curves["train_loss"] == b.curves["train_loss"]


def test_failing_job_is_exit_1_with_its_log(tmp_path: Path, job_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    from mvm.cli import main

    config = write_grid(tmp_path)
    text = config.read_text().replace('name = "digits"', f'name = "fashion_mnist"\nroot = "{tmp_path / "absent"}"')
    config.write_text(text.replace('"optimizer.momentum" = [0.0, 0.9]', '"optimizer.momentum" = [0.0]'))
    assert main(["sweep", str(config), "--executor", "local", "--out", str(tmp_path / "runs")]) == 1
    captured = capsys.readouterr()
    assert "0 of 1 job(s) finished, 1 failed" in captured.out
    assert "FAILED" in captured.err and "_0_log.err" in captured.err
    assert "DataNotFoundError" in captured.err or "absent" in captured.err  # the job's own error, not submitit's
