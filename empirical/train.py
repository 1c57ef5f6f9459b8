r"""Training runs from a config: SGD, PyTorch SGDM or normalized SGDM (paper eq. (3)), SVAG, checkpoints, records.

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

Divergence: a non-finite mini-batch loss at step :math:`k`, or an update that overflows the parameters' dtype at
step :math:`k`, stops the run with status ``"diverged"``, ``diverged_at_step`` = ``steps_completed`` = :math:`k`;
its ``final_*`` metrics are ``None`` and ``last_finite`` holds the last evaluation (step and values) made before.
A completed run that ends at chance accuracy with its train loss above the initial one gets a ``warning``.

Results go to a :class:`empirical.records.ResultStore` under ``out``, keyed by the config hash:
``record.json``, ``curves.csv`` and ``checkpoint.pt`` (the final parameters at the end, covered by the
record's digest).  Training an entry holds its lock (:meth:`empirical.records.ResultStore.lock`), so two
processes never train one run twice.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from empirical.checkpoints import (
    CHECKPOINT_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    CorruptCheckpointError,
    load_latest_checkpoint,
    read_checkpoint,
    read_checkpoint_bytes,
    remove_previous_checkpoint,
    write_checkpoint,
)
from empirical.config import RunConfig, expand_grid, load_config
from empirical.data import (
    Dataset,
    EpochSampler,
    Inputs,
    TensorSplit,
    derive_seed,
    few_shot_subset,
    fixed_subset,
    load_dataset,
    random_crop_flip,
)
from empirical.models import TEXT_MODELS, build_model, encode_frozen_layers, tokenize_dataset
from empirical.optim import NormalizedSGDM
from empirical.records import CorruptRecordError, ResultStore
from empirical.svag import TrainSchedule, svag_loss

__all__ = [
    "CHANCE_MARGIN",
    "CHECKPOINT_NAME",
    "CURVE_COLUMNS",
    "RunResult",
    "at_least_float32",
    "cached_result",
    "claim_entry",
    "curve_columns",
    "evaluate",
    "evaluation_split",
    "finish_entry",
    "is_overflow",
    "load_final_checkpoint",
    "load_run_model",
    "make_optimizer",
    "outcome_warning",
    "prepare_dataset",
    "resolve_device",
    "run_experiment",
    "run_info",
    "run_metrics",
    "train_members",
    "train_run",
]

CURVE_COLUMNS = (
    "step",
    "epoch",
    "time",
    "lr",
    "train_loss_running",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "wall_s",
)


@dataclass(frozen=True)
class RunResult:
    """Outcome of one run: its store key and folder, status, final metrics and curves."""

    key: str
    name: str
    status: str
    metrics: dict[str, Any]
    curves: dict[str, list[float]]
    path: Path
    cached: bool = False


def resolve_device(device: str) -> torch.device:
    """``torch.device`` for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``ValueError`` if CUDA is asked for but absent."""
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda}); use device 'cpu' or install the CUDA build of torch (README)"
            )
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device(device)
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def prepare_dataset(config: RunConfig, device: torch.device) -> Dataset:
    """Load, subset (``data.train_subset``), few-shot-select, tokenize (text models), cast to ``train.dtype`` and
    move the data of ``config`` to ``device``.

    A text model with ``train_top_layers`` = :math:`k` > 0 gets the outputs of its frozen embeddings and lower
    layers (:func:`empirical.models.encode_frozen_layers`), computed here once for the whole run.
    """
    dataset = load_dataset(config.data.name, **config.data.options)
    if config.data.train_subset:
        dataset = dataclasses.replace(dataset, train=fixed_subset(dataset.train, config.data.train_subset))
    if config.data.few_shot_k:
        dataset = dataclasses.replace(
            dataset, train=few_shot_subset(dataset.train, config.data.few_shot_k, config.seed)
        )
    if config.model.name in TEXT_MODELS:
        options = config.model.options
        model_dir = options.get("model_dir", "minilm")
        dataset = tokenize_dataset(dataset, model_dir, options.get("max_length", 128))
        if options.get("train_top_layers"):  # the frozen lower layers run once, here, not at every step
            dataset = encode_frozen_layers(dataset, model_dir, options["train_top_layers"], device)
    dtype = getattr(torch, config.train.dtype)
    splits = []
    for split in (dataset.train, dataset.test):
        if (
            isinstance(split, TensorSplit)
            and isinstance(split.inputs, torch.Tensor)
            and split.inputs.is_floating_point()
        ):
            split = TensorSplit(split.inputs.to(dtype), split.targets)
        elif isinstance(split, TensorSplit) and isinstance(split.inputs, dict):
            inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in split.inputs.items()}
            split = TensorSplit(inputs, split.targets)
        splits.append(split)
    return dataclasses.replace(dataset, train=splits[0], test=splits[1]).to(device)


def make_optimizer(config: RunConfig, parameters: Sequence[torch.Tensor], momentum: float) -> torch.optim.Optimizer:
    """The optimizer of ``config`` at its initial effective rate (the loop sets each step's rate)."""
    opt = config.optimizer
    eta = opt.effective_lr
    if opt.name == "sgd":
        return torch.optim.SGD(parameters, lr=eta, weight_decay=opt.weight_decay)
    if opt.name == "pytorch_sgdm":
        return torch.optim.SGD(
            parameters, lr=opt.native_lr(eta), momentum=momentum, weight_decay=opt.weight_decay, nesterov=opt.nesterov
        )
    return NormalizedSGDM(parameters, lr=eta, momentum=momentum, weight_decay=opt.weight_decay, nesterov=opt.nesterov)


class _SubsetSplit:
    """The examples ``rows`` of ``split`` (for the fixed training subset that evaluation uses)."""

    def __init__(self, split: Any, rows: torch.Tensor) -> None:
        self.split, self.rows = split, rows

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Inputs, torch.Tensor]:
        return self.split.batch(self.rows[indices.to(self.rows.device)], generator)


