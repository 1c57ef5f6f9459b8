r"""The pieces of a training run that the single-run loop (:mod:`empirical.train`) and the ensemble
(:mod:`empirical.ensemble`) share, so that the records of both engines agree.

Device and data preparation (:func:`resolve_device`, :func:`prepare_dataset`), the optimizer of a config
(:func:`make_optimizer`), the fixed evaluation subsets and their evaluation (:func:`evaluation_split`,
:func:`evaluate`), the record's metrics, info and curves (:func:`run_metrics`, :func:`run_info`,
:func:`curve_columns`: divergence reported through ``diverged_at_step``, ``last_finite`` and ``warning``), and
the run store's entry protocol: :func:`claim_entry` (reuse a finished record, discard a damaged one),
:func:`finish_entry` (write the record covering the final ``checkpoint.pt``), :func:`load_final_checkpoint` and
:func:`load_run_model` (config, model and data of a run folder, for :mod:`empirical.diagnostics`).

This module imports neither :mod:`empirical.train` nor :mod:`empirical.ensemble` (tested in
``tests/test_layering.py``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from empirical import distributed
from empirical.checkpoints import (
    CHECKPOINT_NAME,
    CorruptCheckpointError,
    read_checkpoint,
    read_checkpoint_bytes,
    remove_previous_checkpoint,
)
from empirical.config import RunConfig
from empirical.data import (
    Dataset,
    EpochSampler,
    Inputs,
    TensorSplit,
    derive_seed,
    few_shot_subset,
    fixed_subset,
    load_dataset,
)
from empirical.models import TEXT_MODELS, build_model, encode_frozen_layers, tokenize_dataset
from empirical.optim import NormalizedSGDM
from empirical.precision import autocast, inputs_channels_last
from empirical.records import CorruptRecordError, ResultStore
from empirical.svag import TrainSchedule

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
    "run_info",
    "run_metrics",
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
    """``torch.device`` for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``ValueError`` if CUDA is asked for but absent.

    In a data-parallel run ``"cuda"`` is this rank's ``cuda:LOCAL_RANK`` (:mod:`empirical.distributed`).
    """
    device = distributed.local_device(device)
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda}); use device 'cpu' or install the CUDA build of torch "
                "(docs/guide/install.md)"
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
    model: nn.Module,
    split: Any,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``split``, in batches of ``batch_size``.

    ``precision`` and ``channels_last``: as in training (:mod:`empirical.precision`), so an evaluation measures the
    function that was trained; the loss is summed in float64 from logits in at least float32.
    """
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
            if channels_last:
                inputs = inputs_channels_last(inputs)
            with autocast(device.type, precision):
                logits = model(inputs)
            loss_sum += F.cross_entropy(at_least_float32(logits), targets, reduction="sum").double()
            correct += (logits.argmax(dim=1) == targets).sum()
    finally:
        model.train(was_training)
    return float(loss_sum) / len(split), int(correct) / len(split)


def _index_device(split: Any) -> torch.device:
    """Where index tensors for ``split`` live: with the tensors of a held split, on the CPU for streamed ones."""
    if isinstance(split, _SubsetSplit):
        return split.rows.device
    return split.targets.device if isinstance(split, TensorSplit) else torch.device("cpu")


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
    """The ``info`` of a run's record: seed, device, wall time, sizes, how it computed (``precision``,
    ``channels_last``, ``compile``: not part of the key where they do not change the function) and ``extra``
    (engine, resumption)."""
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
        "dtype": config.train.dtype,
        "precision": config.train.precision,
        "channels_last": config.train.channels_last,
        "compile": config.train.compile,
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
