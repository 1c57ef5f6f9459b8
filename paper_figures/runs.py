"""Training runs behind the empirical figures: reused from the run store, corrupted entries retrained."""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Sequence

from empirical.config import RunConfig
from empirical.records import CorruptRecordError, ResultStore
from empirical.train import RunResult, train_members
from paper_figures.registry import FigureContext

__all__ = ["discard_corrupt_entries", "record_digest", "train_figure_runs"]


def discard_corrupt_entries(store: ResultStore, identities: Sequence[dict | str]) -> list[str]:
    """Delete the entries of ``identities`` (configs or keys) that are corrupted or partial; returns their keys.

    A partial entry is what a killed writer leaves (curves without a record, a truncated file); it is
    detected by :meth:`empirical.records.ResultStore.load` and must be recomputed, never plotted.  An
    unfinished run's checkpoint alone is not corrupt: the run resumes from it.
    """
    discarded = []
    for identity in identities:
        try:
            store.load(identity)
        except CorruptRecordError as exc:
            print(f"cache: discarding a corrupted entry and recomputing it: {exc}", file=sys.stderr)
            shutil.rmtree(store.entry_dir(identity))
            discarded.append(identity if isinstance(identity, str) else store.key(identity))
    return discarded


def record_digest(store: ResultStore, key: str) -> str | None:
    """SHA-256 of the entry's ``record.json`` (which itself pins its curves' SHA-256), or ``None``."""
    path = store.entry_dir(key) / store.record_name
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def train_figure_runs(members: Sequence[RunConfig], context: FigureContext) -> list[RunResult]:
    """Train (or reuse) ``members`` in the context's run store, vectorised where possible, resuming killed runs."""
    store = ResultStore(context.runs_dir)
    discard_corrupt_entries(store, [m.identity() for m in members])
    return train_members(members, resume=True, out=context.runs_dir, quiet=not context.progress, vectorize=True)