def evaluation_split(split: Any, samples: int, label: str) -> Any:
    """The fixed subset of ``samples`` examples of ``split`` that evaluations use (all when 0 or too few).

    Drawn by a generator seeded from ``label`` alone, so every seed and optimizer is evaluated on the same
    examples; streamed training splits are read without augmentation.
    """
    if getattr(split, "streaming", False):
        split = dataclasses.replace(split, train=False)
    if not samples or samples >= len(split):
        return split
    generator = torch.Generator().manual_seed(derive_seed(0, label))
    rows = torch.sort(torch.randperm(len(split), generator=generator)[:samples]).values
    device = split.targets.device if isinstance(split, TensorSplit) else torch.device("cpu")
    return _SubsetSplit(split, rows.to(device))


def _to_device(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    return {name: value.to(device, non_blocking=True) for name, value in inputs.items()}


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in float32 if they are in a lower precision (bf16 autocast), else unchanged (float64 stays)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Any, batch_size: int, device: torch.device, amp_bf16: bool = False
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``split``, in batches of ``batch_size``."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    index_device = _index_device(split)
    try:
        for start in range(0, len(split), batch_size):
            indices = torch.arange(start, min(start + batch_size, len(split)), device=index_device)
            inputs, targets = split.batch(indices)
            inputs, targets = _to_device(inputs, device), targets.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_bf16):
                logits = model(inputs)
            loss_sum += F.cross_entropy(at_least_float32(logits), targets, reduction="sum").double()
            correct += (logits.argmax(dim=1) == targets).sum()
    finally:
        model.train(was_training)
    return float(loss_sum) / len(split), int(correct) / len(split)


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
        self.config, self.dataset, self.device, self.quiet = config, dataset, device, quiet
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
        self.model.train()
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
        }

    def save_checkpoint(self, path: Path) -> None:
        write_checkpoint(path, self.state())

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
        state = load_latest_checkpoint(folder, self.device, self._check_checkpoint)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = _Progress(**state["progress"])
        self.progress.resumed_from = self.progress.step
        return True

    # --------------------------------------------------------------------------------------- loop

    def _batch(self, step: int, stream: int) -> tuple[Inputs, torch.Tensor]:
        split = self.dataset.train
        indices = self.samplers[stream].indices(step)
        if getattr(split, "streaming", False):
            generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "augment", stream, step))
            inputs, targets = split.batch(indices, generator)
            return _to_device(inputs, self.device), targets.to(self.device, non_blocking=True)
        inputs, targets = split.batch(indices)
        if self.dataset.augmentation == "crop_flip":
            generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "augment", stream, step))
            inputs = random_crop_flip(inputs, generator)
        return inputs, targets

    def _evaluate_row(self, running: float) -> dict[str, float]:
        batch = self.config.train.eval_batch_size
        amp = self.config.train.amp_bf16
        train_loss, train_acc = evaluate(self.model, self.eval_train, batch, self.device, amp)
        test_loss, test_acc = evaluate(self.model, self.eval_test, batch, self.device, amp)
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
        config, progress, optimizer, model = self.config, self.progress, self.optimizer, self.model
        ell, amp, device_type = config.svag.ell, config.train.amp_bf16, self.device.type
        native_lr = config.optimizer.native_lr
        lrs = [self.schedule.lr_at(k) for k in range(self.steps)]
        streaming = getattr(self.dataset.train, "streaming", False)
        started = time.perf_counter() - progress.wall
        if progress.step == 0 and not progress.curves:
            progress.curves.append(self._evaluate_row(math.nan))
        bar = _progress_bar(self.steps, progress.step, config.name, self.quiet)
        pending: list[torch.Tensor] = []
        pending_from = progress.step
        next_sync = self._next_sync(progress.step)
        sde_time = progress.sde_time
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
                if amp:
                    with torch.autocast(device_type, dtype=torch.bfloat16):
                        losses = [F.cross_entropy(model(inputs), targets) for inputs, targets in batches]
                else:
                    losses = [F.cross_entropy(model(inputs), targets) for inputs, targets in batches]
                if ell == 1:
                    losses[0].backward()
                    pending.append(losses[0].detach())
                else:
                    svag_loss(losses[0], losses[1], ell).backward()
                    pending.extend(item.detach() for item in losses)
                try:
                    optimizer.step()
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
                    progress.curves.append(self._evaluate_row(running))
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
            return lambda step: [split.batch(sampler.indices(step))]
        return lambda step: self._batches(step, ell)

    def _batches(self, step: int, ell: int) -> list[tuple[Inputs, torch.Tensor]]:
        return [self._batch(step, stream) for stream in range(1 if ell == 1 else 2)]

    def _flush(self, pending: list[torch.Tensor], first_step: int, per_step: int, bar: Any, eta: float) -> int | None:
        """Fold the pending mini-batch losses into the running mean; the first non-finite one's step, if any."""
        if not pending:
            return None
        values = torch.stack(pending).double().cpu()
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            return first_step + int(torch.nonzero(~finite)[0, 0]) // per_step
        self.progress.window_sum += float(values.sum())
        self.progress.window_count += len(values)
        bar.update(len(values) // per_step)
        bar.set_postfix(loss=f"{float(values.mean()):.4f}", lr=f"{eta:.4g}", refresh=False)
        return None


def _index_device(split: Any) -> torch.device:
    """Where index tensors for ``split`` live: with the tensors of a held split, on the CPU for streamed ones."""
    if isinstance(split, _SubsetSplit):
        return split.rows.device
    return split.targets.device if isinstance(split, TensorSplit) else torch.device("cpu")


def _progress_bar(total: int, initial: int, name: str, quiet: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="step", disable=quiet, dynamic_ncols=True, leave=False)


def is_overflow(exc: BaseException) -> bool:
    """Whether an exception of an update step says a value overflowed its dtype (e.g. a learning rate of 1e300
    handed to float32 parameters: "value cannot be converted to type float without overflow")."""
    return isinstance(exc, OverflowError) or "overflow" in str(exc)


#: Metrics of an evaluation row that ``last_finite`` and the ``final_*`` metrics report.
_REPORTED = ("train_loss", "train_acc", "test_loss", "test_acc")
#: A completed run whose test accuracy is at most chance plus this margin, with its train loss above the initial
#: one, is reported as having learned nothing.
CHANCE_MARGIN = 0.05


def _last_finite(curves: Sequence[dict[str, float]]) -> dict[str, Any] | None:
    """The last evaluation whose reported values are all finite: its step and values, else ``None``."""
    for row in reversed(curves):
        if all(math.isfinite(row[name]) for name in _REPORTED):
            return {"step": int(row["step"]), **{name: row[name] for name in _REPORTED}}
    return None


def outcome_warning(
    status: str, curves: Sequence[dict[str, float]], diverged_at: int | None, num_classes: int | None
) -> str | None:
    """What a reader must know about a run's end beyond its status: divergence, or learning nothing."""
    if status == "diverged":
        last = _last_finite(curves)
        where = f"the last finite metrics are from step {last['step']}" if last else "no finite metrics"
        return f"diverged at step {diverged_at}; {where} (last_finite), the final_* metrics are None"
    if not curves or not num_classes:
        return None
    first, last = curves[0], curves[-1]
    chance = 1.0 / num_classes
    if last["train_loss"] > first["train_loss"] and last["test_acc"] <= chance + CHANCE_MARGIN:
        return (
            f"learned nothing: test accuracy {last['test_acc']:.4f} is at chance ({chance:.4f}) and the train loss "
            f"{last['train_loss']:.4g} ended above its initial {first['train_loss']:.4g}"
        )
    return None


def run_metrics(
    config: RunConfig,
    schedule: TrainSchedule,
    steps_completed: int,
    curves: Sequence[dict[str, float]],
    diverged_at: int | None,
    sampler: EpochSampler,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """The ``metrics`` of a run's record (shared by the loop and the ensemble so their records agree).

    A diverged run (``diverged_at`` not ``None``) has ``steps_completed == diverged_at``, ``final_*`` = ``None``
    and its last finite evaluation in ``last_finite``, so a number from before divergence is never read as final.
    """
    status = "completed" if diverged_at is None else "diverged"
    if diverged_at is not None:
        steps_completed = diverged_at
    last = curves[-1] if curves and diverged_at is None else {}
    test_accs = [row["test_acc"] for row in curves if math.isfinite(row["test_acc"])]
    return {
        "steps_total": schedule.steps,
        "steps_completed": steps_completed,
        "diverged_at_step": diverged_at,
        "effective_lr": config.optimizer.effective_lr,
        "native_lr": config.optimizer.native_lr(config.optimizer.effective_lr),
        "svag_effective_lr": schedule.lr,
        "momentum": schedule.momentum,
        "batch_size": config.train.batch_size,
        "ell": config.svag.ell,
        "final_train_loss": last.get("train_loss"),
        "final_train_acc": last.get("train_acc"),
        "final_test_loss": last.get("test_loss"),
        "final_test_acc": last.get("test_acc"),
        "best_test_acc": max(test_accs) if test_accs else None,
        "last_finite": _last_finite(curves),
        "warning": outcome_warning(status, curves, diverged_at, num_classes),
        "batch_order_sha256": sampler.digest(steps_completed),
    }


def run_info(
    config: RunConfig, dataset: Dataset, device: torch.device, model: nn.Module, wall: float, **extra: Any
) -> dict[str, Any]:
    """The ``info`` of a run's record: seed, device, wall time, sizes, and ``extra`` (engine, resumption)."""
    return {
        "name": config.name,
        "seed": config.seed,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "wall_time_s": wall,
        "train_size": len(dataset.train),
        "test_size": len(dataset.test),
        "steps_per_epoch": len(dataset.train) // config.train.batch_size,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        **extra,
    }


def curve_columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    return {column: [row[column] for row in rows] for column in CURVE_COLUMNS}


def cached_result(store: ResultStore, config: RunConfig) -> RunResult | None:
    """The finished run of ``config`` in ``store`` (intact record), ``None`` if there is none; a damaged entry
    raises :class:`empirical.records.CorruptRecordError`."""
    record = store.load(config.identity())
    if record is None or record.status not in ("completed", "diverged"):
        return None
    return RunResult(
        record.key, config.name, record.status, record.metrics, record.curves, store.entry_dir(record.key), True
    )


def claim_entry(
    store: ResultStore, config: RunConfig, *, recompute: bool = False, discard_corrupt: bool = False
) -> RunResult | None:
    """The finished run to reuse, or ``None`` when it must be trained; call it holding the entry's lock.

    ``recompute`` discards the entry (record, curves, checkpoints) first.  A damaged entry (edited or truncated
    value or file, missing key) is discarded with a message on stderr when ``discard_corrupt`` is set (figure
    builds), else raises :class:`empirical.records.CorruptRecordError` naming its folder (``mvm train`` then
    points to ``--recompute``): it is never used, and never deleted by hand.
    """
    if recompute:
        store.discard(config.identity())
        return None
    try:
        return cached_result(store, config)
    except CorruptRecordError as exc:
        if not discard_corrupt:
            raise
        print(f"cache: discarding a corrupted entry and recomputing it: {exc}", file=sys.stderr, flush=True)
        store.discard(config.identity())
        return None


def finish_entry(
    store: ResultStore,
    config: RunConfig,
    *,
    status: str,
    metrics: dict[str, Any],
    curves: dict[str, list[float]],
    info: dict[str, Any],
) -> RunResult:
    """Write a finished run's record; it stands for (and its digest covers) the checkpoint left in the folder."""
    folder = store.entry_dir(config.identity())
    remove_previous_checkpoint(folder)
    files = [CHECKPOINT_NAME] if (folder / CHECKPOINT_NAME).is_file() else []
    record = store.save(config.identity(), status=status, metrics=metrics, curves=curves, info=info, files=files)
    return RunResult(record.key, config.name, status, record.metrics, record.curves, folder)


def load_final_checkpoint(store: ResultStore, result: RunResult, map_location: Any = "cpu") -> dict[str, Any]:
    """The final checkpoint of a finished run, read once and checked against its record's SHA-256 and its own
    digest (``weights_only=True``).  :class:`empirical.records.CorruptRecordError` if anything differs."""
    record = store.load(result.key)
    if record is None:
        raise CorruptRecordError(f"{result.path}: the run's record is gone")
    data = store.read_file(record, CHECKPOINT_NAME)
    try:
        return read_checkpoint_bytes(data, str(result.path / CHECKPOINT_NAME), map_location)
    except CorruptCheckpointError as exc:
        raise CorruptRecordError(str(exc)) from exc


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
    with store.lock(config.identity()):
        cached = claim_entry(store, config, recompute=recompute, discard_corrupt=discard_corrupt)
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
    if not resume and any((folder / name).exists() for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME)):
        raise ValueError(
            f"{checkpoint} holds an unfinished run of this config: pass --resume to continue it, "
            "or --recompute to start over"
        )
    run = _Run(config, dataset if dataset is not None else prepare_dataset(config, device), device, quiet)
    if resume:
        run.load_checkpoint(folder)
    diverged_at = run.train(checkpoint if run.checkpoint_every else None)
    status = "completed" if diverged_at is None else "diverged"
    if status == "completed" and final_checkpoint:
        run.save_checkpoint(checkpoint)  # the final parameters, for diagnostics at the end of training
    elif not final_checkpoint:
        checkpoint.unlink(missing_ok=True)
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
        ),
    )


