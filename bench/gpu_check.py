"""GPU self-check in one command (``make gpu-check``; ``python -m bench.gpu_check`` from the source tree).

Uses the torch already installed (no pip; ``make gpu-check`` takes ``.venv/bin/python`` where it exists), writes
``results/gpu_check.json`` atomically and prints a table.  Sections, each bounded by its own time budget (a
section that runs out stops and keeps what it measured):

1. ``optimizer``  NormalizedSGDM on the device vs CPU float64, 100 steps on fixed gradients and on a quadratic
   whose gradients each device computes: max relative parameter difference (flagged above 1e-12 in float64).
2. ``resnet32``   ResNet-32 on synthetic CIFAR-shaped data (B = 512): images/s through our training loop
   (:func:`empirical.train.train_run` on an in-memory dataset) and through a bare PyTorch loop (same model,
   same batch indices, same optimizer: NormalizedSGDM with the same settings, so the difference is the loop's),
   for fp32, bf16, bf16 + channels_last and + torch.compile -> our overhead in %.
3. ``ensemble``   a vectorised ensemble (:func:`empirical.ensemble.train_ensemble`) vs the same members trained
   one after another: speed ratio.
4. ``ddp``        ``mvm train --nproc 2`` over nccl vs one process, when there are >= 2 GPUs and
   :mod:`empirical.distributed` exists.
5. ``projection`` wall time of Figure 2 and of one ImageNet ResNet-50 member from the measured throughput
   (ResNet-50 images/s measured briefly at B = 256, 224x224, bf16 + channels_last); the formulas are in the JSON.

Without CUDA it prints one line and exits 0.  ``--device cpu --tiny`` runs every section at tiny sizes on the
CPU (the tests do), to exercise the code paths.  A section whose module or feature is missing is recorded as
skipped with the reason; the command exits 0 unless its arguments are wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SCHEMA = 1
NO_CUDA = "no CUDA device: gpu-check measures nothing on CPU"
FLAG_FLOAT64 = 1e-12
OVERHEAD_TARGET = 0.05
SECTIONS = ("optimizer", "resnet32", "ensemble", "ddp", "projection")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes and per-section budgets (seconds) of one mode."""

    name: str
    opt_steps: int
    opt_dim: int
    batch: int
    side: int
    short_steps: int
    long_steps: int
    bare_steps: int
    members: int
    ens_batch: int
    ens_steps: int
    r50_batch: int
    r50_side: int
    r50_steps: int
    r50_classes: int
    warm_up: bool
    compile: bool
    budgets: dict[str, float]


FULL = Sizes(
    name="full",
    opt_steps=100,
    opt_dim=256,
    batch=512,
    side=32,
    short_steps=10,
    long_steps=110,  # 100 steps of difference: the fixed costs' jitter stays well under 1% of the per-step time
    bare_steps=100,
    members=4,
    ens_batch=512,
    ens_steps=40,
    r50_batch=256,
    r50_side=224,
    r50_steps=15,
    r50_classes=1000,
    warm_up=True,
    compile=True,
    # at most 250 s in all, plus start-up (import torch, CUDA context): under 5 minutes
    budgets={"optimizer": 15, "resnet32": 130, "ensemble": 35, "ddp": 40, "projection": 30},
)
TINY = Sizes(
    name="tiny",
    opt_steps=100,
    opt_dim=8,
    batch=8,
    side=8,
    short_steps=1,
    long_steps=2,
    bare_steps=1,
    members=2,
    ens_batch=8,
    ens_steps=2,
    r50_batch=2,
    r50_side=32,
    r50_steps=1,
    r50_classes=10,
    warm_up=True,
    compile=False,  # torch.compile of ResNet-32 takes minutes of C++ compilation on a CPU
    # safety nets only: the tiny sizes take about 30 s in all on 2 idle cores, several times that on a loaded one
    budgets={"optimizer": 120, "resnet32": 240, "ensemble": 120, "ddp": 120, "projection": 120},
)

