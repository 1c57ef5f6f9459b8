"""Training checkpoints that execute nothing when read, carry their own digest, and keep one previous copy.

A checkpoint is a ``torch.save`` file of a dict holding only tensors and plain values (dict, list, str, int,
float, bool, None), so it is read with ``torch.load(weights_only=True)``: unpickling cannot call a function,
whatever a planted file holds (DESIGN.md 6).  The dict holds ``sha256``, a digest of everything else in it
(:func:`state_digest`: keys, plain values and the bytes, dtype and shape of every tensor), because a flipped
byte inside a tensor still loads.

Writing (:func:`write_checkpoint`) keeps the checkpoint it replaces as ``checkpoint.previous.pt``.  Reading
(:func:`load_latest_checkpoint`) tries the newest, then the previous one; a file that cannot be read, fails
its digest or its caller's check is moved aside to ``NAME.corrupt-TIMESTAMP`` with a warning on stderr, and
the run continues from the previous good checkpoint, or from the start when none is left.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from empirical.records import atomic_write_bytes

__all__ = [
    "CHECKPOINT_NAME",
    "PREVIOUS_CHECKPOINT_NAME",
    "CorruptCheckpointError",
    "load_latest_checkpoint",
    "read_checkpoint",
    "read_checkpoint_bytes",
    "remove_previous_checkpoint",
    "set_aside",
    "state_digest",
    "write_checkpoint",
]

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.previous.pt"
_DIGEST_KEY = "sha256"


class CorruptCheckpointError(ValueError):
    """A checkpoint that cannot be read with ``weights_only=True``, fails its digest, or holds the wrong fields."""


def _update(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        # reshape(-1): a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes directly
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, Mapping):
        hasher.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            hasher.update(f"K{key!r}".encode())
            _update(hasher, value[key])
    elif isinstance(value, list | tuple):
        hasher.update(f"L{len(value)}".encode())
        for item in value:
            _update(hasher, item)
    elif isinstance(value, float):
        hasher.update(b"Fnan" if math.isnan(value) else f"F{value!r}".encode())
    elif value is None or isinstance(value, bool | int | str):
        hasher.update(f"{type(value).__name__}{value!r}".encode())
    else:
        raise TypeError(f"a checkpoint holds only tensors and plain values, got {type(value).__name__}")


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's contents other than its own digest (tensors by dtype, shape and bytes)."""
    hasher = hashlib.sha256()
    _update(hasher, {key: value for key, value in state.items() if key != _DIGEST_KEY})
    return hasher.hexdigest()


def checkpoint_bytes(state: Mapping[str, Any]) -> bytes:
    """The file contents of ``state`` with its digest added (``TypeError`` for anything but tensors and plain
    values, which ``weights_only=True`` could not read back)."""
    document = {**state, _DIGEST_KEY: state_digest(state)}
    buffer = io.BytesIO()
    torch.save(document, buffer)
    return buffer.getvalue()


def write_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically; the checkpoint it replaces becomes ``checkpoint.previous.pt``.

    The new file is complete on disk (fsync) before either rename, so at every moment the folder holds a
    complete newest or previous checkpoint.
    """
    path = Path(path)
    atomic_write_bytes(path, checkpoint_bytes(state), previous=path.with_name(PREVIOUS_CHECKPOINT_NAME))


def read_checkpoint_bytes(data: bytes, source: str, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint from its bytes (``weights_only=True``, digest checked), else :class:`CorruptCheckpointError`."""
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, a pickle that would run code, anything else torch refuses
        raise CorruptCheckpointError(f"{source}: cannot be read as a checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or not isinstance(state.get(_DIGEST_KEY), str):
        raise CorruptCheckpointError(f"{source}: not a checkpoint of this package (no digest)")
    try:
        digest = state_digest(state)
    except TypeError as exc:
        raise CorruptCheckpointError(f"{source}: {exc}") from exc
    if digest != state[_DIGEST_KEY]:
        raise CorruptCheckpointError(f"{source}: its contents differ from its digest (damaged)")
    return state


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path`` (see :func:`read_checkpoint_bytes`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CorruptCheckpointError(f"{path}: cannot be read ({exc.strerror})") from exc
    return read_checkpoint_bytes(data, str(path), map_location)


def set_aside(path: Path, reason: str) -> Path:
    """Move a bad checkpoint to ``NAME.corrupt-TIMESTAMP`` (kept for inspection) and say so on stderr."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    print(f"warning: {reason}; set aside as {target.name}", file=sys.stderr, flush=True)
    return target


def load_latest_checkpoint(
    folder: Path, map_location: Any = "cpu", check: Callable[[dict[str, Any], Path], None] | None = None
) -> dict[str, Any] | None:
    """The newest good checkpoint in ``folder`` (newest first, then the previous one), or ``None``.

    ``check(state, path)`` may raise :class:`CorruptCheckpointError` (wrong fields, another config): such a
    file is set aside like an unreadable one.  Other exceptions (a real mismatch the user must resolve) pass.
    """
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):
        path = folder / name
        if not path.exists() and not path.is_symlink():
            continue
        try:
            if path.is_symlink():
                raise CorruptCheckpointError(f"{path}: a symbolic link, not a checkpoint file")
            state = read_checkpoint(path, map_location)
            if check is not None:
                check(state, path)
        except CorruptCheckpointError as exc:
            fallback = "the previous checkpoint" if name == CHECKPOINT_NAME else "the start"
            set_aside(path, f"{exc}; continuing from {fallback}")
            continue
        return state
    return None


def remove_previous_checkpoint(folder: Path) -> None:
    """Drop the previous checkpoint once a run is finished (its final checkpoint is covered by the record)."""
    (folder / PREVIOUS_CHECKPOINT_NAME).unlink(missing_ok=True)
