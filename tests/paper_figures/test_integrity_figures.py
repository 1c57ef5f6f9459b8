"""Issue 13 through a figure build: nothing runs from the cache, damaged or edited entries are recomputed and said
on screen, one figure is computed once however many builds share the cache, ``only`` may be one id string.

Each test's docstring names the wrong behaviour it catches.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
import time
from pathlib import Path

import pytest
import torch

from empirical.checkpoints import CHECKPOINT_NAME
from empirical.config import config_from_dict
from empirical.records import ResultStore, canonical_json, config_key
from paper_figures import Computed, FigureContext, FigureSpec, available_figures, build_figures, registry
from paper_figures.runs import train_figure_runs

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),  # the planted files' protocol
]

RUN = {
    "name": "figure_run",
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [16]},
    "optimizer": {"name": "normalized_sgdm", "eta": 0.1, "momentum": 0.9},
    "train": {"batch_size": 32, "unit": "step", "length": 30, "eval_every": 15, "log_every": 10},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: a second intra-op thread only stalls on a shared machine (see tests/empirical/conftest.py)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class _TrainingFigure:
    """A figure whose compute trains one tiny run through :func:`train_figure_runs` (which always resumes)."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.calls, self.sleep = 0, sleep
        self.member = config_from_dict(RUN)
        self.spec = FigureSpec("integrity_figure", "t", "empirical", lambda context: {"v": 1}, self.compute, self.plot)

    def compute(self, settings, context: FigureContext) -> Computed:
        self.calls += 1
        time.sleep(self.sleep)
        (result,) = train_figure_runs([self.member], context)
        data = {"test_acc": result.metrics["final_test_acc"], "summary": {"measured": result.metrics["final_test_acc"]}}
        return Computed(data=data, runs=(self.member.identity(),), seeds=(0,))

    @staticmethod
    def plot(data, stem: Path) -> list[Path]:
        path = Path(f"{stem}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(json.dumps(data).encode())  # what was "plotted"
        return [path]


@pytest.fixture
def figure(monkeypatch: pytest.MonkeyPatch) -> _TrainingFigure:
    fake = _TrainingFigure()
    available_figures()
    monkeypatch.setitem(registry._REGISTRY, fake.spec.figure_id, fake.spec)
    return fake


def _build(tmp_path: Path):
    (outcome,) = build_figures("integrity_figure", scale="tiny", out=tmp_path / "out", cache_dir=tmp_path / "cache",
                               progress=False)  # fmt: skip
    return outcome


def _plotted(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "integrity_figure.png").read_text())


def _run_folder(tmp_path: Path, figure: _TrainingFigure) -> Path:
    return tmp_path / "cache" / "runs" / config_key(figure.member.identity())


def _edit(record_path: Path, change, keep_digest_valid: bool) -> None:
    document = json.loads(record_path.read_text())
    change(document)
    if keep_digest_valid:  # what only the checks beyond the digest (containment, missing data) can still catch
        body = {name: value for name, value in document.items() if name != "digest"}
        document["digest"] = hashlib.sha256(canonical_json(body).encode()).hexdigest()
    record_path.write_text(json.dumps(document))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_checkpoint_runs_nothing_through_a_figure_build(figure, tmp_path: Path, capsys) -> None:
    """Wrong behaviour caught: ``mvm figures`` (which always resumes) unpickled a planted checkpoint.pt with
    ``weights_only=False`` and ran it, with no flag at all."""
    marker = tmp_path / "marker"
    folder = _run_folder(tmp_path, figure)
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_NAME).write_bytes(pickle.dumps({"model": _Payload(marker)}))
    outcome = _build(tmp_path)
    assert not marker.exists() and outcome.computed
    assert "set aside" in capsys.readouterr().err
    assert ResultStore(tmp_path / "cache" / "runs").load(figure.member.identity()).status == "completed"


def test_a_run_record_naming_an_outside_file_reads_nothing_outside(
    figure, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong behaviour caught: a curves file name taken from record.json was joined without containment, so an
    absolute path outside the store was read."""
    _build(tmp_path)
    original = _plotted(tmp_path)
    outside = tmp_path / "outside.csv"
    outside.write_text("step\n1\n")
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    record = _run_folder(tmp_path, figure) / "record.json"
    _edit(record, lambda r: r["curves"].update(file=str(outside), sha256=digest, rows=1), keep_digest_valid=True)
    read = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.resolve()) or real_read_bytes(self))
    outcome = _build(tmp_path)
    assert outside.resolve() not in read
    assert outcome.computed and figure.calls == 2 and _plotted(tmp_path) == original
    assert "not a plain file name" in capsys.readouterr().err


@pytest.mark.parametrize("store", ["figures", "runs"])
def test_an_edited_value_is_recomputed_and_said_on_screen(figure, tmp_path: Path, capsys, store: str) -> None:
    """Wrong behaviour caught: an edited value ("measured 99.0000" in the figure cache, final_test_acc in a run
    record) was plotted silently."""
    _build(tmp_path)
    original = _plotted(tmp_path)
    capsys.readouterr()
    if store == "figures":
        (record,) = (tmp_path / "cache" / "figures").glob("*/record.json")
        _edit(record, lambda r: r["metrics"]["data"]["summary"].update(measured=0.99), keep_digest_valid=False)
    else:
        record = _run_folder(tmp_path, figure) / "record.json"
        _edit(record, lambda r: r["metrics"].update(final_test_acc=0.99), keep_digest_valid=False)
    outcome = _build(tmp_path)
    assert outcome.computed and figure.calls == 2
    assert _plotted(tmp_path) == original and 0.99 not in _plotted(tmp_path).values()
    err = capsys.readouterr().err
    assert "differ from its digest" in err and ("recomputing" in err)


def test_a_figure_record_missing_its_data_is_recomputed(figure, tmp_path: Path, capsys) -> None:
    """Wrong behaviour caught: a figure record with a missing key crashed the build with a TypeError."""
    _build(tmp_path)
    (record,) = (tmp_path / "cache" / "figures").glob("*/record.json")
    _edit(record, lambda r: r["metrics"].pop("data"), keep_digest_valid=True)
    assert _build(tmp_path).computed and figure.calls == 2
    assert "no figure data" in capsys.readouterr().err


def test_two_builds_compute_one_figure_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong behaviour caught: two builds on one cache computed the same entries twice (no lock).

    Two threads, each holding its own open lock file, exclude each other as two processes do; two real processes
    training one run are in tests/empirical/test_integrity.py.
    """
    fake = _TrainingFigure(sleep=1.0)
    available_figures()
    monkeypatch.setitem(registry._REGISTRY, fake.spec.figure_id, fake.spec)
    outcomes = []
    workers = [threading.Thread(target=lambda: outcomes.append(_build(tmp_path))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert fake.calls == 1 and sorted(o.computed for o in outcomes) == [False, True]


def test_only_accepts_one_id_string(figure, tmp_path: Path) -> None:
    """Wrong behaviour caught: ``build_figures(only="fig...")`` iterated the string's characters."""
    assert _build(tmp_path).figure_id == "integrity_figure"
    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        build_figures("nope", out=tmp_path / "o")
