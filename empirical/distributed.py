r"""Data-parallel training with :mod:`torch.distributed`: one global batch, sharded over ranks, one update.

``mvm train CONFIG --nproc N`` re-launches itself through ``torch.distributed.run`` (torchrun; no launcher of
our own), and ``torchrun --nproc_per_node N -m mvm train CONFIG`` works the same way: when the launcher has set
``RANK`` and ``WORLD_SIZE``, :func:`session` initialises the process group (``nccl`` on CUDA, ``gloo`` on the
CPU, ``--dist-backend`` overrides) and a run on ``cuda`` uses ``cuda:LOCAL_RANK``.  A fixed ``cuda:N`` is rejected
under a world size above 1 (every rank would share GPU ``N``): data-parallel runs name ``cuda``.  A Slurm job of
``mvm sweep --gpus-per-job N`` (``N > 1``, one task per GPU) enters the same :func:`session` after
:func:`export_slurm_environment` has set the same variables from Slurm's.

**Timeout.**  Collectives wait at most ``--dist-timeout`` minutes (default :data:`DEFAULT_TIMEOUT_MIN`, two
hours; torch's own default is 10 minutes for NCCL): rank 0 alone does long pieces of work (waiting for the store
entry's lock, scanning or caching a dataset, evaluating) while the other ranks wait in a broadcast.

**Sharding.**  At step :math:`k` every rank draws the *same* global mini-batch :math:`\omega_k` of size
:math:`B` from the seeded :class:`empirical.data.EpochSampler` (and the same augmentation, drawn for the whole
global batch with the single-process generator), and rank :math:`r` of :math:`W` keeps the contiguous slice
:math:`\omega_k^{(r)}` of :math:`B/W` examples (``batch_size % world_size == 0`` is required; a streamed image
folder decodes only the rank's shard, with the draws made for the global batch).  After the backward pass the
gradients are summed over ranks with one flattened ``all_reduce`` and divided by :math:`W`:

.. math:: \frac1W\sum_{r=0}^{W-1}\nabla\Big(\frac{W}{B}\sum_{i\in\omega_k^{(r)}}\ell_i(x_k)\Big)
          = \frac1B\sum_{i\in\omega_k}\nabla\ell_i(x_k) = \nabla\mathcal L_{\omega_k}(x_k).

The identity is exact in real arithmetic because the shards are disjoint, cover :math:`\omega_k` and all have
:math:`B/W` examples (so the mean of the shard means is the global mean); in floating point only the order
of the additions changes (float64: agreement to about :math:`10^{-15}` relative per step).  Every rank then
applies the same averaged gradient to the same parameters, so the parameters stay identical on all ranks
without a broadcast and equal those of the single-process run.  SVAG (Definition 5.1) is linear in its two
losses, :math:`r_1\mathcal L_{\omega_{k,1}}+r_2\mathcal L_{\omega_{k,2}}`, so both streams are sharded the same
way and the same averaging gives the single-process SVAG gradient.

**Why an explicit all-reduce and not** :class:`torch.nn.parallel.DistributedDataParallel`: SVAG runs two
forward passes before one backward, which DDP's reducer does not allow without ``no_sync`` tricks, and DDP
buckets and overlaps communication in an order we do not need; one flattened ``all_reduce`` per step after
``backward`` is exact, works with every optimizer of :mod:`empirical.optim` and leaves the model unwrapped, so
checkpoints hold the same ``state_dict`` on any world size.

**BatchNorm.**  By default each rank normalises with the statistics of its own shard (the paper's recipe for
multi-GPU ImageNet, "ghost batch" of :math:`B/W`): such a run is *not* equal to the single-process one by design,
and the running statistics evaluated and checkpointed are rank 0's.  ``train.sync_batchnorm = true`` converts the
BatchNorm layers to :class:`torch.nn.SyncBatchNorm` (statistics of the global batch, so equal to the
single-process run); torch implements its synchronisation on GPUs only, so on the CPU (gloo) the layers get a
subclass that reduces the per-channel sums with the differentiable :func:`torch.distributed.nn.all_reduce`.

**Control.**  Rank 0 alone holds the store entry's lock, checks for a finished record (the outcome is
broadcast, so every rank returns it), evaluates, writes checkpoints (atomically) and the record; :func:`on_rank0`
runs such a piece and broadcasts its result, or its exception, so every rank takes the same path.  Mini-batch
losses are averaged over ranks before the divergence check and the running loss.  Checkpoints hold only
world-size-independent state (the global sampler's, the model's, the optimizer's), so a run resumes on any world
size.  Vectorised ensembles are not data-parallel: under a process group the members of a grid run one by one.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "BACKENDS",
    "DEFAULT_TIMEOUT_MIN",
    "EXIT_FILE_ENV",
    "GlooSyncBatchNorm",
    "average_gradients",
    "backend",
    "check_batch_size",
    "check_device",
    "convert_sync_batchnorm",
    "descendant_pids",
    "export_slurm_environment",
    "from_rank0",
    "is_distributed",
    "launch_command",
    "local_device",
    "mean_over_ranks",
    "on_rank0",
    "rank",
    "rank0_context",
    "rank0_first",
    "session",
    "shard",
    "shard_indices",
    "shard_slice",
    "world_size",
]

T = TypeVar("T")
BACKENDS = ("gloo", "nccl")
#: Environment variable naming the file where rank 0 writes its exit code for ``mvm train --nproc`` to return.
EXIT_FILE_ENV = "MVM_DDP_EXIT_FILE"
#: Minutes a collective waits for the other ranks (``--dist-timeout``) before the process group aborts.
DEFAULT_TIMEOUT_MIN = 120.0
#: Attribute set on an exception raised on rank 0 and re-raised on the other ranks (reported once, by rank 0).
_FROM_RANK0 = "_mvm_from_rank0"


def launched() -> bool:
    """Whether a launcher (torchrun) has set this process's ``RANK`` and ``WORLD_SIZE``."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_distributed() -> bool:
    """Whether a process group of more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def backend() -> str | None:
    """The process group's backend, ``None`` without one."""
    return str(dist.get_backend()) if dist.is_available() and dist.is_initialized() else None


