r"""The verifier's power: how often each claim check fails an SGDM with a known error, and how often the reference.

Two kinds of error of the simulated SGDM (``MethodSet.sgdm``), each at relative sizes :math:`\epsilon`:

* ``learning_rate``: eq. (3) run at :math:`(1+\epsilon)\eta` (:func:`proofs_check.methods.lr_error_mutant`);
* ``noise_variance``: gradient-noise variance :math:`(1+\epsilon)\sigma^2`
  (:func:`proofs_check.methods.noise_variance_mutant`).

For every seed the claims are run with that seed replacing their fixed one (:func:`proofs_check.run_all`), on the
mutant and on :data:`~proofs_check.methods.REFERENCE`.  The *detection rate* of a sub-result at a size is the
fraction of seeds on which it fails; its *false-failure rate* the fraction of seeds on which the reference fails it.
Each (kind, size, seed, claim) task is stored as it finishes (:class:`PowerStore`, JSON with a SHA-256 digest, never
pickle), so a killed study resumes without losing finished work.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from proofs_check.methods import REFERENCE, MethodSet, lr_error_mutant, noise_variance_mutant
from proofs_check.registry import run_all, select_claims
from proofs_check.verdicts import only_fields

__all__ = [
    "ERROR_KINDS",
    "POWER_STUDY_VERSION",
    "PowerStore",
    "PowerTask",
    "detection_rates",
    "mutant_for",
    "run_power_study",
    "smallest_detected",
    "wilson_interval",
]

#: error kind -> factory of the wrong ``sgdm`` at a relative error size
ERROR_KINDS: dict[str, Callable[[float], Callable]] = {
    "learning_rate": lr_error_mutant,
    "noise_variance": noise_variance_mutant,
}


#: Part of every stored task's key: bump when a verdict rule of a claim in the study changes.
POWER_STUDY_VERSION = 2


def mutant_for(kind: str, size: float) -> MethodSet:
    """The reference set with ``sgdm`` replaced by the ``kind`` error of relative ``size`` (size 0: the reference)."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"kind must be one of {sorted(ERROR_KINDS)}, got {kind!r}")
    if not (isinstance(size, int | float) and not isinstance(size, bool) and math.isfinite(size) and size >= 0):
        raise ValueError(f"size must be a finite number >= 0, got {size!r}")
    return REFERENCE if size == 0 else replace(REFERENCE, sgdm=ERROR_KINDS[kind](float(size)))


@dataclass(frozen=True)
class PowerTask:
    """One run: ``claim`` on the ``kind`` error of relative ``size`` (0: the reference) with ``seed``."""

    kind: str
    size: float
    seed: int
    claim: str
    quick: bool

    @property
    def key(self) -> str:
        text = json.dumps([POWER_STUDY_VERSION, self.kind, self.size, self.seed, self.claim, self.quick])
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _run_task(task: PowerTask) -> dict[str, bool]:
    with only_fields(("sgdm",)):  # the sub-results an error of sgdm cannot move are the reference's: skip them
        results = run_all(quick=task.quick, only=[task.claim], methods=mutant_for(task.kind, task.size), seed=task.seed)
    return {r.claim_id: bool(r.passed) for r in results}