# Figure 2 at paper scale (paper_figures/svag_sweep.py, "full"): CIFAR-10 ResNet-32, 50000 training images, B = 512,
# 160 epochs, ell in {1, 2, 4, 8}, SGD and SGDM, 3 seeds; evaluation every epoch (of SDE time) on 10000 training and
# all 10000 test images.  SVAG: ell times the steps, two batches per step when ell > 1 (empirical/svag.py).
FIG2 = {"train_size": 50000, "batch": 512, "epochs": 160, "ells": [1, 2, 4, 8], "optimizers": 2, "seeds": 3}
FIG2_EVAL_IMAGES = 10000 + 10000
# One ImageNet member (configs/imagenet_resnet50_b1024.toml): 90 epochs of 1281167 images, evaluation every epoch on
# 10000 training and 50000 validation images.
IMAGENET = {"train_size": 1281167, "epochs": 90, "eval_images": 10000 + 50000}
EVAL_COST = 1 / 3  # a forward pass costs about a third of a training step (forward + backward)


class SectionTimeout(BaseException):
    """Raised in the main thread when a section exceeds its budget.

    A ``BaseException``, not an ``Exception``: code under test that catches ``Exception`` (torch.compile's dynamo
    wraps what it catches; :mod:`empirical.precision` turns compiler errors into "compile unavailable") must
    not turn a spent budget into a skipped measurement.
    """


class Skip(Exception):
    """A section (or one of its measurements) cannot run here; the message says why."""


@dataclasses.dataclass
class Context:
    device: Any
    sizes: Sizes
    deadline: float
    results: dict[str, Any]

    def left(self) -> float:
        return self.deadline - time.perf_counter()


# ------------------------------------------------------------------------------------------------ helpers


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`SectionTimeout` after ``seconds`` (SIGALRM; a no-op off the main thread or without it)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"budget of {seconds:.0f} s exhausted")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _max_relative(found: list[Any], reference: list[Any]) -> float:
    """max over tensors of max|found - reference| / max|reference| (both moved to CPU float64)."""
    worst = 0.0
    for a, b in zip(found, reference, strict=True):
        a, b = a.detach().double().cpu(), b.detach().double().cpu()
        scale = float(b.abs().max()) or 1.0
        worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


def _train_fields() -> set[str]:
    from empirical.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def _synthetic_images(count: int, side: int, classes: int, seed: int, augmentation: str | None = None) -> Any:
    """A dataset of random CIFAR-shaped images held as tensors (train: ``count``, test: one batch's worth)."""
    import torch

    from empirical.data import Dataset, TensorSplit

    generator = torch.Generator().manual_seed(seed)
    test = max(1, min(count, 1024))
    return Dataset(
        "synthetic_cifar",
        TensorSplit(torch.randn(count, 3, side, side, generator=generator), torch.randint(0, classes, (count,))),
        TensorSplit(torch.randn(test, 3, side, side, generator=generator), torch.randint(0, classes, (test,))),
        num_classes=classes,
        input_shape=(3, side, side),
        augmentation=augmentation,
    )


def _run_config(model: str, batch: int, steps: int, device: Any, train: dict[str, Any], seed: int = 0) -> Any:
    from empirical.config import DataConfig, ModelConfig, OptimizerConfig, RunConfig, TrainConfig

    return RunConfig(
        data=DataConfig("cifar10", {"root": "synthetic:gpu-check"}),
        model=ModelConfig(model),
        optimizer=OptimizerConfig(name="normalized_sgdm", eta=0.2, momentum=0.9, weight_decay=5e-4),
        train=TrainConfig(
            batch_size=batch,
            length=steps,
            unit="step",
            eval_every=steps,
            eval_train_samples=batch,
            eval_test_samples=batch,
            eval_batch_size=batch,
            **train,
        ),
        seed=seed,
        device=str(device),
        name="gpu-check",
    )


def _timed(device: Any, work: Callable[[], Any]) -> float:
    _sync(device)
    started = time.perf_counter()
    work()
    _sync(device)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------- 1. optimizer