def run_experiment(
    config: RunConfig | str | Path,
    *,
    device: str | None = None,
    seed: int | None = None,
    resume: bool = False,
    out: str | Path = "runs",
    quiet: bool = False,
    recompute: bool = False,
) -> list[RunResult]:
    """Run the experiment of a config (file or object): one run, or every member of its ``[grid]``.

    ``device`` and ``seed`` override the config's; ``recompute`` discards stored entries and trains again.
    Members of a grid with ``vectorize = true`` that differ
    only in learning rate, momentum, weight decay, SGD/normalized SGDM or seed are trained together as one
    ``torch.func`` ensemble (:func:`empirical.ensemble.train_ensemble`); the others run one after another.
    Every member's record has the key of the same run configured on its own.
    """
    if not isinstance(config, RunConfig):
        config = load_config(config)
    overrides: dict[str, Any] = {}
    if device is not None:
        overrides["device"] = device
    if seed is not None:
        overrides["seed"] = seed
    config = dataclasses.replace(config, **overrides)
    return train_members(
        expand_grid(config), resume=resume, out=out, quiet=quiet, vectorize=config.vectorize, recompute=recompute
    )


def train_members(
    members: Sequence[RunConfig],
    *,
    resume: bool = False,
    out: str | Path = "runs",
    quiet: bool = False,
    vectorize: bool = True,
    recompute: bool = False,
    discard_corrupt: bool = False,
    final_checkpoints: bool = True,
) -> list[RunResult]:
    """Train a list of runs (finished records reused), results in the order of ``members``.

    ``recompute`` and ``discard_corrupt``: see :func:`claim_entry` (a damaged entry raises without them).
    ``final_checkpoints=False``: runs trained one by one keep no checkpoint once finished (see :func:`train_run`).

    With ``vectorize`` the unfinished members that differ only in learning rate, momentum, weight decay,
    SGD/normalized SGDM or seed train together as one ``torch.func`` ensemble
    (:func:`empirical.ensemble.train_ensemble`); the others run one after another with :func:`train_run`.
    Datasets are prepared once per distinct data/model/dtype (and few-shot seed) on the members' device.
    """
    members = list(members)
    results: dict[int, RunResult] = {}
    datasets: dict[str, Dataset] = {}

    def data_for(member: RunConfig) -> Dataset:
        key = repr(
            (
                member.data,
                member.model.name,
                member.model.options,
                member.train.dtype,
                member.device,
                member.seed if member.data.few_shot_k else None,
            )
        )
        if key not in datasets:
            datasets[key] = prepare_dataset(member, resolve_device(member.device))
        return datasets[key]

    store = ResultStore(out)
    pending = []
    for index, member in enumerate(members):
        with store.lock(member.identity()):
            cached = claim_entry(store, member, recompute=recompute, discard_corrupt=discard_corrupt)
        if cached is not None:
            results[index] = cached
        else:
            pending.append(index)
    if vectorize:
        from empirical.ensemble import train_ensemble, vectorizable_groups

        for group in vectorizable_groups([members[i] for i in pending]):
            if len(group) > 1:
                indices = [pending[i] for i in group]
                group_members = [members[i] for i in indices]
                outcomes = train_ensemble(
                    group_members,
                    out=out,
                    quiet=quiet,
                    dataset=data_for(group_members[0]),
                    resume=resume,
                    discard_corrupt=discard_corrupt,
                    recompute=recompute,
                )
                results.update(zip(indices, outcomes, strict=True))
    for index in pending:
        if index not in results:
            member = members[index]
            results[index] = train_run(
                member,
                out=out,
                resume=resume,
                quiet=quiet,
                dataset=data_for(member),
                discard_corrupt=discard_corrupt,
                final_checkpoint=final_checkpoints,
            )
    return [results[i] for i in range(len(members))]


