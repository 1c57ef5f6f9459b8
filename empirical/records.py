"""A results store: JSON records keyed by a hash of their config, curves in CSV, atomic writes (DESIGN.md 6).

Layout of a store rooted at ``ROOT``::

    ROOT/KEY/record.json   the record (config, seed, versions, device, metrics, wall time, status, ...)
    ROOT/KEY/curves.csv    the curves (one column per series), optional
    ROOT/KEY/...           anything else a producer keeps beside it (e.g. a training checkpoint)

``KEY`` is :func:`config_key` of the config, a JSON-able mapping, so any producer (training runs, claim
checks, figures) can store and look up results without knowing the others.  Every file is written to a
temporary name and moved into place with ``os.replace``; ``record.json`` is written last and names the
SHA-256 and row count of ``curves.csv``, so a reader either sees a complete entry or detects a corrupted
or partial one (:class:`CorruptRecordError`).
"""

from __future__ import annotations

import copy
import csv
import functools
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
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
    "environment_info",
]

RECORD_SCHEMA = 1
_REQUIRED_FIELDS = ("schema", "key", "config", "status", "metrics", "environment", "created")


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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
        """Folder of the entry (it need not exist yet)."""
        key = config_or_key if isinstance(config_or_key, str) else config_key(config_or_key)
        return self.root / key

    def save(
        self,
        config: Mapping[str, Any],
        *,
        status: str,
        metrics: Mapping[str, Any],
        curves: Mapping[str, Sequence[float]] | None = None,
        info: Mapping[str, Any] | None = None,
        environment: Mapping[str, Any] | None = None,
    ) -> Record:
        """Write the entry of ``config`` atomically (curves first, the record last) and return it.

        ``metrics`` and ``info`` (seed, device, wall time, anything else) must be JSON-able; non-finite
        floats in ``metrics`` are stored as ``null``.
        """
        key = config_key(config)
        folder = self.entry_dir(key)
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
        }
        atomic_write_bytes(folder / self.record_name, (json.dumps(document, indent=2, allow_nan=False) + "\n").encode())
        return self._record(document, {k: list(map(float, v)) for k, v in (curves or {}).items()}, folder)

    def load(self, config_or_key: Mapping[str, Any] | str) -> Record | None:
        """The entry, ``None`` if there is none, or :class:`CorruptRecordError` if it is broken or partial."""
        folder = self.entry_dir(config_or_key)
        key = folder.name
        record_path = folder / self.record_name
        if not record_path.exists():
            if (folder / self.curves_name).exists():
                raise CorruptRecordError(f"{folder}: curves without a record (a partial entry)")
            return None
        try:
            document = json.loads(record_path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptRecordError(f"{record_path}: not valid JSON ({exc})") from exc
        if not isinstance(document, dict) or any(name not in document for name in _REQUIRED_FIELDS):
            missing = [n for n in _REQUIRED_FIELDS if not isinstance(document, dict) or n not in document]
            raise CorruptRecordError(f"{record_path}: missing fields {missing}")
        if document["key"] != key or config_key(document["config"]) != key:
            raise CorruptRecordError(f"{record_path}: the stored config does not hash to the entry's key {key}")
        if not isinstance(config_or_key, str) and canonical_json(config_or_key) != canonical_json(document["config"]):
            raise CorruptRecordError(f"{record_path}: holds another config with the same key (hash collision)")
        curves = self._load_curves(folder, document["curves"]) if document.get("curves") else {}
        return self._record(document, curves, folder)

    def _load_curves(self, folder: Path, expected: Mapping[str, Any]) -> dict[str, list[float]]:
        path = folder / str(expected["file"])
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
                if (folder / self.record_name).exists():
                    yield folder.name

    def verify(self) -> dict[str, str]:
        """Every corrupted or partial entry under ``root``: key -> problem."""
        problems = {}
        if self.root.is_dir():
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
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
        )


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value
