"""The empirical image figures fig1_batch_sweep and fig2_svag: builds, caching, corruption, statistics, paper scale."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import empirical.ensemble
import empirical.train
from empirical.checkpoints import CHECKPOINT_NAME
from empirical.data import load_dataset
from empirical.records import ResultStore, config_key
from empirical.run import prepare_dataset
from paper_figures import FigureContext, build_figures, mean_interval, paired_difference_interval
from paper_figures.batch_sweep import (
    SweepRun,
    batch_sweep_members,
    batch_sweep_settings,
    held_out_split,
    select_best_etas,
    summarize_batch_sweep,
)
from paper_figures.svag_sweep import CurveRun, summarize_svag_sweep, svag_sweep_members, svag_sweep_settings

IDS = ("fig1_batch_sweep", "fig2_svag")
MEMBERS = {
    "fig1_batch_sweep": (batch_sweep_settings, batch_sweep_members),
    "fig2_svag": (svag_sweep_settings, svag_sweep_members),
}
T_975_2 = 4.302652729749464  # Student-t 0.975 quantile, 2 degrees of freedom (scipy.stats.t.ppf; printed tables: 4.303)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, figure_data: dict[str, str]) -> Path:
    """Both figures built once at scale "tiny" from an empty cache; returns the folder holding cache/ and out/."""
    root = tmp_path_factory.mktemp("vision")
    build_figures(IDS, scale="tiny", cache_dir=root / "cache", out=root / "out", data=figure_data, progress=False)
    return root


def _copy(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built / "cache", tmp_path / "cache")
    return tmp_path


def _run_records(cache: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (cache / "runs").glob("*/record.json")}


def _expected_keys(figure_id: str, figure_data: dict[str, str]) -> set[str]:
    settings, members = MEMBERS[figure_id]
    return {config_key(m.identity()) for m in members(settings(FigureContext(scale="tiny", data=figure_data)))}


def _forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run was trained")

    monkeypatch.setattr(empirical.ensemble, "_train", boom)
    monkeypatch.setattr(empirical.train._Run, "train", boom)


def test_both_figures_render_and_the_manifest_names_every_run(built: Path, figure_data: dict[str, str]) -> None:
    manifest = json.loads((built / "out" / "manifest.json").read_text())
    entries = {entry["id"]: entry for entry in manifest["figures"]}
    assert set(entries) == set(IDS)
    for figure_id in IDS:
        for suffix in (".png", ".pdf"):
            assert (built / "out" / f"{figure_id}{suffix}").stat().st_size > 5000
        runs = [r for r in entries[figure_id]["records"] if r["store"] == "runs"]
        assert {r["key"] for r in runs} == _expected_keys(figure_id, figure_data)
        for run in runs:
            record = built / "cache" / "runs" / run["key"] / "record.json"
            assert hashlib.sha256(record.read_bytes()).hexdigest() == run["sha256"]
        assert entries[figure_id]["computed"] and entries[figure_id]["summary"]
    assert len(_expected_keys("fig1_batch_sweep", figure_data)) == 2 * 2 * 2 * 2  # B x optimizer x eta x seed
    assert len(_expected_keys("fig2_svag", figure_data)) == 2 * 2 * 2  # ell x optimizer x seed


def test_rebuilding_from_cache_trains_nothing(
    built: Path, tmp_path: Path, figure_data: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(built, tmp_path)
    before = _run_records(root / "cache")
    _forbid_training(monkeypatch)
    options = {"scale": "tiny", "cache_dir": root / "cache", "out": root / "out", "data": figure_data}
    options["progress"] = False
    cached = build_figures(IDS, **options)
    assert [o.computed for o in cached] == [False, False]
    # without the figure data the figures are recomputed, from the stored runs alone
    shutil.rmtree(root / "cache" / "figures")
    again = build_figures(IDS, **options)
    assert [o.computed for o in again] == [True, True]
    assert [o.summary for o in again] == [o.summary for o in cached]
    assert _run_records(root / "cache") == before


def test_a_corrupted_run_record_is_recomputed_not_plotted(
    built: Path, tmp_path: Path, figure_data: dict[str, str]
) -> None:
    root = _copy(built, tmp_path)
    store = ResultStore(root / "cache" / "runs")
    before = _run_records(root / "cache")
    key = sorted(_expected_keys("fig2_svag", figure_data))[0]
    record = store.entry_dir(key) / store.record_name
    record.write_bytes(record.read_bytes()[:100])  # what a killed writer or a bad disk leaves
    (outcome,) = build_figures(
        ["fig2_svag"], scale="tiny", cache_dir=root / "cache", out=root / "out", data=figure_data, progress=False
    )
    assert outcome.computed
    assert store.load(key).status == "completed"  # retrained, readable again
    after = _run_records(root / "cache")
    assert after[key] != before[key]
    assert {k: v for k, v in after.items() if k != key} == {k: v for k, v in before.items() if k != key}
    listed = {r["key"]: r["sha256"] for r in outcome.records if r["store"] == "runs"}
    assert listed[key] == hashlib.sha256(record.read_bytes()).hexdigest()


def test_held_out_accuracies_come_only_from_checkpoints_under_a_digest(
    built: Path, tmp_path: Path, figure_data: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong behaviour caught: fig1's held-out accuracies came from checkpoint.pt, which no digest covered, so a
    replaced checkpoint (here another run's, well formed) changed the chosen learning rates silently."""
    root = _copy(built, tmp_path)
    store = ResultStore(root / "cache" / "runs")
    with_checkpoints = [k for k in sorted(_expected_keys("fig1_batch_sweep", figure_data))
                        if (store.entry_dir(k) / CHECKPOINT_NAME).exists()]  # fmt: skip
    victim, donor = with_checkpoints[:2]
    shutil.copy(store.entry_dir(donor) / CHECKPOINT_NAME, store.entry_dir(victim) / CHECKPOINT_NAME)
    (outcome,) = build_figures(
        ["fig1_batch_sweep"], scale="tiny", cache_dir=root / "cache", out=root / "out", data=figure_data, progress=False
    )
    manifest = json.loads((built / "out" / "manifest.json").read_text())
    original = next(entry for entry in manifest["figures"] if entry["id"] == "fig1_batch_sweep")
    assert outcome.computed and outcome.summary == original["summary"]  # the run was retrained, not misread
    assert "checkpoint.pt: contents differ from the record's SHA-256" in capsys.readouterr().err
    assert store.load(victim).status == "completed"


