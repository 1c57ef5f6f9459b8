"""``mvm bounds``: output, JSON and exit codes (0 as believed, 1 contradicted, 2 usage, 3 filesystem)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import proofs_check.bounds
from mvm.cli import main
from proofs_check.methods import MUTANTS

FEW = ["svag.sum", "stability.inside", "control.sgd_below_sme1"]


def test_bounds_prints_verdicts_counterexamples_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bounds.json"
    assert main(["bounds", "--only", *FEW, "--budget", "20", "--seed", "1", "--json", str(path)]) == 0
    captured = capsys.readouterr()
    assert "svag.sum: holds within budget" in captured.err  # progress
    out = captured.out
    assert "holds within budget" in out and "refuted, as expected (control)" in out
    assert "control.sgd_below_sme1: counterexample (shrunk)" in out
    assert "left  = 1 " in out and "right = 0.5 " in out
    assert "3 bounds: 2 hold, 1 refuted as expected, 0 unexpected" in out
    data = json.loads(path.read_text())
    assert [d["bound_id"] for d in data] == ["stability.inside", "svag.sum", "control.sgd_below_sme1"]
    assert all(d["budget"] == 20 and d["seed"] == 1 and d["passed"] for d in data)


def test_list_shows_ids_and_beliefs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounds", "--list"]) == 0
    out = capsys.readouterr().out
    assert "psd_gap.noncommuting" in out and "[false]" in out and "[false, control]" in out and "[true]" in out


def test_a_refuted_true_bound_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    original = proofs_check.bounds.search_bounds

    def with_wrong_svag(**kwargs):  # the CLI's search, fed a wrong SVAG combination (1/2, 1/2)
        return original(**kwargs, methods=MUTANTS["svag_coefficients_half"].methods)

    monkeypatch.setattr(proofs_check.bounds, "search_bounds", with_wrong_svag)
    assert main(["bounds", "--only", "svag.square_sum", "--budget", "10", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "REFUTED (believed true)" in out and "1 unexpected (svag.square_sum)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "nope"], "unknown bound id(s) ['nope']; known: sgdm_loss_le_sgd.commuting"),
        (["--budget", "0"], "--budget must be >= 1"),
        (["--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounds", *argv]) == 2
    assert message in capsys.readouterr().err


def test_non_integer_budget_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["bounds", "--budget", "many"])
    assert excinfo.value.code == 2


def test_unwritable_json_exits_3_naming_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounds", "--only", "svag.sum", "--budget", "5", "--json", str(tmp_path)]) == 3
    assert f"{tmp_path} is a directory" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bounds", "--only", "svag.sum", "--budget", "5", "--json", str(blocker / "x.json")]) == 3
    assert str(blocker) in capsys.readouterr().err


def test_module_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mvm", "bounds", "--only", "svag.sum", "--budget", "5", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "1 bounds: 1 hold" in done.stdout
