"""The results store: keys, round trips, atomic writes, and detection of corrupted or partial entries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from empirical.records import CorruptRecordError, ResultStore, atomic_write_bytes, config_key

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
        (lambda d: _edit(d, lambda r: r["config"].update(seed=4)), "does not hash to the entry's key"),
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
