"""Verification reports: a terminal table, Markdown, and JSON (a list of ClaimResult dicts)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from proofs_check.result import ClaimResult

__all__ = ["format_markdown", "format_table", "write_json", "write_text"]

_HEADERS = [
    "claim",
    "paper result",
    "predicted",
    "measured",
    "interval (see criterion)",
    "verdict",
    "criterion",
    "time [s]",
]


def _rows(results: Sequence[ClaimResult]) -> list[list[str]]:
    return [
        [
            r.claim_id,
            r.reference.split(";")[0],
            f"{r.predicted:.4g}",
            f"{r.measured:.4g}",
            f"[{r.ci_low:.4g}, {r.ci_high:.4g}]",
            r.status.upper(),
            r.criterion,
            f"{r.wall_time_s:.1f}",
        ]
        for r in results
    ]


def _summary(results: Sequence[ClaimResult]) -> str:
    failed = sum(not r.passed for r in results)
    others = {s: sum(r.status == s for r in results) for s in ("unresolved", "error")}
    extra = "".join(f" ({n} {s})" for s, n in others.items() if n)
    return f"{len(results) - failed} passed, {failed} failed{extra}"


def format_table(results: Sequence[ClaimResult]) -> str:
    """Plain-text table for the terminal, with a closing ``N passed, N failed`` line."""
    return tabulate(_rows(results), headers=_HEADERS, tablefmt="simple") + "\n" + _summary(results)


def format_markdown(results: Sequence[ClaimResult]) -> str:
    """GitHub-flavoured Markdown table of the same content (pipes inside cells escaped)."""
    rows = [[cell.replace("|", "\\|") for cell in row] for row in _rows(results)]
    return tabulate(rows, headers=_HEADERS, tablefmt="github") + "\n\n" + _summary(results) + "\n"


def write_json(results: Sequence[ClaimResult], path: str | os.PathLike[str]) -> Path:
    """Write the results as a JSON list of dicts, atomically (a killed run leaves no partial file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_text(json.dumps([r.to_dict() for r in results], indent=2), target)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text report atomically: a temporary file in the same folder, then ``os.replace``.

    Whatever fails (writing, flushing on close, the replace itself when the target is a directory), the
    temporary file is removed before the error propagates, so a failed write leaves nothing behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target
