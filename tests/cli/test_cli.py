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


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["derive", "stability"], "stable iff 0 < eta*h < 2 "),
        (["derive", "stability", "--latex"], r"\gamma h<2 \left(\beta + 1\right)"),
        (["derive", "stationary"], "sgdm: Var x = eta*s**2*(beta + 1)/"),
        (["derive", "series", "--order", "2"], "SGD - SGDM = beta*eta**2*s**2/(2*(beta + 1)) + O(eta**3)"),
        (["derive", "series", "--latex", "--order", "1"], r"\operatorname{Var}x_{\mathrm{SGD}}"),
        (["derive", "transition", "--form", "polyak"], "polyak: z_(k+1) = A z_k + b xi_k"),
    ],
)
def test_derive_quadratic_topics(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["derive", "forms", "--order", "3"], "topic 'forms' does not take --order"),
        (["derive", "stability", "--form", "sgd"], "topic 'stability' does not take --form"),
        (["derive", "series", "--order", "0"], "--order must be an integer in [1, "),
        (["derive", "transition", "--form", "adam"], "invalid choice: 'adam'"),
    ],
)
def test_derive_rejects_options_a_topic_does_not_take(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


def test_transition_forms_offered_by_the_cli_are_those_of_theory() -> None:
    from mvm.cli import TRANSITION_FORMS
    from theory.quadratic import FORMS

    assert TRANSITION_FORMS == FORMS