def section_optimizer(ctx: Context) -> None:
    """NormalizedSGDM on the device vs on the CPU in float64, on the same gradient sequence and on a quadratic."""
    import inspect

    import torch

    from empirical.optim import NormalizedSGDM

    sizes, out = ctx.sizes, ctx.results
    generator = torch.Generator().manual_seed(0)
    shapes = [(sizes.opt_dim, sizes.opt_dim // 2), (sizes.opt_dim // 2,), (10, sizes.opt_dim // 2), (10,)]
    start = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes]
    grads = [[torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes] for _ in range(sizes.opt_steps)]
    dim = sizes.opt_dim
    basis = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))[0]
    hessian = basis @ torch.diag(torch.linspace(0.1, 10.0, dim, dtype=torch.float64)) @ basis.T
    target = torch.randn(dim, generator=generator, dtype=torch.float64)
    noise = [torch.randn(dim, generator=generator, dtype=torch.float64) for _ in range(sizes.opt_steps)]

    def fixed(device: Any, dtype: Any, **options: Any) -> list[Any]:
        params = [x.to(device=device, dtype=dtype).clone() for x in start]
        optimizer = NormalizedSGDM(params, lr=0.05, momentum=0.9, weight_decay=5e-4, **options)
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.to(device=device, dtype=dtype)
            optimizer.step()
        return params

    def quadratic(device: Any, dtype: Any) -> list[Any]:
        x = torch.zeros(dim, device=device, dtype=dtype)
        a, b = hessian.to(device=device, dtype=dtype), target.to(device=device, dtype=dtype)
        optimizer = NormalizedSGDM([x], lr=0.05, momentum=0.9)
        for xi in noise:
            x.grad = a @ (x - b) + xi.to(device=device, dtype=dtype)  # gradient computed on each device
            optimizer.step()
        return [x]

    f64, f32 = torch.float64, torch.float32
    reference = fixed("cpu", f64)
    rows: dict[str, Any] = {}
    out["rows"] = rows
    rows["fixed_gradients_float64"] = _max_relative(fixed(ctx.device, f64), reference)
    rows["fixed_gradients_float64_nesterov"] = _max_relative(
        fixed(ctx.device, f64, nesterov=True), fixed("cpu", f64, nesterov=True)
    )
    if "foreach" in inspect.signature(NormalizedSGDM).parameters:
        rows["fixed_gradients_float64_foreach"] = _max_relative(fixed(ctx.device, f64, foreach=True), reference)
        rows["fixed_gradients_float64_per_tensor"] = _max_relative(fixed(ctx.device, f64, foreach=False), reference)
    else:
        out["foreach"] = "NormalizedSGDM(foreach=...) not available in this version"
    rows["quadratic_float64"] = _max_relative(quadratic(ctx.device, f64), quadratic("cpu", f64))
    rows["fixed_gradients_float32_vs_cpu_float64"] = _max_relative(fixed(ctx.device, f32), reference)
    out["steps"] = sizes.opt_steps
    out["threshold_float64"] = FLAG_FLOAT64
    out["flagged"] = sorted(k for k, v in rows.items() if "float32" not in k and v > FLAG_FLOAT64)


# ----------------------------------------------------------------------------------------- 2. resnet32


def _variants(fields: set[str]) -> list[tuple[str, dict[str, Any] | None, dict[str, Any], str]]:
    """(name, our loop's train overrides or None when unavailable, bare-loop settings, note)."""
    bf16 = {"precision": "bf16"} if "precision" in fields else {"amp_bf16": True}
    have_cl, have_compile = "channels_last" in fields, "compile" in fields
    missing = "train.{} not available in this version"
    return [
        ("fp32", {}, {}, ""),
        ("bf16", bf16, {"bf16": True}, ""),
        (
            "bf16+channels_last",
            {**bf16, "channels_last": True} if have_cl else None,
            {"bf16": True, "channels_last": True},
            "" if have_cl else missing.format("channels_last"),
        ),
        (
            "bf16+channels_last+compile",
            {**bf16, "channels_last": True, "compile": True} if have_cl and have_compile else None,
            {"bf16": True, "channels_last": True, "compile": True},
            "" if have_cl and have_compile else missing.format("channels_last/compile"),
        ),
    ]


