"""Data-parallel training (empirical.distributed): 2 gloo processes on the CPU equal the single-process run.

Every launch is a real ``torch.distributed.run`` over 2 processes (loopback only, ``--standalone``); one launch
trains all the equality configs (a torch import per process costs seconds), the SIGKILL test launches through
``mvm train --nproc 2`` (the launcher of the CLI).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from empirical import distributed
from empirical.checkpoints import read_checkpoint
from empirical.config import RunConfig, config_from_dict, load_config
from empirical.records import ResultStore
from empirical.train import CHECKPOINT_NAME, train_run
from mvm.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
#: The worker torchrun starts in each process for the equality configs: the library's entry, as under torchrun.
WORKER = """
import sys
from empirical import distributed
from empirical.experiment import run_experiment
with distributed.session("cpu"):
    for path in sys.argv[2:]:
        run_experiment(path, out=sys.argv[1], quiet=True)
"""
KILL_STEPS = 600


def _document(name: str, steps: int = 30, **sections: dict) -> dict:
    document = {
        "name": name,
        "seed": 0,
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9},
        "train": {
            "batch_size": 32,
            "unit": "step",
            "length": steps,
            "eval_every": 10,
            "log_every": 5,
            "dtype": "float64",
            "checkpoint_every": 10,
        },
    }
    for section, values in sections.items():
        document[section] = {**document.get(section, {}), **values}
    return document


CNN = {"name": "small_cnn", "width": 4, "hidden": 16}
DOCUMENTS = {
    "mlp": _document("mlp"),
    "cnn": _document("cnn", model=CNN),
    "cnn_sync_bn": _document("cnn_sync_bn", model={**CNN, "batch_norm": True}, train={"sync_batchnorm": True}),
    "cnn_local_bn": _document("cnn_local_bn", model={**CNN, "batch_norm": True}),
    "svag": _document("svag", svag={"ell": 2}),
    "kill": _document("kill", steps=KILL_STEPS, train={"eval_every": 500, "checkpoint_every": 50, "log_every": 50}),
    # held images with augmentation="crop_flip" (a tiny CIFAR-10): the crops and flips must be drawn for the
    # global batch, then sharded (drawn per rank, the run differs from the single-process one)
    "cifar_aug": _document(
        "cifar_aug", steps=10, data={"name": "cifar10", "root": "CIFAR"}, model=CNN, train={"batch_size": 8}
    ),
}


def _cifar_fixture(root: Path) -> None:
    """CIFAR-10's python pickle batches, 4 random images each (20 training images, 4 test images)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 4)]
        with open(root / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, handle)


def _toml(folder: Path, document: dict) -> Path:
    lines = [f'name = "{document["name"]}"', f"seed = {document['seed']}"]
    for section in ("data", "model", "optimizer", "train", "svag"):
        if section in document:
            lines.append(f"[{section}]")
            lines += [f"{json.dumps(key)} = {json.dumps(value)}" for key, value in document[section].items()]
    path = folder / f"{document['name']}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _flat(state: dict) -> torch.Tensor:
    return torch.cat([value.flatten().double() for value in state.values()])


def _final_model(out: Path, config: RunConfig) -> dict:
    folder = ResultStore(out).entry_dir(config.identity())
    return read_checkpoint(folder / CHECKPOINT_NAME)["model"]


def _relative(a: dict, b: dict) -> float:
    x, y = _flat(a), _flat(b)
    return float((x - y).abs().max() / x.abs().max())


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """One torchrun launch over 2 gloo processes that trains every config of :data:`DOCUMENTS`."""
    folder = tmp_path_factory.mktemp("ddp")
    _cifar_fixture(folder / "cifar")
    documents = {name: json.loads(json.dumps(document)) for name, document in DOCUMENTS.items()}
    documents["cifar_aug"]["data"]["root"] = str(folder / "cifar")
    paths = {name: _toml(folder, document) for name, document in documents.items()}
    script = folder / "worker.py"
    script.write_text(WORKER)
    out = folder / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    process = subprocess.run(
        [*command, str(out), *map(str, paths.values())], cwd=ROOT, env=ENV, capture_output=True, timeout=600
    )
    assert process.returncode == 0, process.stderr.decode()[-4000:]
    return out, paths


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_sync_bn", "svag", "cifar_aug"])
def test_two_processes_equal_the_single_process_run(two_process_runs, tmp_path: Path, name: str) -> None:
    """Final parameters (and BatchNorm buffers) of 30 float64 steps agree to 1e-10 relative; so do the curves."""
    out, paths = two_process_runs
    config = load_config(paths[name])
    single = train_run(config, out=tmp_path, quiet=True)
    difference = _relative(_final_model(tmp_path, config), _final_model(out, config))
    assert difference <= 1e-10, difference
    record = ResultStore(out).load(config.identity())
    assert record is not None and record.status == "completed"
    assert record.info["world_size"] == 2 and record.info["backend"] == "gloo"
    assert single.metrics["batch_order_sha256"] == record.metrics["batch_order_sha256"]
    for column in ("train_loss_running", "train_loss", "test_acc"):
        assert record.curves[column] == pytest.approx(single.curves[column], rel=1e-10, nan_ok=True)


