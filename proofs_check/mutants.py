"""The kill matrix: every mutant of :data:`proofs_check.methods.MUTANTS` run through the claims it can affect.

A claim whose :attr:`~proofs_check.registry.Claim.fields` do not include a field the mutant changes computes exactly
what it computes for :data:`~proofs_check.methods.REFERENCE` (same seeds, same implementations), so it is not run
again: its cell reads ``=``.  A mutant is *killed* when, for every id in its ``must_break``, at least one sub-result
under that id fails or errors; ids marked ``full_only`` are not required at quick scale.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tabulate import tabulate

from proofs_check.methods import MUTANTS, Mutant, changed_fields
from proofs_check.registry import available_claims, run_all
from proofs_check.result import ClaimResult

__all__ = ["KillMatrix", "affected_claims", "format_kill_matrix", "kill_matrix", "killed"]


def affected_claims(mutant: Mutant) -> list[str]:
    """Ids of the registered claims whose verdicts can depend on a field the mutant changes."""
    changed = set(changed_fields(mutant.methods))
    return [claim_id for claim_id, claim in available_claims().items() if changed & set(claim.fields)]


def _matches(result_id: str, wanted: str) -> bool:
    return result_id == wanted or result_id.startswith(wanted + ".")


def killed(mutant: Mutant, results: Sequence[ClaimResult], quick: bool) -> tuple[bool, list[str]]:
    """Whether every required id of ``must_break`` has a failing sub-result; and the ids that survived."""
    required = [i for i in mutant.must_break if not (quick and i in mutant.full_only)]
    survived = [i for i in required if not any(_matches(r.claim_id, i) and not r.passed for r in results)]
    return not survived, survived


@dataclass(frozen=True)
class KillMatrix:
    """Results of every mutant on its affected claims; ``killed[name]`` and ``survived[name]`` per mutant."""

    quick: bool
    claims: tuple[str, ...]
    results: Mapping[str, tuple[ClaimResult, ...]]
    killed: Mapping[str, bool]
    survived: Mapping[str, tuple[str, ...]]

    @property
    def all_killed(self) -> bool:
        return all(self.killed.values())


def _run_one(task: tuple[str, str, bool]) -> list[ClaimResult]:
    name, claim_id, quick = task
    return run_all(quick=quick, only=[claim_id], methods=MUTANTS[name].methods)


def kill_matrix(
    quick: bool = True,
    names: Sequence[str] | None = None,
    jobs: int | None = None,
    on_mutant: Callable[[str, bool], None] | None = None,
) -> KillMatrix:
    """Run the mutants ``names`` (default: all) through their affected claims, ``jobs`` processes at a time."""
    names = list(MUTANTS) if not names else list(names)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        raise ValueError(f"unknown mutant(s) {unknown}; known: {sorted(MUTANTS)}")
    tasks = [(name, claim_id, quick) for name in names for claim_id in affected_claims(MUTANTS[name])]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks) or 1))
    if jobs == 1:
        outputs = [_run_one(task) for task in tasks]
    else:
        # spawn, not fork: a child forked after the parent ran torch (OpenMP) can hang in its first torch operation.
        # Tasks are names, so the children look the mutants (which hold closures) up in MUTANTS themselves.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            outputs = list(pool.map(_run_one, tasks))
    by_mutant: dict[str, list[ClaimResult]] = {name: [] for name in names}
    for (name, _, _), output in zip(tasks, outputs, strict=True):
        by_mutant[name].extend(output)
    killed_map, survived_map = {}, {}
    for name in names:
        ok, survived = killed(MUTANTS[name], by_mutant[name], quick)
        killed_map[name], survived_map[name] = ok, tuple(survived)
        if on_mutant is not None:
            on_mutant(name, ok)
    return KillMatrix(
        quick,
        tuple(available_claims()),
        {n: tuple(r) for n, r in by_mutant.items()},
        killed_map,
        survived_map,
    )


def _cell(results: Sequence[ClaimResult], claim_id: str) -> str:
    mine = [r for r in results if _matches(r.claim_id, claim_id)]
    if not mine:
        return "="
    if any(r.status == "error" for r in mine):
        return "ERROR"
    failed = sum(not r.passed for r in mine)
    return f"FAIL {failed}/{len(mine)}" if failed else "PASS"


def format_kill_matrix(matrix: KillMatrix, tablefmt: str = "simple") -> str:
    """Mutants x claims (PASS / FAIL k/n / ERROR; ``=`` not affected), the verdict per mutant and a summary line.

    ``tablefmt`` is a :mod:`tabulate` format: ``"simple"`` for the terminal, ``"github"`` for Markdown.
    """
    headers = ["mutant", *matrix.claims, "must break", "verdict"]
    rows = []
    for name, results in matrix.results.items():
        mutant = MUTANTS[name]
        marks = [f"{i} (full run only)" if matrix.quick and i in mutant.full_only else i for i in mutant.must_break]
        verdict = "killed" if matrix.killed[name] else "SURVIVED: " + ", ".join(matrix.survived[name])
        rows.append([name, *(_cell(results, c) for c in matrix.claims), "; ".join(marks), verdict])
    survivors = sum(not k for k in matrix.killed.values())
    summary = f"{len(matrix.killed) - survivors} killed, {survivors} survived"
    return tabulate(rows, headers=headers, tablefmt=tablefmt) + "\n\n" + summary
