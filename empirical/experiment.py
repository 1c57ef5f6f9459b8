"""The experiment driver: the runs of a config (one, or every member of its ``[grid]``), each trained by the
single-run loop (:func:`empirical.train.train_run`) or, where members can share one, by a vectorised ensemble
(:func:`empirical.ensemble.train_ensemble`); finished records in the run store are reused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirical import distributed
from empirical.config import RunConfig, expand_grid, load_config
from empirical.data import Dataset
from empirical.ensemble import train_ensemble, vectorizable_groups
from empirical.records import ResultStore
from empirical.run import RunResult, claim_entry, prepare_dataset, resolve_device
from empirical.train import train_run

__all__ = ["run_experiment", "train_members"]


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
    In a data-parallel run (:mod:`empirical.distributed`) every member runs on its own, sharded over the ranks.
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
            datasets[key] = distributed.rank0_first(lambda: prepare_dataset(member, resolve_device(member.device)))
        return datasets[key]

    store = ResultStore(out)
    pending = []
    vectorize = vectorize and not distributed.is_distributed()  # data-parallel runs train members one by one

    def claim(member: RunConfig) -> RunResult | None:
        with store.lock(member.identity()):
            return claim_entry(store, member, recompute=recompute, discard_corrupt=discard_corrupt)

    for index, member in enumerate(members):
        cached = distributed.on_rank0(lambda member=member: claim(member))
        if cached is not None:
            results[index] = cached
        else:
            pending.append(index)
    if vectorize:
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
