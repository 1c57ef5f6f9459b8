"""Cluster sweeps (:mod:`empirical.sweep`): planning, Slurm parameters, and a real local submitit sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from empirical import ResultStore, expand_grid, load_config, plan_sweep, slurm_parameters, submit_sweep, train_run
from empirical.sweep import SLURM_MAX_REQUEUES, SweepJob, local_parameters, make_executor

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
        partition="gpu", gpus_per_job=1, cpus_per_job=8, time_min=90, mem_gb=32, array_parallelism=4
    )
    assert parameters == {
        "job_name": "mvm-sweep",
        "nodes": 1,
        "ntasks_per_node": 1,
        "partition": "gpu",
        "gpus_per_node": 1,
        "cpus_per_task": 8,
        "time": 90,
        "mem": "32GB",
        "array_parallelism": 4,
    }
    text = _make_sbatch_string(command="python -m x", folder=tmp_path, map_count=10, **parameters)
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --time=90",
        "#SBATCH --mem=32GB",
        "#SBATCH --array=0-9%4",
        "#SBATCH --ntasks-per-node=1",
    ):
        assert line in text
    assert slurm_parameters(time_min=5) == {"job_name": "mvm-sweep", "nodes": 1, "ntasks_per_node": 1, "time": 5}
    with pytest.raises(ValueError, match="--time"):
        slurm_parameters(time_min=0)
    with pytest.raises(ValueError, match="--partition"):
        slurm_parameters(partition="a b", time_min=5)
    assert local_parameters() == {"timeout_min": 7 * 24 * 60, "gpus_per_node": 0}
    assert local_parameters(gpus_per_job=1, time_min=5) == {"timeout_min": 5, "gpus_per_node": 1}
    assert local_parameters(devices=["cpu", "cuda"])["gpus_per_node"] == 1  # a CUDA run must see a GPU
    assert local_parameters(devices=["cuda:2", "cuda:0"])["gpus_per_node"] == 3
    assert local_parameters(gpus_per_job=0, devices=["cuda"])["gpus_per_node"] == 0


def test_slurm_time_is_required_and_timeouts_requeue_many_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's default limit is 5 minutes with 3 requeues: a run past ~20 minutes would fail."""
    with pytest.raises(ValueError, match="--time MINUTES is required"):
        slurm_parameters(gpus_per_job=1)
    made = {}

    class FakeSlurm:
        def __init__(self, folder, max_num_timeout=3):
            made["max_num_timeout"] = max_num_timeout

        def update_parameters(self, **parameters):
            made.update(parameters)

    monkeypatch.setattr(submitit, "SlurmExecutor", FakeSlurm)
    make_executor("slurm", "jobs", slurm_parameters(time_min=60))
    assert made["max_num_timeout"] == SLURM_MAX_REQUEUES >= 100 and made["time"] == 60


@pytest.mark.parametrize("mem_gb", [1.5, 0.25, 2, 3.0, 7.3])
def test_slurm_mem_follows_submitits_conversion(tmp_path: Path, mem_gb: float) -> None:
    """``--mem 1.5`` is ``1536MB`` (sbatch rejects ``1.5GB``): submitit's own rule, integers only."""
    from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

    mem = slurm_parameters(time_min=5, mem_gb=mem_gb)["mem"]
    assert mem == _convert_mem(mem_gb) and mem[:-2].isdigit()
    assert f"#SBATCH --mem={mem}" in _make_sbatch_string(command="x", folder=tmp_path, mem=mem)


def test_several_gpus_per_job_are_one_task_per_gpu(tmp_path: Path) -> None:
    from submitit.slurm.slurm import _make_sbatch_string

    parameters = slurm_parameters(gpus_per_job=4, cpus_per_job=32, time_min=60)
    assert parameters["ntasks_per_node"] == 4 and parameters["gpus_per_node"] == 4
    assert parameters["cpus_per_task"] == 8  # the job's CPUs shared among its tasks
    text = _make_sbatch_string(command="x", folder=tmp_path, **parameters)
    assert "#SBATCH --ntasks-per-node=4" in text and "#SBATCH --gpus-per-node=4" in text
    with pytest.raises(ValueError, match="--cpus-per-job"):
        slurm_parameters(gpus_per_job=4, cpus_per_job=2, time_min=60)
    assert local_parameters(gpus_per_job=2) == {"timeout_min": 7 * 24 * 60, "gpus_per_node": 2, "tasks_per_node": 2}


