"""The ``mvm`` command line dispatches to the public functions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mvm.cli import main


def test_derive_forms_prints_the_proofs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", "forms"]) == 0
    out = capsys.readouterr().out
    assert "[holds] coupling identity" in out
    assert "FAILS" not in out


def test_derive_forms_latex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derive", "forms", "--latex"]) == 0
    assert r"\eta=\frac{\gamma}{1-\beta}" in capsys.readouterr().out


def test_unknown_topic_is_rejected_with_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["derive", "nonsense"])
    assert excinfo.value.code == 2
    assert "choose from" in capsys.readouterr().err


def test_module_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "mvm", "derive", "forms"], capture_output=True, text=True, check=True)
    assert "[holds]" in done.stdout