def test_a_killed_build_keeps_the_finished_ensembles(
    tmp_path: Path, figure_data: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    train = empirical.ensemble._train
    calls: list[list[int]] = []

    def killed_at_the_second_ensemble(members: list, *args: object, **kwargs: object) -> object:
        calls.append(sorted({m.svag.ell for m in members}))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train(members, *args, **kwargs)

    monkeypatch.setattr(empirical.ensemble, "_train", killed_at_the_second_ensemble)
    options = {"scale": "tiny", "cache_dir": tmp_path / "cache", "out": tmp_path / "out", "data": figure_data}
    with pytest.raises(KeyboardInterrupt):
        build_figures(["fig2_svag"], progress=False, **options)
    finished = _run_records(tmp_path / "cache")
    assert calls == [[1], [2]] and len(finished) == 4  # the ell = 1 ensemble: 2 optimizers x 2 seeds
    (outcome,) = build_figures(["fig2_svag"], progress=False, **options)
    assert calls == [[1], [2], [2]]  # only the unfinished ensemble trains again
    after = _run_records(tmp_path / "cache")
    assert len(after) == 8 and {k: after[k] for k in finished} == finished
    assert outcome.computed


# ------------------------------------------------------------------------------ statistics on hand-made runs


def _sweep(batch: int, optimizer: str, eta: float, held: list[float | None], test: list[float]) -> list[SweepRun]:
    return [
        SweepRun(batch, optimizer, eta, seed, "completed" if h is not None else "diverged", t if h else None, h)
        for seed, (h, t) in enumerate(zip(held, test, strict=True))
    ]


def _hand_made() -> list[SweepRun]:
    return [
        # SGD: eta 0.2 has the better test accuracy but the worse held-out accuracy -> 0.1 is chosen
        *_sweep(32, "SGD", 0.1, [0.80, 0.82, 0.81], [0.80, 0.81, 0.82]),
        *_sweep(32, "SGD", 0.2, [0.79, 0.80, 0.80], [0.90, 0.91, 0.92]),
        # SGDM: eta 0.4 is best on held-out data for two seeds but one seed diverged -> ruled out
        *_sweep(32, "SGDM", 0.4, [0.99, None, 0.99], [0.99, 0.0, 0.99]),
        *_sweep(32, "SGDM", 0.2, [0.85, 0.86, 0.84], [0.81, 0.83, 0.85]),
        # a tie between etas goes to the smaller one
        *_sweep(32, "SGDM", 0.8, [0.85, 0.86, 0.84], [0.5, 0.5, 0.5]),
    ]


def test_best_eta_is_chosen_on_held_out_accuracy_among_etas_without_divergence() -> None:
    best = select_best_etas(_hand_made())
    assert best == {(32, "SGD"): 0.1, (32, "SGDM"): 0.2}
    every_eta_diverged = _sweep(64, "SGD", 0.1, [None, None], [0.0, 0.0])
    assert select_best_etas(every_eta_diverged) == {(64, "SGD"): None}
    one_eta = _sweep(64, "SGD", 0.1, [None, None], [0.0, 0.0])
    one_eta = [SweepRun(r.batch_size, r.optimizer, r.eta, r.seed, "completed", 0.5) for r in one_eta]
    assert select_best_etas(one_eta) == {(64, "SGD"): 0.1}  # a single eta needs no held-out data


def test_selection_rejects_inconsistent_run_sets() -> None:
    runs = _hand_made()
    with pytest.raises(ValueError, match="different seeds"):
        select_best_etas(runs[1:])  # SGD eta 0.1 lost its seed 0
    no_held_out = [SweepRun(r.batch_size, r.optimizer, r.eta, r.seed, r.status, r.test_acc) for r in runs]
    with pytest.raises(ValueError, match="needs held-out accuracies"):
        select_best_etas(no_held_out)


def test_batch_sweep_intervals_are_paired_student_t_over_seeds() -> None:
    runs = _hand_made()
    reordered = runs[::-1]  # pairing is by seed, not by position
    for summary in (summarize_batch_sweep(runs), summarize_batch_sweep(reordered)):
        (entry,) = summary["per_batch"]
        # SGD at 0.1: test 0.80, 0.81, 0.82; SGDM at 0.2: 0.81, 0.83, 0.85; paired gaps 0.01, 0.02, 0.03
        half = T_975_2 * 0.01 / math.sqrt(3)
        sgd = entry["SGD"]["test_acc"]
        assert sgd["mean"] == pytest.approx(0.81, abs=1e-12)
        assert (sgd["low"], sgd["high"]) == pytest.approx((0.81 - half, 0.81 + half), abs=1e-12)
        gap = entry["gap"]
        assert gap["mean"] == pytest.approx(0.02, abs=1e-12)
        assert (gap["low"], gap["high"]) == pytest.approx((0.02 - half, 0.02 + half), abs=1e-12)
        assert gap["n"] == 3 and not gap["excludes_zero"]  # 0.02 - 0.0248 < 0: three seeds are few
    # unpaired, the SGDM interval alone (sd 0.02) is twice as wide: the pairing is what the gap uses
    sgdm = entry["SGDM"]["test_acc"]
    assert sgdm["high"] - sgdm["mean"] == pytest.approx(2 * half, abs=1e-12)
    diverged_everywhere = [
        *_sweep(64, "SGD", 0.1, [None, None], [0, 0]),
        *_sweep(64, "SGDM", 0.1, [0.5, 0.6], [0.5, 0.6]),
    ]
    (entry,) = summarize_batch_sweep(diverged_everywhere)["per_batch"]
    assert entry["SGD"]["eta"] is None and entry["gap"] is None


def _curve(ell: int, optimizer: str, seed: int, accs: list[float], status: str = "completed") -> CurveRun:
    epochs = tuple(float(i) for i in range(len(accs)))
    return CurveRun(ell, optimizer, seed, status, epochs, tuple(accs), tuple(2.0 - a for a in accs))


def test_svag_summary_bands_gaps_and_gap_change() -> None:
    finals = {(1, "SGD"): [0.5, 0.6, 0.7], (1, "SGDM"): [0.8] * 3}
    finals.update({(8, "SGD"): [0.80, 0.81, 0.83], (8, "SGDM"): [0.81] * 3})
    runs = [_curve(ell, opt, seed, [0.1, acc]) for (ell, opt), accs in finals.items() for seed, acc in enumerate(accs)]
    runs.append(_curve(8, "SGDM", 3, [0.1, float("nan")], status="diverged"))
    summary = summarize_svag_sweep(runs)
    first, last = summary["per_ell"]
    band = first["SGD"]["test_acc"]
    expected = mean_interval([0.5, 0.6, 0.7])
    assert band["mean"][1] == pytest.approx(expected.mean) and band["high"][1] == pytest.approx(expected.high)
    assert first["SGD"]["train_loss"]["mean"][1] == pytest.approx(2.0 - 0.6)
    gap_1 = paired_difference_interval([0.8, 0.8, 0.8], [0.5, 0.6, 0.7])
    assert first["gap"]["mean"] == pytest.approx(0.2) and first["gap"]["low"] == pytest.approx(gap_1.low)
    assert last["SGDM"]["diverged"] == 1 and last["SGDM"]["n"] == 3
    assert last["gap"]["mean"] == pytest.approx((0.01 + 0.0 - 0.02) / 3, abs=1e-12)
    # per-seed gaps: ell=1 (0.3, 0.2, 0.1), ell=8 (0.01, 0.0, -0.02) -> differences (0.29, 0.2, 0.12)
    change = summary["gap_change"]
    expected_change = mean_interval([0.29, 0.2, 0.12])
    assert (change["from_ell"], change["to_ell"]) == (1, 8)
    assert (change["mean"], change["low"]) == pytest.approx((expected_change.mean, expected_change.low))
    shifted = [*runs[:2], _curve(1, "SGD", 2, [0.1, 0.7, 0.7])]
    with pytest.raises(ValueError, match="evaluated at different times"):
        summarize_svag_sweep(shifted)


# ------------------------------------------------------------------------------------------- paper scale


def test_paper_scale_batch_sweep_is_goyal_linear_scaling_on_imagenet() -> None:
    context = FigureContext(scale="full", device="cuda", data={"imagenet": "/data/imagenet"})
    members = batch_sweep_members(batch_sweep_settings(context))
    batch_sizes = sorted({m.train.batch_size for m in members})
    assert batch_sizes == [256, 512, 1024, 2048, 4096, 8192]
    assert len(members) == len(batch_sizes) * 2 * 3  # one eta per batch size, SGD and SGDM, 3 seeds
    for m in members:
        batch = m.train.batch_size
        assert m.optimizer.effective_lr == pytest.approx(4.0 * batch / 1024)
        # PyTorch's rate gamma = eta (1 - beta) = 0.1 B / 256 (Goyal et al.) for the momentum runs
        if m.optimizer.momentum:
            assert m.optimizer.effective_lr * (1 - m.optimizer.momentum) == pytest.approx(0.1 * batch / 256)
        assert (m.data.name, m.data.options["root"], m.model.name, m.device) == (
            "image_folder",
            "/data/imagenet",
            "resnet50",
            "cuda",
        )
        assert (m.train.length, m.train.warmup, m.train.milestones, m.optimizer.weight_decay) == (
            90,
            5,
            (30, 60, 80),
            1e-4,
        )
        schedule = m.schedule(1_281_167)
        assert schedule.warmup_steps == 5 * (1_281_167 // batch)
    assert {(m.optimizer.name, m.optimizer.momentum) for m in members} == {("sgd", 0.0), ("normalized_sgdm", 0.9)}


def test_paper_scale_svag_is_the_cifar10_resnet32_sweep() -> None:
    context = FigureContext(scale="full", device="cuda:1", data={"cifar10": "/data/cifar-10-batches-py"})
    members = svag_sweep_members(svag_sweep_settings(context))
    assert len(members) == 4 * 2 * 3
    steps_per_epoch = 50_000 // 512
    for m in members:
        ell = m.svag.ell
        assert (m.model.name, m.data.name, m.device, m.train.batch_size) == ("resnet32", "cifar10", "cuda:1", 512)
        assert (m.optimizer.effective_lr, m.optimizer.weight_decay, m.svag.momentum_scaling) == (0.2, 5e-4, "fixed")
        schedule = m.schedule(50_000)
        assert schedule.steps == ell * 160 * steps_per_epoch
        assert schedule.milestones == (ell * 80 * steps_per_epoch, ell * 120 * steps_per_epoch)
        assert schedule.lr == pytest.approx(0.2 / ell)
        assert schedule.momentum == (0.9 if m.optimizer.name == "normalized_sgdm" else 0.0)
    assert sorted({m.svag.ell for m in members}) == [1, 2, 4, 8]


@pytest.mark.parametrize(("figure_id", "flag"), [("fig1_batch_sweep", "imagenet"), ("fig2_svag", "cifar10")])
def test_paper_scale_without_data_names_the_flag_and_trains_nothing(
    figure_id: str, flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_training(monkeypatch)
    with pytest.raises(ValueError, match=f"--data {flag}=PATH"):
        build_figures([figure_id], scale="full", cache_dir=tmp_path / "cache", out=tmp_path / "out", progress=False)
    assert not (tmp_path / "cache" / "runs").exists()


def test_held_out_split_is_disjoint_from_the_training_subset(figure_data: dict[str, str]) -> None:
    settings = batch_sweep_settings(FigureContext(scale="tiny", data=figure_data))
    (member,) = batch_sweep_members(settings)[:1]
    trained = prepare_dataset(member, torch.device("cpu")).train  # what the runs train on
    full = load_dataset("fashion_mnist", **settings["data"]["options"]).train
    held = held_out_split(settings, full)

    def rows(split) -> set[bytes]:
        return {bytes(x.numpy().tobytes()) + bytes([int(y)]) for x, y in zip(split.inputs, split.targets, strict=True)}

    assert len(held) == settings["held_out"] and len(trained) == settings["data"]["train_subset"]
    assert not rows(held) & rows(trained)


def test_batch_sweep_settings_are_checked_at_the_boundary(figure_data: dict[str, str]) -> None:
    settings = batch_sweep_settings(FigureContext(scale="tiny", data=figure_data))
    no_subset = {**settings, "data": {**settings["data"], "train_subset": 0}}
    with pytest.raises(ValueError, match=r"held_out > 0 needs data\.train_subset > 0"):
        batch_sweep_members(no_subset)
    with pytest.raises(ValueError, match="eta_scaling must be one of"):
        batch_sweep_members({**settings, "eta_scaling": "sqrt"})