def load_run_model(path: str | Path, device: str = "cpu") -> tuple[RunConfig, nn.Module, Dataset]:
    """Config, model (parameters of the checkpoint) and data of a run folder or of its ``checkpoint.pt``.

    For diagnostics at a checkpoint (:mod:`empirical.diagnostics`).  The checkpoint is read with
    ``weights_only=True`` and its digest checked; the final checkpoint of a finished run is also checked against
    its record (:func:`load_final_checkpoint`).
    """
    path = Path(path)
    checkpoint = path / CHECKPOINT_NAME if path.is_dir() else path
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    folder = checkpoint.parent
    store = ResultStore(folder.parent)
    record = (
        store.load(folder.name)
        if checkpoint.name == CHECKPOINT_NAME and (folder / store.record_name).exists()
        else None
    )
    if record is not None and CHECKPOINT_NAME in record.files:
        result = RunResult(record.key, "", record.status, record.metrics, record.curves, folder)
        state = load_final_checkpoint(store, result)
    else:
        state = read_checkpoint(checkpoint)
    config = RunConfig.from_identity(state["config"])
    torch_device = resolve_device(device)
    config = dataclasses.replace(config, device=device)
    dataset = prepare_dataset(config, torch_device)
    model = build_model(config.model.name, dataset, config.seed, **config.model.options)
    model.to(device=torch_device, dtype=getattr(torch, config.train.dtype))
    model.load_state_dict(state["model"])
    return config, model, dataset
