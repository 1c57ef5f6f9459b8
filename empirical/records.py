"""A results store: JSON records keyed by a hash of their config, curves in CSV, atomic writes (DESIGN.md 6).

Layout of a store rooted at ``ROOT``::

    ROOT/KEY/record.json   the record (config, seed, versions, device, metrics, wall time, status, ...)
    ROOT/KEY/curves.csv    the curves (one column per series), optional
    ROOT/KEY/...           anything else a producer keeps beside it (e.g. a training checkpoint)
    ROOT/.locks/KEY.lock   the entry's lock file (:meth:`ResultStore.lock`)

``KEY`` is :func:`config_key` of the config, a JSON-able mapping, so any producer (training runs, claim
checks, figures) can store and look up results without knowing the others.  Every file is written to a
temporary name and moved into place with ``os.replace``; ``record.json`` is written last.

Integrity (DESIGN.md 6): ``record.json`` holds a ``digest``, the SHA-256 of the canonical JSON of every other
value of the record, and that record names the SHA-256 of every file it stands for (``curves.csv`` with its row
count, and whatever the producer lists in ``files``, e.g. the final ``checkpoint.pt``).  A reader therefore
either sees a complete, unaltered entry or gets :class:`CorruptRecordError`: a truncated or edited value or file,
a missing key, a file name that would leave the entry's folder.  The digests detect accidents and edits, not a
forger who recomputes them (anyone who can write the store can do that).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import errno
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_SCHEMA",
    "CorruptRecordError",
    "Record",
    "ResultStore",
    "atomic_write_bytes",
    "canonical_json",
    "config_key",
    "contained_file",
    "environment_info",
    "file_sha256",
    "is_store_key",
]

#: Version 2: the record's ``digest`` covers its values, ``files`` the files it stands for.  Records of version
#: 1 carry no value digest; they are reported corrupt (and recomputed by figure builds).
RECORD_SCHEMA = 2
_REQUIRED_FIELDS = ("schema", "key", "config", "status", "metrics", "info", "environment", "created", "curves")
_KEY_PATTERN = re.compile(r"[0-9a-f]{20}")
_LOCKS_FOLDER = ".locks"


class CorruptRecordError(ValueError):
    """A store entry exists but is unreadable, incomplete or inconsistent with its key."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace; non-finite floats are rejected (they are not JSON)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_key(config: Mapping[str, Any]) -> str:
    """The store key of a JSON-able config: the first 20 hex digits of SHA-256 of its canonical JSON."""
    try:
        text = canonical_json(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config must be a JSON-able mapping with finite numbers: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def is_store_key(text: object) -> bool:
    """Whether ``text`` has the form of a :func:`config_key` (so it names a folder directly under the store)."""
    return isinstance(text, str) and _KEY_PATTERN.fullmatch(text) is not None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (checkpoints can be large)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def contained_file(folder: Path, name: object) -> Path:
    """``folder / name`` for a plain file name read from a record, else :class:`CorruptRecordError`.

    A record is data from disk: a name that is absolute, holds a separator or ``..``, or resolves (through a
    symbolic link) outside ``folder`` would make a reader open a file outside the store, so it is refused.
    """
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise CorruptRecordError(f"{folder}: the record names the file {name!r}, which is not a plain file name")
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise CorruptRecordError(f"{path}: resolves outside its entry folder {folder} (a symbolic link?)")
    return path


def _value_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a record without its own ``digest`` field."""
    body = {name: value for name, value in document.items() if name != "digest"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, previous: str | os.PathLike[str] | None = None
) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync and ``os.replace``.

    With ``previous``, the file being replaced is also kept there: it is first hard-linked (copied where the
    filesystem has no hard links) to a temporary name that replaces ``previous``, and only then does the new file
    replace ``path``.  Both steps are atomic renames and the new file is complete on disk before either, so at
    every moment ``path`` exists and holds a complete copy (the old one until the last rename, then the new one),
    and ``previous`` holds a complete older one once it exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    keep: Path | None = None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if previous is not None and path.exists():
            keep = Path(tempfile.mktemp(prefix=f".{path.name}.", suffix=".keep", dir=path.parent))
            try:
                os.link(path, keep)
            except OSError:  # no hard links here: a full copy (still complete before the rename)
                shutil.copy2(path, keep)
            os.replace(keep, previous)
            keep = None
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if keep is not None:
            keep.unlink(missing_ok=True)
        raise


def _git_commit() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(dirty)


def environment_info(libraries: Sequence[str] = ("torch", "numpy", "scipy", "transformers")) -> dict[str, Any]:
    """Package version, git commit (and whether the tree had uncommitted changes), Python and library versions.

    Computed once per process and set of ``libraries`` (a grid of runs writes many records).
    """
    return copy.deepcopy(_environment_info(tuple(libraries)))


@functools.lru_cache(maxsize=8)
def _environment_info(libraries: tuple[str, ...]) -> dict[str, Any]:
    commit, dirty = _git_commit()
    try:
        version = metadata.version("marginal-momentum")
    except metadata.PackageNotFoundError:
        version = None
    versions = {}
    for name in libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "package_version": version,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": versions,
    }


@dataclass(frozen=True)
class Record:
    """One store entry: the JSON record and its curves (column name -> values)."""

    key: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any]
    environment: dict[str, Any]
    created: str
    info: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    path: Path | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def _curves_csv(curves: Mapping[str, Sequence[float]]) -> tuple[bytes, int]:
    columns = list(curves)
    lengths = {len(curves[c]) for c in columns}
    if len(lengths) > 1:
        raise ValueError(f"curves must have columns of equal length, got lengths {sorted(lengths)}")
    rows = lengths.pop() if lengths else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for i in range(rows):
        writer.writerow([repr(float(curves[c][i])) for c in columns])
    return buffer.getvalue().encode(), rows


def _parse_curves(data: bytes) -> dict[str, list[float]]:
    reader = csv.reader(io.StringIO(data.decode()))
    header = next(reader)
    columns: dict[str, list[float]] = {name: [] for name in header}
    for row in reader:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} fields, the header {len(header)}")
        for name, value in zip(header, row, strict=True):
            columns[name].append(float(value))
    return columns


class ResultStore:
    """Records under ``root``, one folder per config key (see the module docstring)."""

    record_name = "record.json"
    curves_name = "curves.csv"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def key(self, config: Mapping[str, Any]) -> str:
        return config_key(config)

    def entry_dir(self, config_or_key: Mapping[str, Any] | str) -> Path:
        """Folder of the entry (it need not exist yet); a key must have the form of :func:`config_key`.

        Keys also come from records (a figure record names its runs' keys), so anything else, a path or ``..``
        among them, is a :class:`CorruptRecordError` rather than a folder elsewhere.
        """
        if isinstance(config_or_key, str):
            if not is_store_key(config_or_key):
                raise CorruptRecordError(f"{config_or_key!r} is not a store key (20 lowercase hex digits)")
            return self.root / config_or_key
        return self.root / config_key(config_or_key)

    @contextlib.contextmanager
    def lock(self, config_or_key: Mapping[str, Any] | str) -> Iterator[None]:
        """Hold the entry's lock (``fcntl.flock`` on ``ROOT/.locks/KEY.lock``) for the block.

        Producers check for a finished entry and compute it under this lock, so two processes never compute one
        entry twice: the second waits, then finds the first one's record.  The lock is re-entrant within a
        thread (a lock this thread holds is not taken again; other threads wait like other processes) and released
        by the OS if the holder dies.  The lock files live outside the entry folders, so discarding an entry does
        not disturb its lock.  In a store this process cannot write (a read-only cache re-plotted), no lock is
        taken: nothing can be computed there, so nothing twice.
        """
        key = self.entry_dir(config_or_key).name
        path = (self.root / _LOCKS_FOLDER / f"{key}.lock").resolve()
        held_here = _held_locks()
        held = held_here.get(path, 0)
        held_here[path] = held + 1
        try:
            if held:
                yield
                return
            handle = _open_lock_file(path)
            if handle is None:
                yield
                return
            with handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            held_here[path] -= 1
            if not held_here[path]:
                del held_here[path]

    def discard(self, config_or_key: Mapping[str, Any] | str) -> bool:
        """Delete the entry's folder (record, curves, checkpoints); whether there was one.  Hold its lock."""
        folder = self.entry_dir(config_or_key)
        if not folder.exists() and not folder.is_symlink():
            return False
        if folder.is_symlink() or not folder.is_dir():
            folder.unlink()
        else:
            shutil.rmtree(folder)
        return True

    def save(
        self,
        config: Mapping[str, Any],
        *,
        status: str,
        metrics: Mapping[str, Any],
        curves: Mapping[str, Sequence[float]] | None = None,
        info: Mapping[str, Any] | None = None,
        environment: Mapping[str, Any] | None = None,
        files: Sequence[str] = (),
    ) -> Record:
        """Write the entry of ``config`` atomically (curves first, the record last) and return it.

        ``metrics`` and ``info`` (seed, device, wall time, anything else) must be JSON-able; non-finite
        floats in ``metrics`` are stored as ``null``.  ``files`` names files already in the entry's folder that
        the record stands for (e.g. the final checkpoint): their SHA-256 goes into the record, and a later
        :meth:`load` fails if any of them changed or went missing.
        """
        key = config_key(config)
        folder = self.entry_dir(key)
        file_digests = {}
        for name in files:
            path = contained_file(folder, name)
            file_digests[name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        curves_info = None
        if curves is not None:
            data, rows = _curves_csv(curves)
            atomic_write_bytes(folder / self.curves_name, data)
            curves_info = {"file": self.curves_name, "sha256": hashlib.sha256(data).hexdigest(), "rows": rows}
        document = {
            "schema": RECORD_SCHEMA,
            "key": key,
            "config": dict(config),
            "status": str(status),
            "metrics": _finite_or_null(dict(metrics)),
            "info": dict(info or {}),
            "environment": dict(environment) if environment is not None else environment_info(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "curves": curves_info,
            "files": file_digests,
        }
        document["digest"] = _value_digest(document)
        atomic_write_bytes(folder / self.record_name, (json.dumps(document, indent=2, allow_nan=False) + "\n").encode())
        return self._record(document, {k: list(map(float, v)) for k, v in (curves or {}).items()}, folder)

    def load(self, config_or_key: Mapping[str, Any] | str) -> Record | None:
        """The entry, ``None`` if there is none, or :class:`CorruptRecordError` if it is broken or partial."""
        folder = self.entry_dir(config_or_key)
        key = folder.name
        record_path = folder / self.record_name
        if folder.is_symlink():
            raise CorruptRecordError(f"{folder}: a symbolic link out of the store, not an entry folder")
        if not record_path.exists():
            if (folder / self.curves_name).exists():
                raise CorruptRecordError(f"{folder}: curves without a record (a partial entry)")
            return None
        try:
            document = json.loads(record_path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptRecordError(f"{record_path}: not valid JSON ({exc})") from exc
        document = self._checked_document(record_path, document, key)
        if not isinstance(config_or_key, str) and canonical_json(config_or_key) != canonical_json(document["config"]):
            raise CorruptRecordError(f"{record_path}: holds another config with the same key (hash collision)")
        curves = self._load_curves(folder, document["curves"]) if document["curves"] else {}
        for name, expected in document["files"].items():
            self._check_file(folder, name, expected)
        return self._record(document, curves, folder)

    @staticmethod
    def _checked_document(record_path: Path, document: Any, key: str) -> dict[str, Any]:
        """The parsed record if its fields, types, key and value digest hold, else :class:`CorruptRecordError`."""
        if not isinstance(document, dict):
            raise CorruptRecordError(f"{record_path}: not a JSON object")
        missing = [name for name in (*_REQUIRED_FIELDS, "files", "digest") if name not in document]
        if "schema" in document and document["schema"] != RECORD_SCHEMA:
            raise CorruptRecordError(
                f"{record_path}: record schema {document['schema']!r}, expected {RECORD_SCHEMA} "
                "(older records carry no value digest)"
            )
        if missing:
            raise CorruptRecordError(f"{record_path}: missing fields {missing}")
        if document["digest"] != _value_digest(document):
            raise CorruptRecordError(f"{record_path}: its values differ from its digest (edited or damaged)")
        if document["key"] != key or config_key(document["config"]) != key:
            raise CorruptRecordError(f"{record_path}: the stored config does not hash to the entry's key {key}")
        types = {"metrics": dict, "info": dict, "environment": dict, "files": dict, "curves": (dict, type(None))}
        wrong = [name for name, kind in types.items() if not isinstance(document[name], kind)]
        if wrong:
            raise CorruptRecordError(f"{record_path}: fields of the wrong type {wrong}")
        return document

    @staticmethod
    def _check_file(folder: Path, name: str, expected: Any) -> None:
        path = contained_file(folder, name)
        if not isinstance(expected, dict) or not isinstance(expected.get("sha256"), str):
            raise CorruptRecordError(f"{folder / str(name)}: the record's entry for this file has no SHA-256")
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise CorruptRecordError(f"{path}: the record lists this file but it cannot be read ({exc})") from exc
        if digest != expected["sha256"]:
            raise CorruptRecordError(f"{path}: contents differ from the record's SHA-256 (truncated or altered)")

    def read_file(self, record: Record, name: str) -> bytes:
        """The bytes of a file ``record`` stands for, checked against its SHA-256 (read once: no gap between the
        check and the use).  :class:`CorruptRecordError` if it is not one of the record's files or changed."""
        if record.path is None or name not in record.files:
            raise CorruptRecordError(f"{record.path}: the record does not stand for a file {name!r}")
        path = contained_file(record.path, name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CorruptRecordError(f"{path}: the record lists this file but it cannot be read ({exc})") from exc
        if hashlib.sha256(data).hexdigest() != record.files[name]["sha256"]:
            raise CorruptRecordError(f"{path}: contents differ from the record's SHA-256 (truncated or altered)")
        return data

    def _load_curves(self, folder: Path, expected: Any) -> dict[str, list[float]]:
        if not isinstance(expected, dict) or not {"file", "sha256", "rows"} <= set(expected):
            raise CorruptRecordError(f"{folder}: the record's curves entry lacks file, sha256 or rows")
        path = contained_file(folder, expected["file"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CorruptRecordError(f"{path}: the record lists curves but the file cannot be read ({exc})") from exc
        if hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise CorruptRecordError(f"{path}: contents differ from the record's SHA-256 (truncated or altered)")
        try:
            curves = _parse_curves(data)
        except (ValueError, StopIteration) as exc:
            raise CorruptRecordError(f"{path}: not a curves CSV ({exc})") from exc
        rows = {len(v) for v in curves.values()}
        if rows and rows != {expected["rows"]}:
            raise CorruptRecordError(f"{path}: {rows} rows, the record says {expected['rows']}")
        return curves

    def keys(self) -> Iterator[str]:
        """Keys of the folders that hold a record file (complete or not)."""
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                if is_store_key(folder.name) and (folder / self.record_name).exists():
                    yield folder.name

    def verify(self) -> dict[str, str]:
        """Every corrupted or partial entry under ``root``: key -> problem."""
        problems = {}
        if self.root.is_dir():
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and is_store_key(p.name)):
                try:
                    self.load(folder.name)
                except CorruptRecordError as exc:
                    problems[folder.name] = str(exc)
        return problems

    @staticmethod
    def _record(document: Mapping[str, Any], curves: dict[str, list[float]], folder: Path) -> Record:
        return Record(
            key=document["key"],
            config=document["config"],
            status=document["status"],
            metrics=document["metrics"],
            environment=document["environment"],
            created=document["created"],
            info=document.get("info") or {},
            curves=curves,
            path=folder,
            files=dict(document.get("files") or {}),
        )


def _open_lock_file(path: Path) -> Any:
    """The lock file opened for ``flock``, or ``None`` where the store cannot be written (read-only)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+b")  # closed by the caller's with-block
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None
        raise


_THREAD_STATE = threading.local()


def _held_locks() -> dict[Path, int]:
    """This thread's entry locks and how deeply each is held (for re-entrance)."""
    if not hasattr(_THREAD_STATE, "held"):
        _THREAD_STATE.held = {}
    return _THREAD_STATE.held


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value
