r"""One training run from a config (the loop): SGD, PyTorch SGDM or normalized SGDM (paper eq. (3)), SVAG, checkpoints,
records.

One step :math:`k` of a run draws the mini-batch :math:`\omega_k` (and under SVAG an independent second
one) from seeded generators (:class:`empirical.data.EpochSampler`), sets the learning rate to the
schedule's :math:`\eta_k` (``TrainSchedule.lr_at``; handed to the optimizer as :math:`\gamma_k=\eta_k(1-\beta)`
for ``pytorch_sgdm``) and takes one optimizer step on the mean cross-entropy

.. math:: \mathcal L_{\omega_k}(x_k)\quad\text{or, under SVAG (Definition 5.1),}\quad
          r_1(\ell)\mathcal L_{\omega_{k,1}}(x_k)+r_2(\ell)\mathcal L_{\omega_{k,2}}(x_k).

Every ``eval_every`` the run evaluates train loss and accuracy (fixed subset), test loss and accuracy;
every ``checkpoint_every`` it writes a checkpoint atomically (model, optimizer, sampler state, step,
curves so far; only tensors and plain values, read back with ``weights_only=True``, the one before kept as
``checkpoint.previous.pt``: :mod:`empirical.checkpoints`).  Because the batch sequence, augmentation and
learning rate are pure functions of ``(seed, step)``, ``resume=True`` continues a killed run to the same final
numbers as an uninterrupted run on the same device; a corrupt checkpoint is set aside with a warning and the run
continues from the previous one or from the start.

Precision and kernels (:mod:`empirical.precision`): ``train.precision`` = ``"bf16"`` or ``"fp16"`` computes the
loss above (and every evaluation) under autocast, float32 master weights and optimizer state; fp16 scales the loss
by :math:`S` and takes the step :math:`x_{k+1}=x_k-\eta\,m_{k+1}` with :math:`m_{k+1}` built from
:math:`\nabla(S\mathcal L)/S`, or skips it when that gradient holds an inf or NaN.  ``train.channels_last`` and
``train.compile`` change kernels only; checkpoints hold the uncompiled model's ``state_dict``, so a compiled run
resumes uncompiled and vice versa (to float32 rounding, not bitwise).

Divergence: a non-finite mini-batch loss at step :math:`k`, or an update that overflows the parameters' dtype at
step :math:`k`, stops the run with status ``"diverged"``, ``diverged_at_step`` = ``steps_completed`` = :math:`k`;
its ``final_*`` metrics are ``None`` and ``last_finite`` holds the last evaluation (step and values) made before.
A step that fp16's gradient scaler skips for an inf or NaN
gradient is not divergence (the loss was finite; the scale is lowered and the run goes on).  A completed run that
ends at chance accuracy with its train loss above the initial one gets a ``warning``.

Results go to a :class:`empirical.records.ResultStore` under ``out``, keyed by the config hash:
``record.json``, ``curves.csv`` and ``checkpoint.pt`` (the final parameters at the end, covered by the
record's digest).  Training an entry holds its lock (:meth:`empirical.records.ResultStore.lock`), so two
processes never train one run twice.  The pieces the loop shares with the ensemble (data preparation,
evaluation, metrics, the store's entry protocol) live in :mod:`empirical.run`; the grid driver that chooses
between loop and ensemble is :mod:`empirical.experiment`.  Under a process group (``mvm train --nproc N``,
torchrun) the loop is data-parallel: each rank trains on its shard of every global batch, gradients and losses
are averaged over ranks, and rank 0 alone holds the lock, evaluates and writes (:mod:`empirical.distributed`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from empirical import distributed
from empirical.checkpoints import (
    CHECKPOINT_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    CorruptCheckpointError,
    load_latest_checkpoint,
    write_checkpoint,
)
from empirical.config import RunConfig
from empirical.data import Dataset, EpochSampler, Inputs, TensorSplit, derive_seed, random_crop_flip
from empirical.models import build_model
from empirical.precision import (
    autocast,
    backward,
    check_autocast_supported,
    compile_model,
    inputs_channels_last,
    make_scaler,
    to_channels_last,
)
from empirical.records import ResultStore
from empirical.run import (
    RunResult,
    _index_device,
    _to_device,
    claim_entry,
    curve_columns,
    evaluate,
    evaluation_split,
    finish_entry,
    is_overflow,
    make_optimizer,
    prepare_dataset,
    resolve_device,
    run_info,
    run_metrics,
)
from empirical.svag import TrainSchedule, svag_loss

__all__ = ["train_run"]


@dataclass
class _Progress:
    """Mutable state of a run that a checkpoint stores besides model and optimizer."""

    step: int = 0
    sde_time: float = 0.0
    window_sum: float = 0.0
    window_count: int = 0
    wall: float = 0.0
    curves: list[dict[str, float]] = dataclasses.field(default_factory=list)
    resumed_from: int | None = None


class _Run:
    """Everything one training run needs; :meth:`train` is the loop."""

    def __init__(self, config: RunConfig, dataset: Dataset, device: torch.device, quiet: bool) -> None:
        self.config, self.dataset, self.device = config, dataset, device
        self.quiet = quiet or distributed.rank() != 0
        distributed.on_rank0(lambda: distributed.check_batch_size(config.train.batch_size))
        train_size = len(dataset.train)
        self.schedule: TrainSchedule = config.schedule(train_size)
        self.steps = self.schedule.steps
        ell = config.svag.ell
        self.steps_per_epoch = train_size // config.train.batch_size
        self.eval_every = ell * config.train.to_steps(config.train.eval_every, train_size, "eval_every")
        self.checkpoint_every = ell * config.train.to_steps(
            config.train.checkpoint_every, train_size, "checkpoint_every"
        )
        self.model = build_model(config.model.name, dataset, config.seed, **config.model.options)
        self.model.to(device=device, dtype=getattr(torch, config.train.dtype))
        if config.train.sync_batchnorm:
            self.model = distributed.convert_sync_batchnorm(self.model)
        self.model.train()
        check_autocast_supported(device.type, config.train.precision)
        if config.train.channels_last:
            to_channels_last(self.model, config.model.name)
        # the module the loop calls; self.model (its parameters, its state_dict) stays the uncompiled one
        self.forward: Any = compile_model(self.model) if config.train.compile else self.model
        self.scaler = make_scaler(device.type, config.train.precision)
        self.optimizer = make_optimizer(config, list(self.model.parameters()), self.schedule.momentum)
        self.samplers = [
            EpochSampler(train_size, config.train.batch_size, config.seed, stream, _index_device(dataset.train))
            for stream in range(1 if ell == 1 else 2)
        ]
        self.eval_train = evaluation_split(dataset.train, config.train.eval_train_samples, "eval-train")
        self.eval_test = evaluation_split(dataset.test, config.train.eval_test_samples, "eval-test")
        self.progress = _Progress()

    # -------------------------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        progress = dataclasses.asdict(self.progress)
        return {
            "config": self.config.identity(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "samplers": [sampler.state_dict() for sampler in self.samplers],
            "progress": progress,
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def save_checkpoint(self, path: Path) -> None:
        distributed.on_rank0(lambda: write_checkpoint(path, self.state()))  # the others wait for it

    def _check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Raise :class:`CorruptCheckpointError` unless ``state`` fits this run (fields, config, shapes)."""
        types = {"config": dict, "model": dict, "optimizer": dict, "samplers": list, "progress": dict}
        wrong = sorted(name for name, kind in types.items() if not isinstance(state.get(name), kind))
        if wrong:
            raise CorruptCheckpointError(f"{path}: lacks the fields {wrong} (or they have the wrong type)")
        if state["config"] != self.config.identity():
            raise CorruptCheckpointError(f"{path}: holds another config than its folder's")
        if set(state["progress"]) != {f.name for f in dataclasses.fields(_Progress)}:
            raise CorruptCheckpointError(f"{path}: its progress fields differ from this version's")
        expected = {name: tuple(t.shape) for name, t in self.model.state_dict().items()}
        found = {name: tuple(getattr(t, "shape", ())) for name, t in state["model"].items()}
        if found != expected:
            raise CorruptCheckpointError(f"{path}: its parameters do not fit this run's model")
        step = state["progress"]["step"]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= self.steps:
            raise CorruptCheckpointError(f"{path}: step {state['progress']['step']} outside 0..{self.steps}")
        if state["samplers"] != [sampler.state_dict() for sampler in self.samplers]:
            raise ValueError(f"{path}: its data order differs from this run's (dataset size or batch size changed)")

    def load_checkpoint(self, folder: Path) -> bool:
        """Continue from the newest good checkpoint in ``folder`` (bad ones set aside); whether there was one."""
        where = "cpu" if distributed.is_distributed() else self.device  # rank 0 reads, every rank loads
        state = distributed.on_rank0(lambda: load_latest_checkpoint(folder, where, self._check_checkpoint))
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and isinstance(state.get("scaler"), dict):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = _Progress(**state["progress"])
        self.progress.resumed_from = self.progress.step
        return True

    # --------------------------------------------------------------------------------------- loop

    def _batch(self, step: int, stream: int) -> tuple[Inputs, torch.Tensor]:
        split = self.dataset.train
        indices = self.samplers[stream].indices(step)
        if getattr(split, "streaming", False):
            generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "augment", stream, step))
            part = distributed.shard_slice(len(indices))  # draws for the global batch, decoding of the shard
            inputs, targets = split.batch(indices, generator) if part is None else split.batch(indices, generator, part)
            return _to_device(inputs, self.device), targets.to(self.device, non_blocking=True)
        inputs, targets = split.batch(indices)
        if self.dataset.augmentation == "crop_flip":
            generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "augment", stream, step))
            inputs = random_crop_flip(inputs, generator)
        return distributed.shard(inputs, targets)  # augmentation drawn for the global batch, then sharded

    def _evaluate_row(self, running: float) -> dict[str, float]:
        batch = self.config.train.eval_batch_size
        kernels = (self.config.train.precision, self.config.train.channels_last)
        train_loss, train_acc = evaluate(self.forward, self.eval_train, batch, self.device, *kernels)
        test_loss, test_acc = evaluate(self.forward, self.eval_test, batch, self.device, *kernels)
        step = self.progress.step
        return {
            "step": step,
            "epoch": step / (self.steps_per_epoch * self.config.svag.ell),
            "time": self.progress.sde_time,
            "lr": self.schedule.lr_at(min(step, self.steps - 1)),
            "train_loss_running": running,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "wall_s": self.progress.wall,
        }

    def train(self, checkpoint_path: Path | None) -> int | None:
        """Run to the end (or to divergence); returns the step whose loss was not finite, else ``None``."""
        config, progress, optimizer, model = self.config, self.progress, self.optimizer, self.forward
        ell, precision, device_type, scaler = config.svag.ell, config.train.precision, self.device.type, self.scaler
        native_lr = config.optimizer.native_lr
        lrs = [self.schedule.lr_at(k) for k in range(self.steps)]
        streaming = getattr(self.dataset.train, "streaming", False)
        started = time.perf_counter() - progress.wall
        if progress.step == 0 and not progress.curves:
            progress.curves.append(distributed.on_rank0(lambda: self._evaluate_row(math.nan)))
        bar = _progress_bar(self.steps, progress.step, config.name, self.quiet)
        pending: list[torch.Tensor] = []
        pending_from = progress.step
        next_sync = self._next_sync(progress.step)
        sde_time = progress.sde_time
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        current_eta = None
        fetch = self._fetcher(ell)
        prefetch = ThreadPoolExecutor(max_workers=1) if streaming else None
        upcoming = prefetch.submit(fetch, progress.step) if prefetch else None
        diverged_at = None
        try:
            for step in range(progress.step, self.steps):
                eta = lrs[step]
                if eta != current_eta:
                    for group in optimizer.param_groups:
                        group["lr"] = native_lr(eta)
                    current_eta = eta
                if upcoming is not None:
                    batches = upcoming.result()
                    if step + 1 < self.steps:
                        upcoming = prefetch.submit(fetch, step + 1)  # type: ignore[union-attr]
                else:
                    batches = fetch(step)
                optimizer.zero_grad(set_to_none=True)
                with autocast(device_type, precision):
                    losses = [F.cross_entropy(model(inputs), targets) for inputs, targets in batches]
                objective = losses[0] if ell == 1 else svag_loss(losses[0], losses[1], ell)
                backward(model, objective if scaler is None else scaler.scale(objective))
                pending.extend(item.detach() for item in losses)
                distributed.average_gradients(parameters)  # shard means -> the global batch's mean gradient
                try:
                    if scaler is None:
                        optimizer.step()
                    else:  # skips the step (no update) when the scaled gradients hold an inf or NaN
                        scaler.step(optimizer)
                        scaler.update()
                except (RuntimeError, OverflowError) as exc:
                    if not is_overflow(exc):
                        raise
                    pending.pop()  # the update of this step could not be computed: it diverged here
                    if ell != 1:
                        pending.pop()
                    diverged_at = self._flush(pending, pending_from, len(batches), bar, eta)
                    diverged_at = step if diverged_at is None else diverged_at
                    progress.step = diverged_at
                    break
                sde_time += eta
                if step + 1 < next_sync:
                    continue
                # sync point: fold losses in, check divergence, evaluate, checkpoint
                progress.step, progress.sde_time = step + 1, sde_time
                next_sync = self._next_sync(progress.step)
                diverged_at = self._flush(pending, pending_from, len(batches), bar, eta)
                pending, pending_from = [], progress.step
                if diverged_at is not None:
                    progress.step = diverged_at
                    break
                progress.wall = time.perf_counter() - started
                if progress.step % self.eval_every == 0 or progress.step == self.steps:
                    running = progress.window_sum / max(1, progress.window_count)
                    progress.curves.append(distributed.on_rank0(lambda running=running: self._evaluate_row(running)))
                    progress.window_sum, progress.window_count = 0.0, 0
                if self.checkpoint_every and progress.step % self.checkpoint_every == 0 and checkpoint_path:
                    self.save_checkpoint(checkpoint_path)
        finally:
            bar.close()
            if prefetch is not None:
                prefetch.shutdown(cancel_futures=True)
        progress.wall = time.perf_counter() - started
        return diverged_at

    def _next_sync(self, done: int) -> int:
        """The next step count at which losses are checked and evaluations or checkpoints may be due."""
        periods = [self.config.train.log_every, self.eval_every] + (
            [self.checkpoint_every] if self.checkpoint_every else []
        )
        return min([self.steps] + [(done // period + 1) * period for period in periods])

    def _fetcher(self, ell: int) -> Any:
        """``step -> [(inputs, targets), ...]`` (one batch, two under SVAG); a direct path for held data."""
        split = self.dataset.train
        if ell == 1 and isinstance(split, TensorSplit) and self.dataset.augmentation is None:
            sampler = self.samplers[0]
            fetch = lambda step: [split.batch(distributed.shard_indices(sampler.indices(step)))]  # noqa: E731
        else:
            fetch = lambda step: self._batches(step, ell)  # noqa: E731
        if self.config.train.channels_last:  # 4-D inputs in NHWC, like the model's parameters
            return lambda step: [(inputs_channels_last(x), y) for x, y in fetch(step)]
        return fetch

    def _batches(self, step: int, ell: int) -> list[tuple[Inputs, torch.Tensor]]:
        return [self._batch(step, stream) for stream in range(1 if ell == 1 else 2)]

    def _flush(self, pending: list[torch.Tensor], first_step: int, per_step: int, bar: Any, eta: float) -> int | None:
        """Fold the pending mini-batch losses into the running mean; the first non-finite one's step, if any."""
        if not pending:
            return None
        values = distributed.mean_over_ranks(torch.stack(pending).double()).cpu()  # the global batches' losses
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            return first_step + int(torch.nonzero(~finite)[0, 0]) // per_step
        self.progress.window_sum += float(values.sum())
        self.progress.window_count += len(values)
        bar.update(len(values) // per_step)
        bar.set_postfix(loss=f"{float(values.mean()):.4f}", lr=f"{eta:.4g}", refresh=False)
        return None


def _progress_bar(total: int, initial: int, name: str, quiet: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="step", disable=quiet, dynamic_ncols=True, leave=False)


def train_run(
    config: RunConfig,
    *,
    out: str | Path = "runs",
    resume: bool = False,
    quiet: bool = False,
    dataset: Dataset | None = None,
    recompute: bool = False,
    discard_corrupt: bool = False,
    final_checkpoint: bool = True,
) -> RunResult:
    """Train one run (no grid) and write its record under ``out``; a finished record is returned as is.

    ``resume=True`` continues from the run's checkpoint when there is one.  Without it an existing
    checkpoint of an unfinished run is an error (so a killed run is never silently restarted).
    ``dataset`` may pass data already prepared with :func:`prepare_dataset` for this config.
    ``recompute`` and ``discard_corrupt``: see :func:`claim_entry`.  The whole call holds the entry's lock.
    ``final_checkpoint=False`` keeps no checkpoint once the run is finished (for runs whose final parameters
    nobody reads again, such as the fine-tuning table's: 7 MB each).
    """
    if config.grid:
        raise ValueError("train_run takes one run; use run_experiment for a config with a [grid]")
    store = ResultStore(out)
    with distributed.rank0_context(lambda: store.lock(config.identity())):  # rank 0 holds it for all ranks
        cached = distributed.on_rank0(
            lambda: claim_entry(store, config, recompute=recompute, discard_corrupt=discard_corrupt)
        )
        if cached is not None:
            return cached
        return _train_run_locked(config, store, resume, quiet, dataset, final_checkpoint)


def _train_run_locked(
    config: RunConfig,
    store: ResultStore,
    resume: bool,
    quiet: bool,
    dataset: Dataset | None,
    final_checkpoint: bool = True,
) -> RunResult:
    device = resolve_device(config.device)
    folder = store.entry_dir(config.identity())
    checkpoint = folder / CHECKPOINT_NAME

    def check_unfinished() -> None:
        names = (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME)
        if not resume and any((folder / name).exists() for name in names):
            raise ValueError(
                f"{checkpoint} holds an unfinished run of this config: pass --resume to continue it, "
                "or --recompute to start over"
            )

    distributed.on_rank0(check_unfinished)
    if dataset is None:
        dataset = distributed.rank0_first(lambda: prepare_dataset(config, device))
    run = _Run(config, dataset, device, quiet)
    if resume:
        run.load_checkpoint(folder)
    diverged_at = run.train(checkpoint if run.checkpoint_every else None)
    status = "completed" if diverged_at is None else "diverged"
    if status == "completed" and final_checkpoint:
        run.save_checkpoint(checkpoint)  # the final parameters, for diagnostics at the end of training
    return distributed.on_rank0(lambda: _finish_run(run, store, diverged_at, final_checkpoint))


def _finish_run(run: _Run, store: ResultStore, diverged_at: int | None, final_checkpoint: bool) -> RunResult:
    """Rank 0's end of a run: drop the checkpoint if unwanted, write the record."""
    config, device = run.config, run.device
    status = "completed" if diverged_at is None else "diverged"
    if not final_checkpoint:
        (store.entry_dir(config.identity()) / CHECKPOINT_NAME).unlink(missing_ok=True)
    return finish_entry(
        store,
        config,
        status=status,
        metrics=run_metrics(
            config,
            run.schedule,
            run.progress.step,
            run.progress.curves,
            diverged_at,
            run.samplers[0],
            run.dataset.num_classes,
        ),
        curves=curve_columns(run.progress.curves),
        info=run_info(
            config,
            run.dataset,
            device,
            run.model,
            run.progress.wall,
            engine="loop",
            resumed_from_step=run.progress.resumed_from,
            world_size=distributed.world_size(),
            backend=distributed.backend(),
            **({"loss_scale": run.scaler.get_scale()} if run.scaler is not None else {}),
        ),
    )