def _ours_per_step(ctx: Context, model: str, dataset: Any, overrides: dict[str, Any]) -> float:
    """Seconds per step through :func:`empirical.train.train_run`: (T(long) - T(short)) / (long - short).

    The difference of two runs cancels what every run does once (model build, first and last evaluation, the
    record); a first short run warms up kernels (cuDNN autotuning, compilation caches).
    """
    from empirical.train import train_run

    sizes = ctx.sizes

    def once(steps: int) -> float:
        config = _run_config(model, sizes.batch, steps, ctx.device, overrides)
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            return _timed(
                ctx.device,
                lambda: train_run(config, out=tmp, quiet=True, dataset=dataset, final_checkpoint=False),
            )

    if sizes.warm_up:
        once(sizes.short_steps)
    short, long = once(sizes.short_steps), once(sizes.long_steps)
    if long <= short:  # timing noise larger than the difference (tiny sizes): the long run's mean, an upper bound
        return long / sizes.long_steps
    return (long - short) / (sizes.long_steps - sizes.short_steps)


def _bare_per_step(ctx: Context, model_name: str, dataset: Any, settings: dict[str, Any], steps: int) -> float:
    """Seconds per step of a bare loop: the same model and data, autocast, channels_last, and the same optimizer
    as our loop (NormalizedSGDM built from the same config by :func:`empirical.run.make_optimizer`) on the same
    batches (the indices of :class:`empirical.data.EpochSampler` for the same seed, computed before timing): the
    overhead then measures our loop, not a cheaper optimizer or a cheaper batch order."""
    import torch
    import torch.nn.functional as F

    from empirical.data import EpochSampler
    from empirical.models import build_model
    from empirical.run import make_optimizer

    device, batch = ctx.device, ctx.sizes.batch if model_name == "resnet32" else ctx.sizes.r50_batch
    config = _run_config(model_name, batch, 3 + steps, device, {})
    model = build_model(model_name, dataset, 0).to(device)
    model.train()
    memory = torch.channels_last if settings.get("channels_last") else torch.contiguous_format
    model = model.to(memory_format=memory)
    inputs, targets = dataset.train.inputs, dataset.train.targets
    count = inputs.shape[0]
    optimizer = make_optimizer(config, list(model.parameters()), config.schedule(count).momentum)
    forward = torch.compile(model) if settings.get("compile") else model
    sampler = EpochSampler(count, batch, config.seed, 0, targets.device)
    batches = [sampler.indices(k) for k in range(3 + steps)]

    def step(k: int) -> None:
        rows = batches[k]
        x = inputs[rows].contiguous(memory_format=memory)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(settings.get("bf16"))):
            loss = F.cross_entropy(forward(x), targets[rows])
        loss.backward()
        optimizer.step()

    for k in range(3):  # warm-up (and compilation)
        step(k)
    return _timed(device, lambda: [step(3 + k) for k in range(steps)]) / steps


