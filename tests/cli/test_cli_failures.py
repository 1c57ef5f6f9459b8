"""Clean failures of ``mvm`` (issue 13, item 4): filesystem problems exit 3 with one line naming the path, checked
before the expensive work; ``--order`` is bounded; a failed report write leaves no temporary file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import mvm.cli as cli
from mvm.cli import MAX_SERIES_ORDER, main
from proofs_check.report import write_text


def _refuse(*_args, **_kwargs):
    raise AssertionError("the expensive work started before the output paths were checked")


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import empirical.experiment
    import paper_figures
    import proofs_check

    monkeypatch.setattr(paper_figures, "build_figures", _refuse)
    monkeypatch.setattr(empirical.experiment, "run_experiment", _refuse)
    monkeypatch.setattr(proofs_check, "run_all", _refuse)


def _one_line_error(capsys: pytest.CaptureFixture[str], path: object) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(path) in err, err
    return err


@pytest.mark.parametrize("option", ["--out", "--cache", "--gallery"])
def test_figures_output_that_is_a_file_exits_3_before_building(
    option: str, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["figures", "--quick", option, str(blocker)]) == 3
    assert "is not a directory" in _one_line_error(capsys, blocker)
    assert main(["figures", "--quick", option, str(blocker / "below")]) == 3
    _one_line_error(capsys, blocker)


def test_read_only_output_exits_3_before_building(
    tmp_path: Path, no_work: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if Path(p) == read_only else real_access(p, mode))
    assert main(["figures", "--quick", "--out", str(read_only / "figs")]) == 3
    assert "is not writable" in _one_line_error(capsys, read_only)
    assert main(["train", "configs/digits_mlp_sgdm.toml", "--out", str(read_only)]) == 3
    _one_line_error(capsys, read_only)
    assert main(["verify", "--quick", "--json", str(read_only / "r.json")]) == 3
    _one_line_error(capsys, read_only)


def test_train_output_that_is_a_file_exits_3(tmp_path: Path, no_work: None, capsys) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("x")
    assert main(["train", "configs/digits_mlp_sgdm.toml", "--out", str(blocker)]) == 3
    _one_line_error(capsys, blocker)


def test_verify_markdown_naming_a_directory_exits_3(tmp_path: Path, no_work: None, capsys) -> None:
    assert main(["verify", "--quick", "--markdown", str(tmp_path)]) == 3
    assert "is a directory" in _one_line_error(capsys, tmp_path)


def test_an_os_error_during_the_work_is_one_line_and_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import paper_figures

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "figs" / "fig1.png"))

    monkeypatch.setattr(paper_figures, "build_figures", denied)
    assert main(["figures", "--quick", "--out", str(tmp_path / "figs")]) == 3
    assert "Permission denied" in _one_line_error(capsys, tmp_path / "figs" / "fig1.png")


def test_a_config_that_is_a_directory_or_binary_is_an_input_error(tmp_path: Path, capsys) -> None:
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, tmp_path)
    binary = tmp_path / "b.toml"
    binary.write_bytes(bytes(range(128, 256)))
    assert main(["train", str(binary), "--out", str(tmp_path / "runs")]) == 2
    assert "not UTF-8" in _one_line_error(capsys, binary)


@pytest.mark.parametrize("order", [0, MAX_SERIES_ORDER + 1, 60])
def test_series_order_is_bounded_with_a_message_naming_the_limit(order: int, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["derive", "series", "--order", str(order)])
    assert info.value.code == 2
    assert f"--order must be an integer in [1, {MAX_SERIES_ORDER}]" in capsys.readouterr().err


def test_a_failed_report_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.md"
    target.mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError):
        write_text("table", target)
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("proofs_check.report.os.replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_text("table", tmp_path / "other.md")
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


class _Stdout:
    """A stdout whose writes fail with ``error``."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def write(self, _text: str) -> int:
        raise self.error

    def flush(self) -> None:
        raise self.error

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")


def test_derive_output_that_cannot_be_written_exits_3_and_a_closed_pipe_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.sys, "stdout", _Stdout(OSError(28, "No space left on device")))
    assert main(["derive", "stability"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "<stdout>: No space left on device" in err
    monkeypatch.setattr(cli.sys, "stdout", _Stdout(BrokenPipeError(32, "Broken pipe")))
    assert main(["derive", "stability"]) == 0