def from_rank0(exc: BaseException) -> bool:
    """Whether ``exc`` was raised on rank 0 and re-raised here (rank 0 reports it; the others stay quiet)."""
    return bool(getattr(exc, _FROM_RANK0, False))


def _launched_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def check_device(device: str, size: int | None = None) -> None:
    """``ValueError`` for a fixed ``cuda:N`` under a world size (default: the launcher's) above 1: every rank
    would train on the same GPU; a data-parallel run names ``cuda`` and each rank takes ``cuda:LOCAL_RANK``."""
    size = _launched_world_size() if size is None else size
    if size > 1 and device.startswith("cuda:"):
        raise ValueError(
            f"device {device!r} names one GPU but the run has {size} processes: every rank would train on it; "
            "use device 'cuda' (each rank takes cuda:LOCAL_RANK), or CUDA_VISIBLE_DEVICES to choose the GPUs"
        )


@contextlib.contextmanager
def session(device: str, backend_name: str | None = None, timeout_min: float | None = None) -> Iterator[None]:
    """Initialise the process group when launched by torchrun (else nothing) and destroy it at the end.

    ``backend_name`` defaults to ``nccl`` for a CUDA ``device`` and ``gloo`` otherwise; under CUDA each rank
    takes ``cuda:LOCAL_RANK`` (:func:`local_device`; a fixed ``cuda:N`` raises ``ValueError``).  Collectives
    wait at most ``timeout_min`` minutes (default :data:`DEFAULT_TIMEOUT_MIN`).  The device error is raised on
    every rank and reported by rank 0 alone.
    """
    if not launched() or dist.is_initialized():
        yield
        return
    if timeout_min is None:
        timeout_min = DEFAULT_TIMEOUT_MIN
    try:
        if isinstance(timeout_min, bool) or not isinstance(timeout_min, int | float) or not timeout_min > 0:
            raise ValueError(f"--dist-timeout must be a positive number of minutes, got {timeout_min!r}")
        if backend_name is None:
            backend_name = "nccl" if device.startswith("cuda") else "gloo"
        if backend_name not in BACKENDS:
            raise ValueError(f"--dist-backend must be one of {list(BACKENDS)}, got {backend_name!r}")
        check_device(device)
    except ValueError as exc:  # the same on every rank: rank 0 reports it
        if os.environ.get("RANK", "0") != "0":
            setattr(exc, _FROM_RANK0, True)
        raise
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend_name, timeout=datetime.timedelta(minutes=timeout_min))
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_device(device: str) -> str:
    """``cuda:LOCAL_RANK`` for ``"cuda"`` in a data-parallel run, else ``device`` unchanged; ``ValueError`` for
    ``cuda:N`` in a data-parallel run (:func:`check_device`)."""
    if is_distributed():
        check_device(device, world_size())
        if device == "cuda":
            return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def export_slurm_environment() -> None:
    """Set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from the submitit job's
    environment (Slurm's, or a multi-task :class:`submitit.LocalExecutor`'s), as torchrun would, so that
    :func:`session` starts the process group.  ``CUDA_VISIBLE_DEVICES`` is left alone: every task sees the job's
    GPUs and takes ``cuda:LOCAL_RANK``; where the cluster binds one GPU to each task (the task sees one), the
    task takes that one (``LOCAL_RANK`` is then set to 0, the index of its GPU)."""
    import submitit

    environment = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    if environment.local_world_size > 1 and torch.cuda.is_available() and torch.cuda.device_count() == 1:
        os.environ["LOCAL_RANK"] = "0"