def section_resnet32(ctx: Context) -> None:
    """Images/s of ResNet-32 through our loop and a bare loop, per precision variant; overhead = ours/bare - 1."""
    import torch

    sizes, out = ctx.sizes, ctx.results
    torch.backends.cudnn.benchmark = True
    count = sizes.batch * max(4, sizes.long_steps // 4)
    dataset = _synthetic_images(count, sizes.side, 10, seed=1).to(ctx.device)
    variants: dict[str, Any] = {}
    out["variants"] = variants
    out["batch"] = sizes.batch
    out["overhead_target"] = OVERHEAD_TARGET
    for name, overrides, bare, note in _variants(_train_fields()):
        entry: dict[str, Any] = {}
        variants[name] = entry
        if overrides is None:
            entry.update(status="skipped", reason=note)
            continue
        if bare.get("compile") and not sizes.compile:
            entry.update(status="skipped", reason=f"not compiled in {sizes.name} mode (minutes on a CPU)")
            continue
        if ctx.left() < (60 if bare.get("compile") and sizes.name == "full" else 5):
            entry.update(status="skipped", reason="section budget spent")
            continue
        try:
            ours = _ours_per_step(ctx, "resnet32", dataset, overrides)
            plain = _bare_per_step(ctx, "resnet32", dataset, bare, sizes.bare_steps)
        except SectionTimeout:
            entry.update(status="skipped", reason="section budget spent during this variant")
            raise
        except Exception as exc:
            entry.update(status="skipped", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        entry.update(
            status="ok",
            ours_images_per_s=sizes.batch / ours,
            bare_images_per_s=sizes.batch / plain,
            overhead=ours / plain - 1.0,
        )
    if ctx.left() > 5:  # Figure 2's own data path: the same loop with crop-and-flip on the device
        augmented = _synthetic_images(count, sizes.side, 10, seed=1, augmentation="crop_flip").to(ctx.device)
        ours = _ours_per_step(ctx, "resnet32", augmented, {})
        variants["fp32+crop_flip"] = {"status": "ok", "ours_images_per_s": sizes.batch / ours}


# ----------------------------------------------------------------------------------------- 3. ensemble


def section_ensemble(ctx: Context) -> None:
    """A vectorised ensemble of small CNNs vs the same members trained one after another."""
    from empirical.ensemble import train_ensemble
    from empirical.train import train_run

    sizes, out = ctx.sizes, ctx.results
    dataset = _synthetic_images(sizes.ens_batch * 4, sizes.side, 10, seed=2).to(ctx.device)

    def members(steps: int) -> list[Any]:
        return [
            _run_config("small_cnn", sizes.ens_batch, steps, ctx.device, {}, seed=seed) for seed in range(sizes.members)
        ]

    def vectorised(steps: int) -> float:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            return _timed(ctx.device, lambda: train_ensemble(members(steps), out=tmp, quiet=True, dataset=dataset))

    def sequential(steps: int) -> float:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:

            def work() -> None:
                for member in members(steps):
                    train_run(member, out=tmp, quiet=True, dataset=dataset, final_checkpoint=False)

            return _timed(ctx.device, work)

    if sizes.warm_up:
        vectorised(2), sequential(2)
    seconds_vectorised, seconds_sequential = vectorised(sizes.ens_steps), sequential(sizes.ens_steps)
    out.update(
        members=sizes.members,
        model="small_cnn",
        batch=sizes.ens_batch,
        steps=sizes.ens_steps,
        vectorised_s=seconds_vectorised,
        sequential_s=seconds_sequential,
        speedup=seconds_sequential / seconds_vectorised,
    )


# ---------------------------------------------------------------------------------------------- 4. DDP


def section_ddp(ctx: Context, cpu_backend: str | None = None) -> None:
    """``mvm train --nproc 2`` (nccl) vs one process on a small config, when >= 2 GPUs and the module exist.

    ``cpu_backend="gloo"`` runs the same commands on the CPU (the tests exercise the code path that way).
    """
    import torch

    if cpu_backend is None:
        if ctx.device.type != "cuda":
            raise Skip("DDP over nccl needs CUDA devices")
        if torch.cuda.device_count() < 2:
            raise Skip(f"{torch.cuda.device_count()} GPU")
    if importlib.util.find_spec("empirical.distributed") is None:
        raise Skip("empirical.distributed not available in this version")
    backend, device = (cpu_backend, "cpu") if cpu_backend else ("nccl", "cuda")
    steps = 200 if ctx.sizes.name == "full" else 10
    root = Path(__file__).resolve().parents[1]
    config = "\n".join(
        [
            'name = "gpu-check-ddp"',
            f'device = "{device}"',
            '[data]\nname = "digits"',
            '[model]\nname = "mlp"\nhidden = [512, 512]',
            '[optimizer]\nname = "normalized_sgdm"\neta = 0.1\nmomentum = 0.9',
            f"[train]\nbatch_size = 256\nunit = 'step'\nlength = {steps}\neval_every = {steps}",
        ]
    )
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as tmp:
        path = Path(tmp) / "ddp.toml"
        path.write_text(config + "\n")
        for nproc in (1, 2):
            command = [sys.executable, "-m", "mvm", "train", str(path), "--out", f"{tmp}/runs{nproc}", "--quiet"]
            if nproc > 1:
                command += ["--nproc", str(nproc), "--dist-backend", backend]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
            started = time.perf_counter()
            returncode, stdout, stderr = run_process_tree(command, timeout=max(5.0, ctx.left() - 2), env=env)
            timings[f"nproc{nproc}_s"] = time.perf_counter() - started
            if returncode != 0:
                tail = (stderr or stdout).strip().splitlines()[-1:] or ["(no output)"]
                raise RuntimeError(f"`{' '.join(command[2:])}` exited {returncode}: {tail[0][:200]}")
    ctx.results.update(
        timings, backend=backend, world_size=2, steps=steps, ratio=timings["nproc1_s"] / timings["nproc2_s"]
    )


def kill_process_tree(process: subprocess.Popen[Any]) -> None:
    """SIGKILL ``process`` (started with ``start_new_session=True``), its process group and every descendant.

    torch.distributed.run may start its workers in sessions of their own, outside the launcher's group, so the
    descendants are found through /proc: each is stopped (SIGSTOP: no more forks, no reparenting races) until
    no new one appears, then all are killed.
    """
    from empirical.distributed import descendant_pids  # torch is there: this section launched torchrun

    stopped: list[int] = []
    for _ in range(20):
        new = [pid for pid in [process.pid, *descendant_pids(process.pid)] if pid not in stopped]
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP)
        stopped += new
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=10)


