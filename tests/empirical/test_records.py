"""The results store: keys, round trips, atomic writes, and detection of corrupted or partial entries."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from empirical.records import (
    CorruptRecordError,
    ResultStore,
    atomic_write_bytes,
    canonical_json,
    config_key,
)

CONFIG = {"model": {"name": "mlp", "hidden": [16, 16]}, "optimizer": {"eta": 0.1, "momentum": 0.9}, "seed": 3}
CURVES = {"step": [0, 10, 20], "test_acc": [0.1, 0.55, 0.8125], "train_loss_running": [math.nan, 1.25, 0.5]}


def _save(store: ResultStore):
    return store.save(CONFIG, status="completed", metrics={"final": 0.8125, "bad": math.inf}, curves=CURVES,
                      info={"seed": 3, "device": "cpu", "wall_time_s": 1.5})  # fmt: skip


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | st.floats(-1e6, 1e6), max_size=6))
def test_key_ignores_key_order_and_changes_with_content(config: dict) -> None:
    reordered = dict(reversed(list(config.items())))
    assert config_key(config) == config_key(reordered)
    assert config_key({**config, "__extra__": 1}) != config_key(config)
    assert len(config_key(config)) == 20


def test_key_rejects_non_json_configs() -> None:
    with pytest.raises(ValueError, match="JSON-able mapping with finite numbers"):
        config_key({"eta": math.nan})
    with pytest.raises(ValueError, match="JSON-able"):
        config_key({"path": Path("/x")})


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    saved = _save(store)
    loaded = store.load(CONFIG)
    assert loaded is not None and loaded.key == saved.key == config_key(CONFIG)
    assert loaded.config == json.loads(json.dumps(CONFIG)) and loaded.status == "completed"
    assert loaded.metrics == {"final": 0.8125, "bad": None}  # non-finite metrics are stored as null
    assert loaded.curves["test_acc"] == CURVES["test_acc"] and math.isnan(loaded.curves["train_loss_running"][0])
    assert loaded.info["seed"] == 3
    environment = loaded.environment
    assert environment["package_version"] == "0.1.0" and "torch" in environment["libraries"]
    assert "git_commit" in environment and "python" in environment
    assert store.load(loaded.key) is not None and list(store.keys()) == [loaded.key]
    assert store.load({"other": 1}) is None
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temporary files behind


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "curves.csv").write_text((d / "curves.csv").read_text()[:-8]), "SHA-256"),
        (lambda d: (d / "curves.csv").unlink(), "cannot be read"),
        (lambda d: (d / "record.json").write_text((d / "record.json").read_text()[:50]), "not valid JSON"),
        (lambda d: _edit(d, lambda r: r.pop("metrics")), r"missing fields \['metrics'\]"),
        (lambda d: _edit(d, lambda r: r["config"].update(seed=4)), "differ from its digest"),
        # an edited value is caught, not used (the issue: 67.7% edited to 83.0% flowed into fig1)
        (lambda d: _edit(d, lambda r: r["metrics"].update(final=0.95)), "differ from its digest"),
        (lambda d: _edit(d, lambda r: r.pop("digest")), r"missing fields \['digest'\]"),
        (lambda d: _edit(d, lambda r: r.update(schema=1)), "record schema 1, expected 2"),
        (lambda d: (d / "record.json").unlink(), "curves without a record"),
    ],
)
def test_corrupted_or_partial_entries_are_detected(tmp_path: Path, damage, message: str) -> None:
    store = ResultStore(tmp_path)
    folder = _save(store).path
    damage(folder)
    with pytest.raises(CorruptRecordError, match=message):
        store.load(CONFIG)
    assert list(store.verify()) == [folder.name]


def _edit(folder: Path, change) -> None:
    record = json.loads((folder / "record.json").read_text())
    change(record)
    (folder / "record.json").write_text(json.dumps(record))


def test_unequal_curve_columns_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="equal length"):
        ResultStore(tmp_path).save(CONFIG, status="completed", metrics={}, curves={"a": [1.0], "b": [1.0, 2.0]})


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")

    def failing_fsync(_: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("empirical.records.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and not list(tmp_path.glob(".*.tmp"))


def _edit_with_digest(folder: Path, change) -> None:
    """Edit a record and recompute its value digest: what only a file-level check can still catch."""
    record = json.loads((folder / "record.json").read_text())
    change(record)
    body = {name: value for name, value in record.items() if name != "digest"}
    record["digest"] = hashlib.sha256(canonical_json(body).encode()).hexdigest()
    (folder / "record.json").write_text(json.dumps(record))


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.csv", "sub/curves.csv", "link.csv"])
def test_a_file_name_from_a_record_must_stay_in_its_folder(tmp_path: Path, name: str) -> None:
    """Wrong behaviour caught: a record naming a file outside the store made the reader open it (issue 13)."""
    store = ResultStore(tmp_path / "store")
    folder = _save(store).path
    outside = tmp_path / "outside.csv"
    outside.write_text("step\n1\n")
    (folder / "link.csv").symlink_to(outside)
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    _edit_with_digest(folder, lambda r: r["curves"].update(file=name, sha256=digest, rows=1))
    opened = []
    real_read_bytes = Path.read_bytes
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_bytes", lambda self: opened.append(self) or real_read_bytes(self))
        with pytest.raises(CorruptRecordError, match=r"not a plain file name|resolves outside"):
            store.load(CONFIG)
    assert not any(path.resolve() == outside.resolve() or "hostname" in str(path) for path in opened)


def test_an_entry_folder_that_links_out_of_the_store_is_refused(tmp_path: Path) -> None:
    """Wrong behaviour caught: an entry folder replaced by a symbolic link made the reader use files elsewhere."""
    elsewhere = _save(ResultStore(tmp_path / "elsewhere")).path
    store = ResultStore(tmp_path / "store")
    store.root.mkdir()
    store.entry_dir(CONFIG).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(CorruptRecordError, match="a symbolic link out of the store"):
        store.load(CONFIG)


def test_keys_that_are_not_store_keys_never_name_a_folder(tmp_path: Path) -> None:
    """Wrong behaviour caught: a key read from a record ('../x', an absolute path) joined onto the store root."""
    store = ResultStore(tmp_path / "store")
    for key in ("../outside", "/etc", "ABCDEF0123456789ABCD", "0" * 21):
        with pytest.raises(CorruptRecordError, match="not a store key"):
            store.load(key)


def test_files_a_record_stands_for_are_covered_by_its_digest(tmp_path: Path) -> None:
    """Wrong behaviour caught: a checkpoint changed after its record was written was used (fig1's held-out)."""
    store = ResultStore(tmp_path)
    folder = store.entry_dir(CONFIG)
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"weights")
    record = store.save(CONFIG, status="completed", metrics={}, files=["checkpoint.pt"])
    assert store.read_file(record, "checkpoint.pt") == b"weights"
    (folder / "checkpoint.pt").write_bytes(b"weightz")
    with pytest.raises(CorruptRecordError, match="differ from the record's SHA-256"):
        store.load(CONFIG)
    with pytest.raises(CorruptRecordError, match="differ from the record's SHA-256"):
        store.read_file(record, "checkpoint.pt")
    (folder / "checkpoint.pt").unlink()
    with pytest.raises(CorruptRecordError, match="cannot be read"):
        store.load(CONFIG)
    with pytest.raises(CorruptRecordError, match="does not stand for"):
        store.read_file(record, "record.json")


