r"""Many small runs trained together as one vectorised ensemble (``torch.func``: ``functional_call`` + ``vmap``).

Members are :class:`empirical.config.RunConfig` runs that share data, model architecture, batch size,
schedule shape and SVAG factor, and differ in seed (initialisation and batch order), effective learning
rate, momentum, weight decay and SGD / normalized SGDM.  Their parameters are stacked along a leading
member axis (``stack_module_state``); one ``vmap``-ed forward pass evaluates every member on its own
mini-batch, one backward pass gives every member's gradient (of the SVAG loss :func:`empirical.svag.svag_loss`
when :math:`\ell>1`), and the update is :func:`empirical.optim.normalized_sgdm_update_`, the arithmetic of
:class:`empirical.optim.NormalizedSGDM` (paper eq. (3)), with per-member hyper-parameters:

.. math:: g^{(i)}_k=\nabla\mathcal L^{(i)}_{\omega^{(i)}_k}(x^{(i)}_k)+\lambda_i x^{(i)}_k,\qquad
          m^{(i)}_{k+1}=\beta_i m^{(i)}_k+(1-\beta_i)g^{(i)}_k,\qquad
          x^{(i)}_{k+1}=x^{(i)}_k-\eta^{(i)}_k m^{(i)}_{k+1},

SGD being :math:`\beta_i=0`.  Each member uses the same seeded batches, initialisation, schedule and
evaluations as its separate run, so its record (written under the same key) agrees with the separate
run's to floating-point tolerance (tested).

Every ``train.checkpoint_every`` the ensemble writes one checkpoint of the whole group (stacked parameters and
momenta, step, curves, running sums; :mod:`empirical.checkpoints`) in a store entry of its own, keyed by the
members' keys; ``resume=True`` continues a killed ensemble from it to the same numbers bit for bit, and the entry
is removed once every member's record is written.  Training holds the lock of every member's entry.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from empirical.checkpoints import CorruptCheckpointError, load_latest_checkpoint, write_checkpoint
from empirical.config import RunConfig
from empirical.data import Dataset, EpochSampler, TensorSplit, derive_seed, random_crop_flip
from empirical.models import build_model
from empirical.optim import normalized_sgdm_update_
from empirical.records import ResultStore
from empirical.run import (
    CHECKPOINT_NAME,
    RunResult,
    at_least_float32,
    claim_entry,
    curve_columns,
    evaluation_split,
    finish_entry,
    prepare_dataset,
    resolve_device,
    run_info,
    run_metrics,
)
from empirical.svag import TrainSchedule, svag_loss

__all__ = [
    "VECTORIZABLE_MODELS",
    "VECTORIZABLE_OPTIMIZERS",
    "ensemble_checkpoint_identity",
    "train_ensemble",
    "vectorizable_groups",
]

VECTORIZABLE_MODELS = ("mlp", "small_cnn")  # no batch-norm running statistics to mutate under vmap
VECTORIZABLE_OPTIMIZERS = ("sgd", "normalized_sgdm")


def _group_signature(config: RunConfig) -> str | None:
    """What members of one ensemble must share, or ``None`` if the run cannot join an ensemble."""
    opt = config.optimizer
    if config.model.name not in VECTORIZABLE_MODELS or opt.name not in VECTORIZABLE_OPTIMIZERS or opt.nesterov:
        return None
    train = config.train
    if config.data.name == "image_folder" or train.precision != "fp32" or train.channels_last or train.compile:
        return None
    identity = config.identity()
    identity.pop("seed")
    identity["optimizer"] = None
    return repr(identity)


def vectorizable_groups(members: Sequence[RunConfig]) -> list[list[int]]:
    """Indices of ``members`` grouped into ensembles that can train together (singletons run alone)."""
    groups: dict[str, list[int]] = {}
    singles = []
    for index, member in enumerate(members):
        signature = _group_signature(member)
        if signature is None:
            singles.append([index])
        else:
            groups.setdefault(signature, []).append(index)
    return list(groups.values()) + singles


class _EnsembleData:
    """Batches of every member at one step: stacked indices (members, batch), member-specific augmentation."""

    def __init__(self, members: Sequence[RunConfig], dataset: Dataset, stream: int, device: torch.device) -> None:
        split = dataset.train
        self.split, self.members, self.stream = split, members, stream
        self.augment = dataset.augmentation == "crop_flip"
        batch = members[0].train.batch_size
        self.samplers = [EpochSampler(len(split), batch, m.seed, stream, device) for m in members]
        self.batch = batch
        self._epoch, self._orders = -1, torch.empty(0)

    def batches(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position = divmod(step, self.samplers[0].steps_per_epoch)
        if epoch != self._epoch:
            self._orders = torch.stack([s.permutation(epoch) for s in self.samplers]).to(self.split.targets.device)
            self._epoch = epoch
        indices = self._orders[:, position * self.batch : (position + 1) * self.batch]
        inputs, targets = self.split.batch(indices)
        if self.augment:
            inputs = torch.stack(
                [
                    random_crop_flip(
                        x, torch.Generator().manual_seed(derive_seed(m.seed, "augment", self.stream, step))
                    )
                    for x, m in zip(inputs, self.members, strict=True)
                ]
            )
        return inputs, targets


class _Ensemble:
    def __init__(self, members: Sequence[RunConfig], dataset: Dataset, device: torch.device) -> None:
        self.members, self.dataset, self.device = list(members), dataset, device
        first = members[0]
        train_size = len(dataset.train)
        self.schedules: list[TrainSchedule] = [m.schedule(train_size) for m in members]
        self.steps = self.schedules[0].steps
        self.ell = first.svag.ell
        self.steps_per_epoch = train_size // first.train.batch_size
        self.eval_every = self.ell * first.train.to_steps(first.train.eval_every, train_size, "eval_every")
        dtype = getattr(torch, first.train.dtype)
        models = [
            build_model(m.model.name, dataset, m.seed, **m.model.options).to(device=device, dtype=dtype)
            for m in members
        ]
        self.template = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(models)
        self.names = list(params)
        self.params = [params[name].detach().requires_grad_(True) for name in self.names]
        self.buffers = buffers
        self.momenta = [torch.zeros_like(p) for p in self.params]
        table = [[s.lr_at(k) for s in self.schedules] for k in range(self.steps)]
        self.lr_table = torch.tensor(table, dtype=dtype, device=device)
        self.lr_float64 = torch.tensor(table, dtype=torch.float64)  # exact Python values for the curves
        # per-member hyper-parameters, one value per member (normalized_sgdm_update_ broadcasts them)
        self.beta = torch.tensor([s.momentum for s in self.schedules], dtype=dtype, device=device)
        decay = torch.tensor([m.optimizer.weight_decay for m in members], dtype=dtype, device=device)
        self.decay = decay if bool((decay != 0).any()) else None
        self.index_device = dataset.train.targets.device
        self.data = [_EnsembleData(members, dataset, stream, device) for stream in range(1 if self.ell == 1 else 2)]
        self.eval_train = evaluation_split(dataset.train, first.train.eval_train_samples, "eval-train")
        self.eval_test = evaluation_split(dataset.test, first.train.eval_test_samples, "eval-test")
        self._train_logits = vmap(self._member_logits, in_dims=(0, 0, 0))  # each member on its own batch
        self._logits = vmap(self._member_logits, in_dims=(0, 0, None))  # every member on the same inputs

    def _member_logits(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], inputs: torch.Tensor):
        return functional_call(self.template, (params, buffers), (inputs,), tie_weights=False)

    def _losses(self, params: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every member on its batch, shape (members,); the loss itself outside vmap."""
        logits = self._train_logits(params, self.buffers, inputs)
        per_example = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return per_example.view(targets.shape).mean(dim=1)

    def step(self, step: int) -> torch.Tensor:
        """One step of every member; returns the mini-batch losses, shape (streams, members)."""
        params = dict(zip(self.names, self.params, strict=True))
        losses = torch.stack([self._losses(params, *data.batches(step)) for data in self.data])
        objective = (losses[0] if self.ell == 1 else svag_loss(losses[0], losses[1], self.ell)).sum()
        grads = list(torch.autograd.grad(objective, self.params))
        normalized_sgdm_update_(
            self.params, grads, self.momenta, lr=self.lr_table[step], momentum=self.beta, weight_decay=self.decay
        )
        return losses.detach()

    @torch.no_grad()
    def evaluate(self, split: Any, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member mean loss and accuracy (float64 tensors of shape (members,))."""
        params = dict(zip(self.names, self.params, strict=True))
        count = len(split)
        loss_sum = torch.zeros(len(self.members), dtype=torch.float64, device=self.device)
        correct = torch.zeros(len(self.members), dtype=torch.float64, device=self.device)
        for start in range(0, count, batch_size):
            chunk = torch.arange(start, min(start + batch_size, count), device=self.index_device)
            inputs, targets = split.batch(chunk)
            logits = self._logits(params, self.buffers, inputs)  # (members, examples, classes)
            targets = targets.expand(len(self.members), -1)
            loss_sum += (
                F.cross_entropy(at_least_float32(logits).transpose(1, 2), targets, reduction="none").double().sum(1)
            )
            correct += (logits.argmax(dim=2) == targets).double().sum(1)
        return loss_sum / count, correct / count

    def checkpoint_state(self, progress: dict[str, Any]) -> dict[str, Any]:
        """Everything a resumed ensemble needs besides its (deterministic) data: stacked parameters, momenta."""
        return {
            "config": ensemble_checkpoint_identity(self.members),
            "params": [p.detach().clone() for p in self.params],
            "momenta": [m.clone() for m in self.momenta],
            "progress": progress,
        }

    def check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Raise :class:`CorruptCheckpointError` unless ``state`` is a checkpoint of this very ensemble."""
        types = {"config": dict, "params": list, "momenta": list, "progress": dict}
        if any(not isinstance(state.get(name), kind) for name, kind in types.items()):
            raise CorruptCheckpointError(f"{path}: lacks the fields of an ensemble checkpoint")
        if state["config"] != ensemble_checkpoint_identity(self.members):
            raise CorruptCheckpointError(f"{path}: holds another ensemble than its folder's")
        shapes = [tuple(p.shape) for p in self.params]
        for name in ("params", "momenta"):
            if [tuple(getattr(t, "shape", ())) for t in state[name]] != shapes:
                raise CorruptCheckpointError(f"{path}: its {name} do not fit this ensemble")
        progress = state["progress"]
        if not isinstance(progress, dict) or set(progress) != set(_PROGRESS_FIELDS):
            raise CorruptCheckpointError(f"{path}: its progress fields differ from this version's")
        count = len(self.members)
        sized = all(
            isinstance(progress[name], list) and len(progress[name]) == count for name in ("curves", "diverged")
        )
        sums = all(
            isinstance(progress[name], torch.Tensor) and tuple(progress[name].shape) == (count,)
            for name in ("window_sum", "sde_time")
        )
        if not (sized and sums):
            raise CorruptCheckpointError(f"{path}: its progress does not fit {count} members")
        step = progress["step"]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 < step <= self.steps:
            raise CorruptCheckpointError(f"{path}: step {progress['step']} outside 1..{self.steps}")

    def restore(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for target, value in zip(self.params, state["params"], strict=True):
                target.copy_(value)
            for target, value in zip(self.momenta, state["momenta"], strict=True):
                target.copy_(value)

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        state = {name: p[index].detach().clone() for name, p in zip(self.names, self.params, strict=True)}
        state.update({name: b[index].clone() for name, b in self.buffers.items()})
        return state


_PROGRESS_FIELDS = ("step", "curves", "diverged", "window_sum", "window_count", "sde_time", "wall")


def ensemble_checkpoint_identity(members: Sequence[RunConfig]) -> dict[str, Any]:
    """The store config under which a group's checkpoint lives: the members' identities, in order."""
    return {"ensemble_checkpoint": [member.identity() for member in members]}


def train_ensemble(
    members: Sequence[RunConfig],
    *,
    out: str | Path = "runs",
    quiet: bool = False,
    dataset: Dataset | None = None,
    resume: bool = False,
    discard_corrupt: bool = False,
    recompute: bool = False,
) -> list[RunResult]:
    """Train ``members`` together and write one record per member (the key of its separate run).

    Members must form one group of :func:`vectorizable_groups`; finished records are returned as they are
    (and the rest trained).  ``dataset`` may pass data already prepared for the members.  ``resume``
    continues a killed ensemble from its checkpoint (without it, a checkpoint left by a killed ensemble is an
    error); ``recompute`` discards the members' entries and the group's checkpoint first; ``discard_corrupt``: see
    :func:`empirical.run.claim_entry`.
    """
    members = list(members)
    if not members:
        raise ValueError("an ensemble needs at least one member")
    groups = vectorizable_groups(members)
    if len(groups) != 1 or _group_signature(members[0]) is None:
        raise ValueError(
            "ensemble members must share data, model, batch size, schedule shape, SVAG factor and device, use a "
            f"model in {VECTORIZABLE_MODELS} and an optimizer in {VECTORIZABLE_OPTIMIZERS} without Nesterov; "
            f"these members split into {len(groups)} groups"
        )
    store = ResultStore(out)
    with contextlib.ExitStack() as locks:
        for key in sorted({store.key(m.identity()) for m in members}):  # one global order: no deadlock
            locks.enter_context(store.lock(key))
        done = {
            i: claim_entry(store, m, recompute=recompute, discard_corrupt=discard_corrupt)
            for i, m in enumerate(members)
        }
        todo = [i for i, result in done.items() if result is None]
        if todo:
            device = resolve_device(members[0].device)
            data = dataset if dataset is not None else prepare_dataset(members[0], device)
            if not isinstance(data.train, TensorSplit):
                raise ValueError("an ensemble needs data held as tensors")
            todo_members = [members[i] for i in todo]
            group = ensemble_checkpoint_identity(todo_members)
            locks.enter_context(store.lock(group))
            if recompute:
                store.discard(group)
            trained = _train(todo_members, data, device, store, quiet, store.entry_dir(group), resume)
            store.discard(group)  # every member's record is written: the group checkpoint has served
            done.update(zip(todo, trained, strict=True))
    return [done[i] for i in range(len(members))]  # type: ignore[misc]


def _train(
    members: list[RunConfig],
    dataset: Dataset,
    device: torch.device,
    store: ResultStore,
    quiet: bool,
    checkpoint_folder: Path,
    resume: bool,
) -> list[RunResult]:
    from tqdm.auto import tqdm

    ensemble = _Ensemble(members, dataset, device)
    first = members[0]
    count = len(members)
    log_every, batch = first.train.log_every, first.train.eval_batch_size
    train_size = len(dataset.train)
    checkpoint_every = ensemble.ell * first.train.to_steps(first.train.checkpoint_every, train_size, "checkpoint_every")
    checkpoint_path = checkpoint_folder / CHECKPOINT_NAME
    if not resume and checkpoint_folder.exists():
        raise ValueError(
            f"{checkpoint_folder} holds the checkpoint of an unfinished ensemble of these runs: pass --resume to "
            "continue it, or --recompute to start over"
        )
    state = load_latest_checkpoint(checkpoint_folder, device, ensemble.check_checkpoint) if resume else None
    curves: list[list[dict[str, float]]] = [[] for _ in members]
    diverged: list[int | None] = [None] * count
    window_sum = torch.zeros(count, dtype=torch.float64)
    window_count = 0
    sde_time = torch.zeros(count, dtype=torch.float64)
    first_step, wall_before = 0, 0.0
    if state is not None:
        ensemble.restore(state)
        progress = state["progress"]
        first_step, curves, diverged = progress["step"], progress["curves"], progress["diverged"]
        window_sum, window_count = progress["window_sum"].cpu(), progress["window_count"]
        sde_time, wall_before = progress["sde_time"].cpu(), progress["wall"]
    lr_rows = ensemble.lr_float64
    started = time.perf_counter() - wall_before

    def record_row(step: int, running: torch.Tensor) -> None:
        train_loss, train_acc = ensemble.evaluate(ensemble.eval_train, batch)
        test_loss, test_acc = ensemble.evaluate(ensemble.eval_test, batch)
        values = [t.cpu().tolist() for t in (train_loss, train_acc, test_loss, test_acc)]
        wall = time.perf_counter() - started
        lr = lr_rows[min(step, ensemble.steps - 1)].tolist()
        for i in range(count):
            if diverged[i] is None:
                curves[i].append({
                    "step": step, "epoch": step / (ensemble.steps_per_epoch * ensemble.ell),
                    "time": float(sde_time[i]), "lr": lr[i], "train_loss_running": float(running[i]),
                    "train_loss": values[0][i], "train_acc": values[1][i],
                    "test_loss": values[2][i], "test_acc": values[3][i], "wall_s": wall,
                })  # fmt: skip

    if state is None:
        record_row(0, torch.full((count,), float("nan")))
    pending: list[torch.Tensor] = []
    pending_from = first_step
    bar = tqdm(total=ensemble.steps, initial=first_step, desc=f"ensemble of {count}", unit="step", disable=quiet,
               leave=False)  # fmt: skip
    try:
        for step in range(first_step, ensemble.steps):
            pending.append(ensemble.step(step))
            sde_time += lr_rows[step]
            done = step + 1
            due_eval = done % ensemble.eval_every == 0 or done == ensemble.steps
            due_checkpoint = bool(checkpoint_every) and done % checkpoint_every == 0 and done < ensemble.steps
            if due_eval or due_checkpoint or done % log_every == 0:
                values = torch.stack(pending).double().cpu()  # (steps, streams, members)
                bar.update(len(pending))
                finite = torch.isfinite(values).flatten(0, 1)
                for i in range(count):
                    if diverged[i] is None and not bool(finite[:, i].all()):
                        diverged[i] = pending_from + int(torch.nonzero(~finite[:, i])[0, 0]) // len(ensemble.data)
                window_sum += values.sum(dim=(0, 1))
                window_count += values.shape[0] * values.shape[1]
                pending, pending_from = [], done
                if all(d is not None for d in diverged):
                    break
                if due_eval:
                    record_row(done, window_sum / window_count)
                    window_sum.zero_()
                    window_count = 0
                if due_checkpoint:
                    progress = {
                        "step": done, "curves": curves, "diverged": diverged, "window_sum": window_sum.clone(),
                        "window_count": window_count, "sde_time": sde_time.clone(),
                        "wall": time.perf_counter() - started,
                    }  # fmt: skip
                    write_checkpoint(checkpoint_path, ensemble.checkpoint_state(progress))
    finally:
        bar.close()
    wall = time.perf_counter() - started
    results = []
    for i, member in enumerate(members):
        status = "completed" if diverged[i] is None else "diverged"
        model = build_model(member.model.name, dataset, member.seed, **member.model.options)
        model.to(device=device, dtype=getattr(torch, member.train.dtype)).load_state_dict(ensemble.member_state(i))
        folder = store.entry_dir(member.identity())
        steps = ensemble.steps if diverged[i] is None else diverged[i]
        if status == "completed":
            write_checkpoint(
                folder / CHECKPOINT_NAME,
                {"config": member.identity(), "model": model.state_dict(), "progress": {"step": steps}},
            )
        metrics = run_metrics(
            member,
            ensemble.schedules[i],
            steps,
            curves[i],
            diverged[i],
            ensemble.data[0].samplers[i],
            dataset.num_classes,
        )
        info = run_info(
            member, dataset, device, model, wall, engine="ensemble", ensemble_size=count,
            resumed_from_step=first_step if state is not None else None,
        )  # fmt: skip
        results.append(
            finish_entry(store, member, status=status, metrics=metrics, curves=curve_columns(curves[i]), info=info)
        )
    return results