def run_process_tree(command: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``command`` in a session of its own; (returncode, stdout, stderr).  When it outlives ``timeout`` (or
    the section's budget interrupts the wait) the whole tree dies (:func:`kill_process_tree`): no orphaned
    workers keep the GPUs busy.  A timeout raises :class:`SectionTimeout` (the section's status ``timeout``)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_tree(process)
        raise SectionTimeout(f"`{' '.join(command[2:])}` still running after {timeout:.0f} s: killed") from None
    except BaseException:
        kill_process_tree(process)
        raise
    return process.returncode, stdout, stderr


# ---------------------------------------------------------------------------------------- 5. projection


def figure2_images() -> dict[str, float]:
    """Training and evaluation images of Figure 2 at paper scale (the formula is in the JSON)."""
    f = FIG2
    steps_per_epoch = f["train_size"] // f["batch"]
    runs = f["optimizers"] * f["seeds"]
    train = sum(runs * ell * f["epochs"] * steps_per_epoch * f["batch"] * (1 if ell == 1 else 2) for ell in f["ells"])
    evaluation = runs * len(f["ells"]) * (f["epochs"] + 1) * FIG2_EVAL_IMAGES
    return {"train_images": float(train), "eval_images": float(evaluation)}


def imagenet_images() -> dict[str, float]:
    i = IMAGENET
    return {
        "train_images": float(i["epochs"] * i["train_size"]),
        "eval_images": float((i["epochs"] + 1) * i["eval_images"]),
    }


def projected_seconds(images: dict[str, float], images_per_s: float) -> float:
    return images["train_images"] / images_per_s + images["eval_images"] * EVAL_COST / images_per_s


def section_projection(ctx: Context, resnet32: dict[str, Any]) -> None:
    """Figure 2 and one ImageNet member projected from measured images/s; ResNet-50 measured here briefly."""
    sizes, out = ctx.sizes, ctx.results
    out["formula"] = {
        "figure2_train_images": "sum over ell in {1,2,4,8}: 2 optimizers x 3 seeds x ell x 160 epochs x "
        "floor(50000/512) steps x 512 x (1 if ell == 1 else 2)",
        "figure2_eval_images": "2 x 3 x 4 runs x 161 evaluations x (10000 train + 10000 test)",
        "imagenet_member_train_images": "90 epochs x 1281167",
        "imagenet_member_eval_images": "91 evaluations x (10000 train + 50000 val)",
        "seconds": f"train_images / R + eval_images x {EVAL_COST:.3f} / R, R = measured training images/s",
    }
    fig2 = figure2_images()
    out["figure2_images"] = fig2
    variants = resnet32.get("variants", {}) if isinstance(resnet32, dict) else {}
    rates = {k: v["ours_images_per_s"] for k, v in variants.items() if v.get("status") == "ok"}
    if rates:
        projections = {}
        for name, rate in sorted(rates.items()):
            projections[name] = {"images_per_s": rate, "hours_one_gpu": projected_seconds(fig2, rate) / 3600}
        out["figure2"] = projections
    else:
        out["figure2"] = "skipped: no ResNet-32 throughput measured"
    import torch

    count = sizes.r50_batch * 2
    generator = torch.Generator().manual_seed(3)
    from empirical.data import Dataset, TensorSplit

    inputs = torch.randn(count, 3, sizes.r50_side, sizes.r50_side, generator=generator)
    classes = sizes.r50_classes
    split = TensorSplit(inputs, torch.randint(0, classes, (count,), generator=generator))
    dataset = Dataset("synthetic_imagenet", split, split, classes, (3, sizes.r50_side, sizes.r50_side)).to(ctx.device)
    per_step = _bare_per_step(ctx, "resnet50", dataset, {"bf16": True, "channels_last": True}, sizes.r50_steps)
    rate = sizes.r50_batch / per_step
    images = imagenet_images()
    out["imagenet_member"] = {
        "resnet50_images_per_s_bare_bf16_channels_last": rate,
        "batch": sizes.r50_batch,
        "side": sizes.r50_side,
        "images": images,
        "hours_one_gpu": projected_seconds(images, rate) / 3600,
        "decode_note": "needs the image folder to decode this many images/s (bench/bench_image_folder.py)",
    }


# ------------------------------------------------------------------------------------------------ runner


def _run_section(name: str, ctx: Context, work: Callable[[], None]) -> None:
    started = time.perf_counter()
    budget = ctx.sizes.budgets[name]
    try:
        with _time_limit(budget):
            work()
        ctx.results.setdefault("status", "ok")
    except Skip as exc:
        ctx.results.update(status="skipped", reason=str(exc))
    except ModuleNotFoundError as exc:
        ctx.results.update(status="skipped", reason=f"missing module {exc.name or exc}")
    except SectionTimeout as exc:
        ctx.results.update(status="timeout", reason=str(exc))
    except Exception as exc:
        ctx.results.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:400])
        ctx.results["traceback"] = traceback.format_exc()[-2000:]
    ctx.results["seconds"] = time.perf_counter() - started
    ctx.results["budget_s"] = budget


def run_check(
    device_name: str = "cuda", tiny: bool = False, out: str | Path = "results/gpu_check.json"
) -> dict[str, Any]:
    """Run every section on ``device_name`` and write the report to ``out``; returns the report."""
    import torch

    sizes = TINY if tiny else FULL
    device = torch.device(device_name)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": sizes.name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "sections": {},
    }
    try:
        report["train_config_features"] = sorted(
            {"precision", "channels_last", "compile", "amp_bf16"} & _train_fields()
        )
    except ModuleNotFoundError as exc:
        report["train_config_features"] = f"missing module {exc.name}"
    sections: dict[str, dict[str, Any]] = report["sections"]
    for name in SECTIONS:
        results: dict[str, Any] = {}
        sections[name] = results
        ctx = Context(device, sizes, time.perf_counter() + sizes.budgets[name], results)
        if name == "projection":
            work: Callable[[], None] = lambda ctx=ctx: section_projection(ctx, sections["resnet32"])  # noqa: E731
        else:
            work = lambda ctx=ctx, name=name: globals()[f"section_{name}"](ctx)  # noqa: E731
        _run_section(name, ctx, work)
    report["total_seconds"] = time.perf_counter() - started
    write_json_atomic(Path(out), report)
    return report


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream, indent=2, sort_keys=True, default=str)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# ------------------------------------------------------------------------------------------------- table


