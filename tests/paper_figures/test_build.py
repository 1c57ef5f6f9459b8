"""The figure build: cache reuse, corrupted and partial entries recomputed, manifest, CLI, statistics."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from empirical.records import ResultStore, config_key
from mvm.cli import main
from paper_figures import (
    Computed,
    FigureContext,
    FigureSpec,
    available_figures,
    build_figures,
    default_figures,
    figure_cache_key,
    mean_interval,
    new_figure,
    paired_difference_interval,
    registry,
    save_figure,
)


class _CountingFigure:
    """A figure whose compute counts its calls and names one run record it writes itself."""

    def __init__(self, figure_id: str = "fake_figure") -> None:
        self.calls = 0
        self.spec = FigureSpec(
            figure_id=figure_id,
            title="a fake figure",
            kind="theory",
            settings=lambda context: {"points": 5 if context.scale == "tiny" else 50},
            compute=self.compute,
            plot=self.plot,
        )

    def compute(self, settings, context: FigureContext) -> Computed:
        self.calls += 1
        run = {"fake_run": settings["points"]}
        ResultStore(context.runs_dir).save(run, status="completed", metrics={"value": 1.0}, curves={"x": [0.0, 1.0]})
        x = np.linspace(0, 1, settings["points"])
        return Computed(data={"x": x, "y": x**2, "summary": {"points": settings["points"]}}, runs=(run,), seeds=(3,))

    @staticmethod
    def plot(data, stem: Path) -> list[Path]:
        fig, axes = new_figure()
        axes[0][0].plot(data["x"], data["y"])
        return save_figure(fig, stem)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> _CountingFigure:
    figure = _CountingFigure()
    available_figures()  # import the catalogue first, so the fake is added to it and removed afterwards
    monkeypatch.setitem(registry._REGISTRY, figure.spec.figure_id, figure.spec)
    return figure


def _build(tmp_path: Path, **kwargs):
    return build_figures(
        ["fake_figure"], scale="tiny", out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False, **kwargs
    )


def test_second_build_replots_from_cache_without_computing(fake: _CountingFigure, tmp_path: Path) -> None:
    (first,) = _build(tmp_path)
    png = tmp_path / "out" / "fake_figure.png"
    png.unlink()
    (second,) = _build(tmp_path)
    assert fake.calls == 1
    assert first.computed and not second.computed
    assert png.stat().st_size > 0 and (tmp_path / "out" / "fake_figure.pdf").stat().st_size > 0
    assert second.summary == {"points": 5}
    _build(tmp_path, recompute=True)
    assert fake.calls == 2


def test_manifest_lists_files_configs_seeds_records_and_times(fake: _CountingFigure, tmp_path: Path) -> None:
    _build(tmp_path)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (entry,) = manifest["figures"]
    assert manifest["scale"] == "tiny"
    assert entry["id"] == "fake_figure"
    assert sorted(entry["files"]) == ["fake_figure.pdf", "fake_figure.png"]
    assert all((tmp_path / "out" / name).stat().st_size > 0 for name in entry["files"])
    assert entry["configs"] == [{"fake_run": 5}]
    assert entry["seeds"] == [3]
    stores = {record["store"]: record for record in entry["records"]}
    assert stores["runs"]["key"] == config_key({"fake_run": 5})
    figure_key = config_key(figure_cache_key(fake.spec, {"points": 5}))
    assert stores["figures"]["key"] == figure_key
    for record in entry["records"]:
        path = tmp_path / "cache" / record["store"] / record["key"] / "record.json"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert entry["compute_wall_time_s"] >= 0 and entry["plot_wall_time_s"] > 0 and entry["computed"] is True


@pytest.mark.parametrize("damage", ["truncate", "delete_record_keep_curves", "garbage"])
def test_corrupted_figure_entry_is_recomputed_not_plotted(fake: _CountingFigure, tmp_path: Path, damage: str) -> None:
    _build(tmp_path)
    key = config_key(figure_cache_key(fake.spec, {"points": 5}))
    folder = tmp_path / "cache" / "figures" / key
    record = folder / "record.json"
    if damage == "truncate":
        record.write_bytes(record.read_bytes()[:40])
    elif damage == "garbage":
        document = json.loads(record.read_text())
        document["metrics"]["data"]["y"] = "not plotted"
        document["config"]["settings"]["points"] = 6  # no longer hashes to its key
        record.write_text(json.dumps(document))
    else:
        record.unlink()
        (folder / "curves.csv").write_text("x\n1\n")
    (outcome,) = _build(tmp_path)
    assert outcome.computed and fake.calls == 2
    assert ResultStore(tmp_path / "cache" / "figures").verify() == {}


def test_changed_run_record_invalidates_the_figure(fake: _CountingFigure, tmp_path: Path) -> None:
    _build(tmp_path)
    run_folder = tmp_path / "cache" / "runs" / config_key({"fake_run": 5})
    (run_folder / "curves.csv").write_text("x\n0.0\n2.0\n")  # altered: its SHA-256 no longer matches
    (outcome,) = _build(tmp_path)
    assert outcome.computed and fake.calls == 2


def test_unknown_figure_and_missing_data_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown figure 'nope'; known: .*fig_slow_sde"):
        build_figures(["nope"], out=tmp_path)
    context = FigureContext(scale="full")
    with pytest.raises(ValueError, match="--data imagenet=PATH"):
        context.data_path("imagenet", "fig1_batch_sweep", "an ImageNet folder")
    assert context.data_path("imagenet", "x", "y", default="/d") == "/d"
    with pytest.raises(ValueError, match=r"unknown data name\(s\) \['imagnet'\]"):
        FigureContext(data={"imagnet": "/data/imagenet"})
    with pytest.raises(ValueError, match="not in DATA_NAMES"):
        context.data_path("mnist", "x", "y", default="/d")
    with pytest.raises(ValueError, match="scale must be one of"):
        FigureContext(scale="medium")
    with pytest.raises(ValueError, match="kind must be one of"):
        FigureSpec("x", "t", "poster", lambda c: {}, lambda s, c: Computed({}), lambda d, s: [])


def test_every_registered_figure_has_a_unique_file_safe_id() -> None:
    ids = available_figures()
    assert len(ids) == len(set(ids)) and all(figure_id.isidentifier() for figure_id in ids)
    assert "fig_slow_sde" in ids


def test_slow_sde_figure_builds_at_tiny_scale(tmp_path: Path) -> None:
    (outcome,) = build_figures(
        ["fig_slow_sde"], scale="tiny", out=tmp_path / "o", cache_dir=tmp_path / "c", progress=False
    )
    assert all(path.stat().st_size > 1000 for path in outcome.files)
    assert outcome.summary["slow_sde_s_final"] == pytest.approx(0.2365029, abs=1e-6)  # oracle 22


def test_cli_lists_builds_and_rejects_bad_data(fake: _CountingFigure, tmp_path: Path, capsys) -> None:
    assert main(["figures", "--list"]) == 0
    assert "fig_slow_sde" in capsys.readouterr().out
    args = ["figures", "--only", "fake_figure", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]
    assert main([*args, "--no-progress", "--gallery", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "fake_figure: computed" in out and "points: 50" in out
    assert (tmp_path / "g" / "fake_figure.png").stat().st_size > 0
    assert main([*args, "--no-progress"]) == 0
    assert "fake_figure: cached" in capsys.readouterr().out
    assert main([*args, "--data", "imagenet"]) == 2
    assert "--data takes NAME=PATH" in capsys.readouterr().err
    assert main(["figures", "--only", "nope"]) == 2


def test_mean_interval_matches_scipy_and_paired_difference_uses_pairs() -> None:
    samples = [0.81, 0.84, 0.80, 0.86]
    interval = mean_interval(samples, level=0.9)
    low, high = stats.t.interval(0.9, 3, loc=np.mean(samples), scale=stats.sem(samples))
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)
    # A common offset between paired runs is resolved although each group's spread is much larger.
    a = np.array([0.70, 0.80, 0.90])
    gap = paired_difference_interval(a + 0.01, a)
    assert gap.mean == pytest.approx(0.01) and gap.half_width == pytest.approx(0.0, abs=1e-12)
    assert mean_interval([0.5]).n == 1 and mean_interval([0.5]).format() == "0.500"
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        mean_interval([1.0, float("nan")])


def test_every_figure_id_builds_at_tiny_scale_and_the_manifest_lists_every_file(
    tmp_path: Path, figure_data: dict[str, str]
) -> None:
    """All IDs in one build from fixture data: non-empty PNG and PDF each, and nothing unlisted in ``out``."""
    out = tmp_path / "out"
    outcomes = build_figures(scale="tiny", out=out, cache_dir=tmp_path / "cache", data=figure_data, progress=False)
    assert [o.figure_id for o in outcomes] == default_figures()
    assert set(available_figures()) - set(default_figures()) == {"fig_verifier_power"}  # on demand, tested alone
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {name for entry in manifest["figures"] for name in entry["files"]}
    assert listed == {path.name for path in out.iterdir()} - {"manifest.json"}
    for entry in manifest["figures"]:
        suffixes = {Path(name).suffix for name in entry["files"]}
        assert {".png", ".pdf"} <= suffixes, entry["id"]
        assert all((out / name).stat().st_size > 0 for name in entry["files"])
        assert entry["records"][0]["store"] == "figures" and entry["summary"], entry["id"]
