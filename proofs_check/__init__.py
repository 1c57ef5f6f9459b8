"""Executable checks of the paper's claims: each returns predicted vs measured with a CI and a verdict.

``run_all(quick)`` runs every registered claim; ``mvm verify`` prints and saves the report.
"""

from proofs_check.registry import Claim, available_claims, register, run_all
from proofs_check.report import format_markdown, format_table, write_json
from proofs_check.result import ClaimResult

__all__ = [
    "Claim",
    "ClaimResult",
    "available_claims",
    "format_markdown",
    "format_table",
    "register",
    "run_all",
    "write_json",
]