def _fmt(value: float, unit: str = "") -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.3g}{unit}"


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measurement, value, note) rows of the printed table."""
    rows: list[tuple[str, str, str]] = []
    sections = report["sections"]
    for name in SECTIONS:
        section = sections.get(name, {})
        status = section.get("status")
        if status in ("skipped", "error") or (status == "timeout" and len(section) <= 4):
            rows.append((name, status or "?", section.get("reason", "")))
            continue
        if name == "optimizer":
            for key, value in section.get("rows", {}).items():
                flag = "FLAG > 1e-12" if key in section.get("flagged", []) else ""
                rows.append((f"optimizer {key}", f"{value:.2e}", flag or "max relative difference"))
        elif name == "resnet32":
            for key, value in section.get("variants", {}).items():
                if value.get("status") != "ok":
                    rows.append((f"resnet32 {key}", "skipped", value.get("reason", "")))
                elif "bare_images_per_s" in value:
                    over = value["overhead"]
                    note = f"bare {_fmt(value['bare_images_per_s'])} img/s; overhead {100 * over:+.1f}%"
                    note += "" if over <= OVERHEAD_TARGET else " (over the 5% target)"
                    rows.append((f"resnet32 {key}", _fmt(value["ours_images_per_s"], " img/s"), note))
                else:
                    rows.append((f"resnet32 {key}", _fmt(value["ours_images_per_s"], " img/s"), "our loop only"))
        elif name == "ensemble":
            note = f"{section['members']} x {section['model']}, {section['steps']} steps, B={section['batch']}"
            rows.append(("ensemble speedup (sequential / vectorised)", f"{section['speedup']:.2f}x", note))
        elif name == "ddp":
            label = f"ddp 2 processes ({section['backend']})"
            rows.append((label, f"{section['ratio']:.2f}x", "wall 1 process / wall 2 processes, start-up included"))
        elif name == "projection":
            fig2 = section.get("figure2")
            if isinstance(fig2, dict):
                for key, value in fig2.items():
                    rows.append((f"figure 2 projected ({key})", _fmt(value["hours_one_gpu"], " h"), "one GPU"))
            member = section.get("imagenet_member")
            if member:
                rate = member["resnet50_images_per_s_bare_bf16_channels_last"]
                note = f"ResNet-50 {_fmt(rate)} img/s bf16+channels_last, bare loop"
                rows.append(("imagenet member projected", _fmt(member["hours_one_gpu"], " h"), note))
        if status == "timeout":
            rows.append((name, "timeout", section.get("reason", "")))
    return rows


def print_table(report: dict[str, Any], stream: Any = None) -> None:
    stream = stream or sys.stdout
    rows = [("measurement", "value", "note"), *table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    header = f"gpu-check ({report['mode']}): {report['device_name']}, torch {report['torch']}, CUDA {report['cuda']}"
    print(header, file=stream)
    for i, (what, value, note) in enumerate(rows):
        print(f"{what:<{widths[0]}}  {value:>{widths[1]}}  {note}", file=stream)
        if i == 0:
            print("-" * (widths[0] + widths[1] + 8), file=stream)
    print(f"total {report['total_seconds']:.0f} s", file=stream)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: exercise every section in seconds")
    parser.add_argument("--out", default="results/gpu_check.json", help="where the JSON report goes")
    args = parser.parse_args(argv)
    try:
        import torch
    except ModuleNotFoundError:
        print("skipped: torch is not installed (gpu-check uses the torch already on this machine)")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    if args.device == "cpu" and not args.tiny:
        print(f"{NO_CUDA} (add --tiny to exercise the code paths at tiny sizes)")
        return 0
    report = run_check(args.device, args.tiny, args.out)
    print_table(report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
