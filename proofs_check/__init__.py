"""Executable checks of the paper's claims: each returns predicted vs measured with a CI and a verdict.

``run_all(quick, methods=...)`` runs every registered claim against a :class:`~proofs_check.methods.MethodSet`;
``kill_matrix`` runs the deliberately wrong sets of :data:`~proofs_check.methods.MUTANTS`; ``mvm verify`` prints and
saves the reports.
"""

from proofs_check.methods import MUTANTS, REFERENCE, MethodSet, Mutant, changed_fields
from proofs_check.mutants import KillMatrix, affected_claims, format_kill_matrix, kill_matrix
from proofs_check.registry import Claim, available_claims, register, run_all, select_claims
from proofs_check.report import format_markdown, format_table, write_json
from proofs_check.result import STATUSES, ClaimResult, error_result
from proofs_check.verdicts import OrderVerdict, order_at_least

__all__ = [
    "MUTANTS",
    "REFERENCE",
    "STATUSES",
    "Claim",
    "ClaimResult",
    "KillMatrix",
    "MethodSet",
    "Mutant",
    "OrderVerdict",
    "affected_claims",
    "available_claims",
    "changed_fields",
    "error_result",
    "format_kill_matrix",
    "format_markdown",
    "format_table",
    "kill_matrix",
    "order_at_least",
    "register",
    "run_all",
    "select_claims",
    "write_json",
]

# mvm bounds: the catalogue of inequalities and the counterexample search (Hypothesis is imported when a search runs).
from proofs_check.bounds import BOUNDS, Bound, BoundResult, search_bounds

__all__ += ["BOUNDS", "Bound", "BoundResult", "search_bounds"]