def descendant_pids(pid: int) -> list[int]:
    """The processes below ``pid`` (children, theirs, ...), read from ``/proc`` (empty where there is none).

    Killing a launcher's process group is not enough: torchrun starts each worker in a session of its own, so
    whoever must stop a data-parallel run (a test, ``bench.gpu_check``'s time budget) walks the tree instead.
    """
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], list(children.get(pid, []))
    while queue:
        current = queue.pop()
        found.append(current)
        queue += children.get(current, [])
    return found


def check_batch_size(batch_size: int, size: int | None = None, name: str = "train.batch_size") -> None:
    """``ValueError`` unless ``batch_size`` splits into ``size`` (default: the world size) equal shards."""
    size = world_size() if size is None else size
    if batch_size % size:
        raise ValueError(
            f"{name}={batch_size} is not divisible by the world size {size} (processes): every rank takes an "
            f"equal shard of the global batch; choose a batch size that is a multiple of {size}"
        )


def shard_slice(size: int) -> slice | None:
    """This rank's contiguous :math:`1/W` of a global batch of ``size`` examples; ``None`` in a single process."""
    if not is_distributed():
        return None
    part = size // world_size()
    return slice(rank() * part, (rank() + 1) * part)


def shard_indices(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous :math:`1/W` of a global batch's indices."""
    if not is_distributed():
        return indices
    size = len(indices) // world_size()
    return indices[rank() * size : (rank() + 1) * size]


def shard(inputs: Any, targets: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """This rank's contiguous :math:`1/W` of a global batch (inputs a tensor or a dict of tensors)."""
    if not is_distributed():
        return inputs, targets
    size = len(targets) // world_size()
    part = slice(rank() * size, (rank() + 1) * size)
    if isinstance(inputs, dict):
        return {name: value[part] for name, value in inputs.items()}, targets[part]
    return inputs[part], targets[part]


def average_gradients(parameters: Sequence[torch.Tensor]) -> None:
    r"""Replace each gradient by its mean over ranks: one flattened ``all_reduce`` per dtype and device.

    .. math:: g \leftarrow \frac1W\sum_{r=0}^{W-1} g^{(r)},\qquad
              g^{(r)}=\nabla\Big(\frac{W}{B}\sum_{i\in\omega_k^{(r)}}\ell_i(x_k)\Big),

    which is the single-process mini-batch gradient :math:`\nabla\mathcal L_{\omega_k}(x_k)` of paper eq. (3)
    (and of SVAG, Definition 5.1, whose objective is linear in its two losses) because the shards are disjoint,
    cover :math:`\omega_k` and all hold :math:`B/W` examples (see the module docstring).
    """
    if not is_distributed():
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for parameter in parameters:
        if parameter.grad is not None:
            groups.setdefault((parameter.grad.dtype, parameter.grad.device), []).append(parameter.grad)
    size = world_size()
    for grads in groups.values():
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        dist.all_reduce(flat)
        flat.div_(size)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of ``values`` (each rank's shard means: the global batch's means)."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world_size()


def on_rank0(function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0 only and return its result on every rank; its exception is raised on every
    rank (so all take the same path).  Acts as a barrier.  Without a process group: ``function()``."""
    if not is_distributed():
        return function()
    payload: list[Any] = [None]
    if rank() == 0:
        try:
            payload = [(True, function())]
        except Exception as exc:  # re-raised below on every rank
            payload = [(False, _picklable(exc))]
    dist.broadcast_object_list(payload, src=0)
    ok, value = payload[0]
    if not ok:
        if rank() != 0:
            setattr(value, _FROM_RANK0, True)
        raise value
    return value


def _picklable(exc: Exception) -> Exception:
    """``exc``, or a ``RuntimeError`` with its message when it cannot cross to the other ranks."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def rank0_first(function: Callable[[], T]) -> T:
    """``function()`` on every rank, rank 0 first (it may download or cache data the others then read)."""
    if not is_distributed():
        return function()
    result: list[T] = []
    on_rank0(lambda: result.append(function()))
    if rank() != 0:
        result.append(function())
    return result[0]


@contextlib.contextmanager
def rank0_context(factory: Callable[[], contextlib.AbstractContextManager[Any]]) -> Iterator[None]:
    """Hold the context ``factory()`` (a store lock) on rank 0 only for the block; its failure raises on all."""
    with contextlib.ExitStack() as stack:
        on_rank0(lambda: stack.enter_context(factory()) and None)
        yield


# ----------------------------------------------------------------------------------------------- BatchNorm


class GlooSyncBatchNorm(nn.SyncBatchNorm):
    """:class:`torch.nn.SyncBatchNorm` that also synchronises CPU tensors (torch's kernel is GPU-only).

    In training it normalises with the mean and biased variance of the global batch over the channel
    dimension, computed in two passes from per-channel sums reduced with the differentiable
    :func:`torch.distributed.nn.functional.all_reduce` (whose backward sums the incoming gradients over ranks,
    as the chain rule through the global statistics requires), and updates the running statistics like
    :class:`torch.nn.BatchNorm2d` (unbiased variance).  Elsewhere (eval mode, CUDA, no process group) it is
    torch's layer.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and input.device.type == "cpu" and is_distributed()):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        local = input.numel() // input.size(1)
        count = local * world_size()
        mean = all_reduce(input.sum(dims)) / count
        centered = input - mean.view(shape)
        var = all_reduce((centered * centered).sum(dims)) / count
        output = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * count / max(count - 1, 1)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return output


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with its BatchNorm layers synchronised over the process group (same ``state_dict`` keys);
    unchanged without a process group.  CPU layers get :class:`GlooSyncBatchNorm`."""
    if not is_distributed():
        return model
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is nn.SyncBatchNorm:
            module.__class__ = GlooSyncBatchNorm
    return model


# ------------------------------------------------------------------------------------------------ launching


def launch_command(argv: Sequence[str], nproc: int) -> list[str]:
    """The ``torch.distributed.run`` command that runs ``python -m mvm ARGV`` in ``nproc`` processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "mvm",
        *argv,
    ]