def test_a_multi_task_job_trains_data_parallel(tmp_path: Path, job_env: None) -> None:
    """A 2-task local submitit job (as a 2-GPU Slurm job, on the CPU with gloo) exports the torch.distributed
    variables from the job's environment and trains through the torchrun path: world size 2, and the record
    equals the single-process one's (float64)."""
    member = _single_member(tmp_path)
    executor = submitit.LocalExecutor(tmp_path / "jobs")
    executor.update_parameters(timeout_min=10, tasks_per_node=2, gpus_per_node=0)
    submission = submit_sweep([member], executor, out=tmp_path / "runs", vectorize=False, quiet=True)
    [(job, call)] = submission.jobs
    assert call.tasks == 2
    results = job.results()[0]  # rank 0's (wait_sweep reads the same)
    assert [r.status for r in results] == ["completed"]
    record = ResultStore(tmp_path / "runs").load(member.identity())
    assert record is not None and record.info["world_size"] == 2 and record.info["backend"] == "gloo"
    single = train_run(member, out=tmp_path / "single", quiet=True)
    assert record.metrics["batch_order_sha256"] == single.metrics["batch_order_sha256"]
    assert record.curves["train_loss"] == pytest.approx(single.curves["train_loss"], rel=1e-10)


def _single_member(folder: Path):
    text = write_grid(folder).read_text().replace('"optimizer.momentum" = [0.0, 0.9]', '"optimizer.momentum" = [0.9]')
    path = folder / "one.toml"
    path.write_text(text.replace("checkpoint_every = 10", 'checkpoint_every = 10\ndtype = "float64"'))
    [member] = expand_grid(load_config(path))
    return member


def test_a_resubmitted_sweep_resumes_a_killed_run(
    tmp_path: Path, job_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its first checkpoint (step 10 of 20) and submitted again resumes there (not from 0)
    and ends bitwise where the uninterrupted run does."""
    import torch

    from empirical.checkpoints import read_checkpoint
    from empirical.train import CHECKPOINT_NAME, _Run

    member = _single_member(tmp_path)
    runs = tmp_path / "runs"
    save = _Run.save_checkpoint

    def save_then_die(self, path):
        save(self, path)
        raise KeyboardInterrupt  # killed right after the first checkpoint

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(_Run, "save_checkpoint", save_then_die)
        train_run(member, out=runs, quiet=True)
    folder = ResultStore(runs).entry_dir(member.identity())
    assert read_checkpoint(folder / CHECKPOINT_NAME)["progress"]["step"] == 10
    assert ResultStore(runs).load(member.identity()) is None

    executor = submitit.LocalExecutor(tmp_path / "jobs")
    executor.update_parameters(**local_parameters(time_min=10))
    submission = submit_sweep([member], executor, out=runs, vectorize=False, quiet=True)
    assert submission.plan.submitted == 1
    [(job, _)] = submission.jobs
    assert [r.status for r in job.result()] == ["completed"]
    record = ResultStore(runs).load(member.identity())
    assert record is not None and record.info["resumed_from_step"] == 10
    reference = train_run(member, out=tmp_path / "reference", quiet=True)
    final = read_checkpoint(folder / CHECKPOINT_NAME)["model"]
    expected = read_checkpoint(ResultStore(tmp_path / "reference").entry_dir(member.identity()) / CHECKPOINT_NAME)
    for name, value in expected["model"].items():
        assert torch.equal(final[name], value), name
    assert record.metrics["final_train_loss"] == reference.metrics["final_train_loss"]


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


def test_a_slurm_task_exports_the_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task 1 of a 2-task Slurm job gets the variables :func:`empirical.distributed.session` reads (as torchrun
    sets them); the job's GPUs stay visible to every task."""
    from empirical import distributed

    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "42",
        "SLURM_NTASKS": "2",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NODELIST": "gpu7",
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "1",
        "CUDA_VISIBLE_DEVICES": "0,1",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        # setenv first: delenv of an absent name records nothing, and the exported value would outlive the test
        # (every later `mvm train` in this session would then wait for a process group that never forms)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    distributed.export_slurm_environment()
    assert {name: os.environ[name] for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")} == {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu7",
    }
    assert int(os.environ["MASTER_PORT"]) > 0 and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert distributed.launched()
