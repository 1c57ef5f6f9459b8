"""Training runs behind the empirical figures: reused from the run store, damaged entries retrained."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence

from empirical.config import RunConfig
from empirical.experiment import train_members
from empirical.records import CorruptRecordError, ResultStore
from empirical.run import RunResult
from paper_figures.registry import FigureContext, default_figures, get_figure

__all__ = ["discard_corrupt_entries", "figure_run_members", "record_digest", "train_figure_runs"]


def discard_corrupt_entries(store: ResultStore, identities: Sequence[dict | str]) -> list[str]:
    """Delete the entries of ``identities`` (configs or keys) that are damaged or partial; returns their keys.

    Damaged: an edited or truncated value or file, a missing key, a file name leading out of the store (what
    :meth:`empirical.records.ResultStore.load` detects); partial: what a killed writer leaves.  Each is said on
    stderr and must be recomputed, never plotted.  An unfinished run's checkpoint alone is not damaged: the run
    resumes from it.  Each entry is checked and discarded under its lock.
    """
    discarded = []
    for identity in identities:
        try:
            key = identity if isinstance(identity, str) else store.key(identity)
            with store.lock(key):
                try:
                    store.load(key)
                except CorruptRecordError as exc:
                    print(f"cache: discarding a corrupted entry and recomputing it: {exc}", file=sys.stderr)
                    store.discard(key)
                    discarded.append(key)
        except CorruptRecordError as exc:  # not a key at all (read from a damaged record): nothing to discard
            print(f"cache: ignoring a damaged reference: {exc}", file=sys.stderr)
            discarded.append(str(identity))
    return discarded


def record_digest(store: ResultStore, key: str) -> str | None:
    """SHA-256 of the entry's ``record.json`` (which pins its values and its files' SHA-256), or ``None``."""
    path = store.entry_dir(key) / store.record_name
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def train_figure_runs(
    members: Sequence[RunConfig], context: FigureContext, final_checkpoints: bool = True
) -> list[RunResult]:
    """Train (or reuse) ``members`` in the context's run store, vectorised where possible, resuming killed runs.

    Damaged entries are discarded (said on stderr) and retrained; checkpoints are read with ``weights_only=True``
    and a bad one is set aside, so nothing in the cache can run code.  ``final_checkpoints=False`` keeps no
    checkpoint of a finished run trained alone (a figure that never reads its final parameters).
    """
    return train_members(
        members,
        resume=True,
        out=context.runs_dir,
        quiet=not context.progress,
        vectorize=True,
        discard_corrupt=True,
        final_checkpoints=final_checkpoints,
    )


def figure_run_members(
    only: Sequence[str] | str | None, context: FigureContext
) -> list[tuple[str, list[RunConfig], bool]]:
    """The training runs of the figures ``only`` (default: those a build without IDs makes) at ``context``.

    One ``(figure_id, members, final_checkpoints)`` per figure built from training runs (a spec with
    ``members``), in build order: what ``mvm figures --executor`` trains as cluster jobs before it builds them.
    Unknown IDs, or paper-scale figures missing their ``--data``, are a ``ValueError`` before anything runs.
    """
    ids = ([only] if isinstance(only, str) else list(only)) if only else default_figures()
    listed = []
    for figure_id in ids:
        spec = get_figure(figure_id)
        if spec.members is not None:
            listed.append((figure_id, list(spec.members(spec.settings(context))), spec.final_checkpoints))
    return listed
