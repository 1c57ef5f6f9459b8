"""# Validate on real networks: configs, `mvm train`, GPUs and clusters

The real-network side (`empirical`) trains from TOML configs (`configs/` holds one per experiment of the paper
plus quick CPU ones).  A config names the data, the model, the optimizer in the paper's normalized form
(`eta` is the effective learning rate, PyTorch's `lr` would be `eta * (1 - momentum)`), the training length and
optionally a `[grid]` of settings trained together.  Runs are stored under a key of their config, so a rerun
reuses them and `--resume` continues an interrupted one.

This page trains a tiny MLP on scikit-learn's bundled digits for a few epochs on the CPU (seconds, nothing
downloaded), with the command a user types.
"""

# %%
# A config: the quick `configs/digits_mlp_sgdm.toml`, shortened to 4 epochs for this page.
import os
import subprocess
import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parents[2]
work = Path(os.environ.get("MVM_TUTORIAL_OUT", tempfile.mkdtemp(prefix="mvm_tutorial_")))
work.mkdir(parents=True, exist_ok=True)
config = (root / "configs" / "digits_mlp_sgdm.toml").read_text()
config = config.replace("length = 20", "length = 4").replace("milestones = [15]", "milestones = [3]")
config = config.replace("eval_every = 5", "eval_every = 2")
(work / "digits_tiny.toml").write_text(config)
print(config)

# %%
# Train it: `mvm train CONFIG --out DIR` (here through `python -m mvm`, the same entry point).
env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
command = [sys.executable, "-m", "mvm", "train", str(work / "digits_tiny.toml"), "--out", str(work / "runs"), "--quiet"]
done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=True)
print("$ mvm train digits_tiny.toml --out runs --quiet")
print(done.stdout)

# %%
# What was stored: one folder per run key, with the record (config, metrics, environment) and the checkpoint.
for path in sorted((work / "runs").rglob("*")):
    if path.is_file():
        print(path.relative_to(work), f"{path.stat().st_size} bytes")

# %%
# ## Sweeps: `mvm sweep`
#
# `mvm sweep CONFIG --executor local|slurm` runs every member of a config's grid as one job (a local subprocess, or
# a Slurm job of a job array through submitit, the `cluster` extra) into a shared run store; each job trains with
# `resume=True`, so its record is the one `mvm train` writes.  Members already finished are not submitted: here
# the store is the one `mvm train` just filled, so the sweep finds the run and submits nothing (a fresh store would
# run one local job and print its result).
import importlib.util

if importlib.util.find_spec("submitit") is None:
    print("submitit is not installed: pip install 'marginal-momentum[cluster]'")
else:
    command = [sys.executable, "-m", "mvm", "sweep", str(work / "digits_tiny.toml"), "--executor", "local"]
    command += ["--out", str(work / "runs"), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=True)
    print("$ mvm sweep digits_tiny.toml --executor local --out runs --quiet")
    print(done.stdout.replace(str(work) + os.sep, ""))

# %%
# ## On a GPU or a cluster
#
# The same commands scale up; they are shown here, not executed by the docs build (the flags are those of
# `mvm train --help` and `mvm sweep --help`, see the [command line reference](../reference/cli.md)).  On a CUDA
# machine (install the CUDA build of torch into `.venv` first, see [GPU install](../guide/install.md#gpu-install)):
#
# ```bash
# mvm train configs/fashion_mnist_cnn_sgdm.toml --device cuda
# mvm train configs/cifar10_resnet32_svag.toml --device cuda:1 --resume   # continue an interrupted run
# ```
#
# Data-parallel training over N processes on one machine (`--nproc` relaunches through `torch.distributed.run`;
# the same command runs as is under your own `torchrun`; `train.batch_size` must be a multiple of N):
#
# ```bash
# mvm train configs/imagenet_resnet50_b1024.toml --device cuda --nproc 8
# torchrun --nproc_per_node 8 -m mvm train configs/imagenet_resnet50_b1024.toml --device cuda
# ```
#
# A config's grid as a Slurm job array into the shared run store (`--no-wait` prints the job ids and returns; a job
# stopped at its `--time` is requeued and resumes), and the paper's figures trained the same way:
#
# ```bash
# mvm sweep configs/mnist1d_mlp_grid.toml --executor slurm --partition gpu --gpus-per-job 1 \
#     --cpus-per-job 8 --time 240 --mem 32 --array-parallelism 16 --out runs --device cuda
# mvm figures --only fig2_svag --device cuda --data cifar10=/data/cifar-10-batches-py \
#     --executor slurm --partition gpu --gpus-per-job 1 --time 720
# ```
#
# The real-network claims E1-E4 (`mvm verify --empirical`) and the paper's figures at full scale read the same
# stored runs:
#
# ```bash
# mvm verify --empirical --quick --json results/verification_empirical_quick.json
# mvm figures --only fig1_batch_sweep --device cuda --data imagenet=/data/imagenet
# ```
#
# More: [Paper scale](../guide/paper_scale.md) (DDP, mixed precision, Slurm) and
# [Data, configs and `mvm train`](../guide/training.md).