def test_per_device_batchnorm_differs_from_the_single_process_run(two_process_runs, tmp_path: Path) -> None:
    """Without sync_batchnorm each rank normalises with its own shard's statistics: not the single-process run."""
    out, paths = two_process_runs
    config = load_config(paths["cnn_local_bn"])
    train_run(config, out=tmp_path, quiet=True)
    assert _relative(_final_model(tmp_path, config), _final_model(out, config)) > 1e-6


def test_sync_batchnorm_keeps_the_keys_of_existing_configs() -> None:
    base = config_from_dict(DOCUMENTS["cnn_local_bn"])
    assert "sync_batchnorm" not in base.identity()["train"]
    synced = config_from_dict(DOCUMENTS["cnn_sync_bn"])
    assert synced.identity()["train"]["sync_batchnorm"] is True
    assert RunConfig.from_identity(synced.identity()) == RunConfig.from_identity(synced.identity())


def test_a_killed_two_process_run_resumes_bitwise_and_on_any_world_size(two_process_runs, tmp_path: Path) -> None:
    """``mvm train --nproc 2`` killed with SIGKILL (launcher, torchrun and workers) after its first checkpoint,
    resumed over 2 processes, ends bitwise where the uninterrupted 2-process run does; the checkpoint also
    resumes in a single process (world size 2 -> 1) to the single-process result within 1e-10."""
    reference_out, paths = two_process_runs
    path = paths["kill"]
    config = load_config(path)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "mvm", "train", str(path), "--out", str(out), "--quiet", "--nproc", "2"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    folder = ResultStore(out).entry_dir(config.identity())
    deadline = time.monotonic() + 180
    while not (folder / CHECKPOINT_NAME).exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited early"
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.02)
    for pid in [process.pid, *distributed.descendant_pids(process.pid)]:
        os.kill(pid, signal.SIGKILL)
    process.wait()
    time.sleep(0.2)  # the orphaned workers' SIGKILL is delivered
    killed = read_checkpoint(folder / CHECKPOINT_NAME)
    killed_at = killed["progress"]["step"]
    assert 0 < killed_at < KILL_STEPS and not (folder / "record.json").exists()
    # 2 -> 1: the same checkpoint continues in one process (a copy of the folder)
    single_out = tmp_path / "one"
    single_folder = ResultStore(single_out).entry_dir(config.identity())
    single_folder.mkdir(parents=True)
    (single_folder / CHECKPOINT_NAME).write_bytes((folder / CHECKPOINT_NAME).read_bytes())
    one = train_run(config, out=single_out, quiet=True, resume=True)
    assert one.status == "completed" and ResultStore(single_out).load(one.key).info["resumed_from_step"] == killed_at
    assert _relative(_final_model(single_out, config), _final_model(reference_out, config)) <= 1e-10
    # 2 -> 2: bitwise
    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, env=ENV, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-4000:]
    record = ResultStore(out).load(config.identity())
    assert record is not None and record.info["resumed_from_step"] >= killed_at and record.info["world_size"] == 2
    assert torch.equal(_flat(_final_model(out, config)), _flat(_final_model(reference_out, config)))
    assert record.metrics == ResultStore(reference_out).load(config.identity()).metrics