def test_two_computations_never_compute_one_entry_twice(tmp_path: Path) -> None:
    """Wrong behaviour caught: two builds on one store both computed the same entry (no lock).

    Two threads, each with its own open lock file, exclude each other as two processes do (``flock`` locks belong
    to the open file); tests/empirical/test_integrity.py runs two real processes through training.
    """
    computed = []

    def compute() -> None:
        store = ResultStore(tmp_path)
        with store.lock(CONFIG):
            if store.load(CONFIG) is None:
                computed.append(threading.get_ident())
                time.sleep(0.5)
                _save(store)

    workers = [threading.Thread(target=compute) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(computed) == 1 and ResultStore(tmp_path).load(CONFIG) is not None
    with ResultStore(tmp_path).lock(CONFIG), ResultStore(tmp_path).lock(CONFIG):
        pass  # re-entrant within a thread


def test_a_read_only_store_is_read_without_a_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong behaviour caught: re-plotting from a read-only cache failed because no lock file could be made."""
    _save(ResultStore(tmp_path))

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    with ResultStore(tmp_path).lock(CONFIG):
        assert ResultStore(tmp_path).load(CONFIG) is not None


@pytest.mark.parametrize("links", [True, False])
def test_a_kill_between_the_renames_of_a_kept_write_leaves_the_current_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    """``atomic_write_bytes(previous=...)`` killed after its first rename: ``path`` still holds a complete copy
    (the old one) and ``previous`` the old one too; never a folder without ``path`` (a SIGKILL there lost the
    checkpoint when the old file was renamed away first)."""
    from empirical.records import atomic_write_bytes

    path, previous = tmp_path / "checkpoint.pt", tmp_path / "checkpoint.previous.pt"
    atomic_write_bytes(path, b"one", previous=previous)
    atomic_write_bytes(path, b"two", previous=previous)
    assert path.read_bytes() == b"two" and previous.read_bytes() == b"one"
    if not links:  # a filesystem without hard links: the copy path
        monkeypatch.setattr(os, "link", lambda *args: (_ for _ in ()).throw(OSError("no links")))
    real_replace, calls = os.replace, []

    def killed_after_the_first(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise KeyboardInterrupt  # the process dies between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"three", previous=previous)
    monkeypatch.undo()
    assert path.read_bytes() == b"two" and previous.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.previous.pt", "checkpoint.pt"]  # no debris
    atomic_write_bytes(path, b"four", previous=previous)
    assert path.read_bytes() == b"four" and previous.read_bytes() == b"two"