class PowerStore:
    """Finished tasks as JSON files ``KEY.json`` under ``folder``, each with the SHA-256 of its canonical content.

    A file whose digest does not match (edited or truncated) is ignored and its task recomputed.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def load(self, task: PowerTask) -> dict[str, bool] | None:
        path = self.folder / f"{task.key}.json"
        try:
            stored = json.loads(path.read_text())
            body = {"task": stored["task"], "passed": stored["passed"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if stored.get("sha256") != _digest(body) or body["task"] != _task_dict(task):
            return None
        passed = body["passed"]
        if not isinstance(passed, dict) or not all(isinstance(v, bool) for v in passed.values()):
            return None
        return passed

    def save(self, task: PowerTask, passed: dict[str, bool]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {"task": _task_dict(task), "passed": passed}
        text = json.dumps({**body, "sha256": _digest(body)}, sort_keys=True)
        temporary = self.folder / f".{task.key}.{os.getpid()}.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.folder / f"{task.key}.json")


def _task_dict(task: PowerTask) -> dict:
    return {
        "version": POWER_STUDY_VERSION,
        "kind": task.kind,
        "size": task.size,
        "seed": task.seed,
        "claim": task.claim,
        "quick": task.quick,
    }


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_power_study(
    claims: Mapping[str, Sequence[str]],
    sizes: Sequence[float],
    seeds: Sequence[int],
    store: PowerStore,
    *,
    quick: bool = True,
    jobs: int | None = None,
    on_task: Callable[[int, int], None] | None = None,
) -> dict[PowerTask, dict[str, bool]]:
    """Run (or reuse from ``store``) every task: each error kind with its claims (``claims[kind]``) at each size, and
    the reference (size 0) on every claim named, each seed.

    Returns task -> {sub-result id: passed}.  ``on_task(done, total)`` reports progress.
    """
    if not claims:
        raise ValueError("claims must map at least one error kind to its claim ids")
    for kind, ids in claims.items():
        mutant_for(kind, 0.0)
        select_claims(list(ids))
    kinds = list(claims)
    union = select_claims(sorted({claim for ids in claims.values() for claim in ids}))
    tasks = [PowerTask(kind, float(size), int(seed), claim, quick) for kind in kinds for size in sizes for seed in seeds
             for claim in claims[kind]]  # fmt: skip
    reference = [PowerTask(kinds[0], 0.0, int(seed), claim, quick) for seed in seeds for claim in union]
    tasks = list(dict.fromkeys(reference + tasks))
    done = {task: store.load(task) for task in tasks}
    pending = [task for task, value in done.items() if value is None]
    finished = len(tasks) - len(pending)
    if on_task is not None:
        on_task(finished, len(tasks))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(pending) or 1))
    if pending:
        # spawn, not fork: a child forked after the parent ran torch (OpenMP) can hang in its first torch operation
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for task, passed in zip(pending, pool.map(_run_task, pending), strict=True):
                store.save(task, passed)
                done[task] = passed
                finished += 1
                if on_task is not None:
                    on_task(finished, len(tasks))
    return {task: value for task, value in done.items() if value is not None}


def wilson_interval(failures: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = failures / trials
    centre = (p + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / (1 + z**2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def detection_rates(outcomes: dict[PowerTask, dict[str, bool]]) -> dict[str, dict[str, dict[float, dict]]]:
    """kind -> sub-result id (and each claim id, failing when any of its sub-results fails) -> size -> rate.

    Each rate is ``{"failures", "trials", "rate", "ci_low", "ci_high"}``; size 0 is the reference (false failures).
    """
    counts: dict[tuple[str, str, float], list[int]] = {}
    kinds = sorted({task.kind for task in outcomes if task.size > 0}) or sorted({t.kind for t in outcomes})
    claims_of = {kind: {t.claim for t in outcomes if t.kind == kind and t.size > 0} for kind in kinds}
    for task, passed in outcomes.items():
        targets = (
            [k for k in kinds if task.claim in claims_of[k] or not claims_of[k]] if task.size == 0 else [task.kind]
        )
        ids = {**passed, task.claim: all(passed.values())}
        for kind in targets:
            for claim_id, ok in ids.items():
                cell = counts.setdefault((kind, claim_id, task.size), [0, 0])
                cell[0] += not ok
                cell[1] += 1
    rates: dict[str, dict[str, dict[float, dict]]] = {}
    for (kind, claim_id, size), (failures, trials) in sorted(counts.items()):
        low, high = wilson_interval(failures, trials)
        rates.setdefault(kind, {}).setdefault(claim_id, {})[size] = {
            "failures": failures,
            "trials": trials,
            "rate": failures / trials,
            "ci_low": low,
            "ci_high": high,
        }
    return rates


def smallest_detected(by_size: dict[float, dict], level: float = 0.95) -> float | None:
    """The smallest size from which on every larger size fails at least ``level`` of the seeds (None: never)."""
    sizes = sorted(size for size in by_size if size > 0)
    smallest = None
    for size in reversed(sizes):
        if by_size[size]["rate"] >= level:
            smallest = size
        else:
            break
    return smallest