def test_a_batch_size_that_does_not_split_is_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    path = _toml(tmp_path, _document("odd", train={"batch_size": 33}))
    assert main(["train", str(path), "--out", str(tmp_path / "out"), "--quiet", "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.batch_size=33" in err and "world size 2" in err, err


def test_a_streamed_shard_decodes_the_images_of_the_global_batch(tmp_path: Path) -> None:
    """An image-folder rank decodes only its shard, with the augmentation drawn for the whole global batch."""
    import numpy as np
    from PIL import Image

    from empirical.data import load_image_folder

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (int(rng.integers(20, 40)), int(rng.integers(20, 40)), 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.png")
    split = load_image_folder(tmp_path, image_size=16, resize_size=18, num_workers=1).train
    indices = torch.tensor([3, 0, 2, 1])
    whole, targets = split.batch(indices, torch.Generator().manual_seed(5))
    for part in (slice(0, 2), slice(2, 4)):
        shard, shard_targets = split.batch(indices, torch.Generator().manual_seed(5), part)
        assert torch.equal(shard, whole[part]) and torch.equal(shard_targets, targets[part])


def test_the_augmented_config_is_augmented(two_process_runs) -> None:
    """The equality config ``cifar_aug`` draws crops and flips (else it could not catch per-rank draws)."""
    from empirical.data import load_dataset

    _, paths = two_process_runs
    config = load_config(paths["cifar_aug"])
    assert load_dataset("cifar10", root=config.data.options["root"]).augmentation == "crop_flip"


def test_an_error_of_rank_0_is_its_one_line_and_exit_code(tmp_path: Path, monkeypatch, capsys) -> None:
    """``mvm train --nproc 2`` of a config whose data is missing: exit 2 as in one process, and stderr is rank 0's
    one line, not followed by torchrun's ``ChildFailedError`` report."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = _toml(tmp_path, _document("missing", data={"name": "fashion_mnist", "root": str(tmp_path / "absent")}))
    assert main(["train", str(path), "--out", str(tmp_path / "one"), "--quiet"]) == 2
    single = capsys.readouterr().err
    assert main(["train", str(path), "--out", str(tmp_path / "two"), "--quiet", "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert err == single and err.count("\n") == 1 and "absent" in err, err


def test_a_finished_config_returns_its_record_on_every_rank(two_process_runs) -> None:
    """A second ``--nproc 2`` launch of a finished config returns the cached record on all ranks (no hang)."""
    out, paths = two_process_runs
    command = [sys.executable, "-m", "mvm", "train", str(paths["mlp"]), "--out", str(out), "--quiet", "--nproc", "2"]
    process = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, timeout=120)
    assert process.returncode == 0, process.stderr.decode()[-4000:]
    assert process.stdout.decode().count("(cached)") == 1, process.stdout.decode()  # rank 0 reports it


def test_the_process_group_waits_dist_timeout_minutes(monkeypatch) -> None:
    """Rank 0 alone may work for long (the store lock, a data scan, evaluation): the collectives' timeout is
    ``--dist-timeout`` (default two hours), not torch's 10 minutes."""
    import datetime

    import torch.distributed as dist

    from empirical import distributed

    calls: list[dict] = []
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: None)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    for given, minutes in ((None, distributed.DEFAULT_TIMEOUT_MIN), (7, 7), (0.5, 0.5)):
        with distributed.session("cpu", timeout_min=given):
            pass
        assert calls.pop() == {"backend": "gloo", "timeout": datetime.timedelta(minutes=minutes)}
    assert distributed.DEFAULT_TIMEOUT_MIN >= 60
    with pytest.raises(ValueError, match="--dist-timeout"), distributed.session("cpu", timeout_min=0):
        pass


def test_dist_timeout_reaches_the_workers(tmp_path: Path, monkeypatch) -> None:
    import mvm.cli

    commands: list[list[str]] = []
    monkeypatch.setattr(mvm.cli, "_run_torchrun", lambda command, env, exit_file: commands.append(command) or 0)
    path = _toml(tmp_path, _document("t"))
    assert main(["train", str(path), "--out", str(tmp_path / "o"), "--nproc", "2", "--dist-timeout", "30"]) == 0
    assert commands[0][-2:] == ["--dist-timeout", "30.0"]


def test_a_fixed_gpu_under_several_processes_is_rejected(tmp_path: Path, monkeypatch, capsys) -> None:
    """``cuda:0`` with world size 2 would put both ranks on one GPU: one line, exit 2, before any launch;
    under a launcher each rank raises it and rank 0 alone reports it."""
    from empirical import distributed

    path = _toml(tmp_path, _document("gpu"))
    argv = ["train", str(path), "--out", str(tmp_path / "o"), "--nproc", "2", "--device", "cuda:0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'cuda:0'" in err and "use device 'cuda'" in err, err
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, quiet in (("0", False), ("1", True)):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(ValueError, match="cuda:1") as excinfo, distributed.session("cuda:1"):
            pass
        assert distributed.from_rank0(excinfo.value) is quiet
    distributed.check_device("cuda", 2)
    distributed.check_device("cuda:3", 1)
