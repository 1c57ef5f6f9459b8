"""``mvm sweep`` and ``mvm figures --executor``: usage errors, a missing submitit, and the figures' job wiring."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from empirical import ResultStore, expand_grid, load_config
from mvm.cli import main

REPO = Path(__file__).resolve().parents[2]
GRID = """
name = "tiny"
device = "cpu"
[data]
name = "digits"
[model]
name = "mlp"
hidden = [16]
[optimizer]
name = "normalized_sgdm"
eta = 0.1
momentum = 0.9
[train]
batch_size = 32
unit = "step"
length = 20
eval_every = 10
[grid]
seed = [0, 1]
"""


def write_grid(folder: Path) -> Path:
    path = folder / "grid.toml"
    path.write_text(GRID)
    return path


def test_missing_submitit_is_exit_2_with_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    config = write_grid(tmp_path)
    assert main(["sweep", str(config), "--executor", "slurm", "--time", "60", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "pip install 'marginal-momentum[cluster]'" in err
    assert main(["figures", "--only", "fig2_svag", "--quick", "--executor", "local", "--cache", str(tmp_path)]) == 2
    assert "pip install 'marginal-momentum[cluster]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "CONFIG", "--executor", "local", "--partition", "gpu"], "--partition apply to --executor slurm"),
        (["sweep", "CONFIG", "--executor", "slurm", "--time", "0"], "--time must be a positive"),
        (["sweep", "CONFIG", "--executor", "slurm"], "--time MINUTES is required with --executor slurm"),
        (
            ["sweep", "CONFIG", "--executor", "slurm", "--time", "9", "--gpus-per-job", "4", "--cpus-per-job", "2"],
            "tasks",
        ),
        (["sweep", "absent.toml", "--executor", "local"], "absent.toml"),
        (["figures", "--only", "fig2_svag", "--mem", "4"], "--mem need(s) --executor"),
        (["figures", "--only", "fig2_svag", "--no-wait"], "--no-wait need(s) --executor"),
    ],
)
def test_usage_errors_are_exit_2(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit")
    config = str(write_grid(tmp_path))
    argv = [config if a == "CONFIG" else a for a in argv]
    option = "--out" if argv[0] == "sweep" else "--cache"
    assert main([*argv, option, str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_sweep_requires_an_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["sweep", str(write_grid(tmp_path))])
    assert excinfo.value.code == 2


def test_figures_executor_trains_the_members_as_jobs_then_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The figures' runs go to real local jobs in CACHE/runs before the build; ``--no-wait`` does not build."""
    pytest.importorskip("submitit")
    import paper_figures

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    members = expand_grid(load_config(write_grid(tmp_path)))[:1]
    seen_contexts, builds = [], []

    def fake_members(only, context):
        seen_contexts.append((only, context))
        return [("fake_figure", members, False)]

    monkeypatch.setattr(paper_figures, "figure_run_members", fake_members)
    monkeypatch.setattr(paper_figures, "build_figures", lambda *args, **kwargs: builds.append(kwargs))
    cache = tmp_path / "cache"
    argv = ["figures", "--only", "fake_figure", "--quick", "--cache", str(cache), "--out", str(tmp_path / "out")]

    assert main([*argv, "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "fake_figure: 0 finished, 1 submitted in 1 job(s) (local)" in out and "1 of 1 job(s) finished" in out
    record = ResultStore(cache / "runs").load(members[0].identity())
    assert record is not None and record.status == "completed" and not record.files  # final_checkpoints=False
    assert len(builds) == 1 and seen_contexts[0][1].scale == "quick"

    assert main([*argv, "--executor", "local", "--no-wait"]) == 0
    assert "fake_figure: 1 finished, 0 submitted" in capsys.readouterr().out
    assert len(builds) == 1  # --no-wait submits and returns: no build


def test_figure_run_members_lists_what_the_figures_train() -> None:
    from paper_figures import FigureContext, figure_run_members
    from paper_figures.lm_finetune import LM_FINETUNE_TABLE, lm_finetune_members
    from paper_figures.svag_sweep import svag_sweep_members, svag_sweep_settings

    context = FigureContext(scale="tiny", data={"fashion_mnist": "fm", "review_snippets": "x.csv.bz2"})
    listed = figure_run_members(["fig_slow_sde", "fig2_svag", "table_lm_finetune"], context)
    assert [(figure_id, final) for figure_id, _, final in listed] == [("fig2_svag", True), ("table_lm_finetune", False)]
    assert listed[0][1] == svag_sweep_members(svag_sweep_settings(context))
    assert listed[1][1] == lm_finetune_members(LM_FINETUNE_TABLE.settings(context))
