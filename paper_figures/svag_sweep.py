r"""Figure 2: SGD and SGDM at one large effective learning rate under SVAG, :math:`\ell\in\{1,2,4,8\}`.

Figure ID ``fig2_svag``.  SVAG (paper Definition 5.1, THEORY.md 6.1) replaces the mini-batch loss by
:math:`r_1(\ell)\mathcal L_{\omega_1}+r_2(\ell)\mathcal L_{\omega_2}` of two independent batches,
:math:`r_{1,2}=\tfrac12(1\pm\sqrt{2\ell-1})`, and runs :math:`\ell` times as many steps at
:math:`\eta/\ell` (milestones scaled by :math:`\ell`, :math:`\beta` fixed: THEORY.md 6.5,
:func:`empirical.svag.svag_schedule`).  The gradient-noise SDE stays the same while the curvature-induced
term of Lemma 2.4 shrinks like :math:`1/\ell`.  SGD (:math:`x_{k+1}=x_k-\tfrac\eta\ell g_k`) and normalized
SGDM (paper eq. (3), :math:`m_{k+1}=\beta m_k+(1-\beta)g_k,\ x_{k+1}=x_k-\tfrac\eta\ell m_{k+1}`) are
compared at the same :math:`\eta`; runs with one seed share initialisation and batches (paired).

Columns: one per :math:`\ell`; rows: test accuracy and training loss (fixed training subset) against
epochs of the :math:`\ell=1` schedule, i.e. SDE time :math:`t=\sum_k\eta_k/\ell` in units of one epoch
of :math:`\eta` steps (the curves' ``epoch`` column), mean and 95% Student-t band over seeds.  Each column
reports the final paired gap SGDM - SGD with its 95% interval; the summary also has the change of that gap
from the smallest to the largest :math:`\ell` (per-seed differences of the per-seed gaps, t-interval).

What it illustrates (the paper's Figure 2, THEORY.md 9.1): at :math:`\ell=1` and a large :math:`\eta`
SGDM can be ahead of SGD (curvature-induced instability hurts SGD first); as :math:`\ell` grows both
approach the same SDE and the gap should close.  The measurement is reported whichever way it comes out.

Scales.  ``quick``: Fashion-MNIST (a fixed 16384-example training subset, the 10k test images), an MLP
with one hidden layer of 64 units (the small CNN is about 30x slower per example in the CPU ensemble, and
SVAG at :math:`\ell=8` costs 16 times the examples of :math:`\ell=1`), :math:`B=512`, :math:`\eta=1`
(SGDM's best of :math:`\{0.5,1,2\}` in a 3-seed probe, as the paper tunes :math:`\eta` for SGDM; SGD is
unstable there), :math:`\beta=0.9`, 5 epochs with x0.1 after epoch 3, 5 seeds, one ``torch.func``
ensemble per :math:`\ell`.  ``full``: CIFAR-10
ResNet-32 after ``configs/cifar10_resnet32_svag.toml`` (:math:`B=512`, :math:`\eta=0.2`,
:math:`\beta=0.9`, x0.1 at epochs 80 and 120 of 160, weight decay 5e-4), data from
``--data cifar10=PATH``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empirical.config import RunConfig, SvagConfig, TrainConfig
from empirical.run import RunResult
from paper_figures.image_experiments import (
    OPTIMIZER_LABELS,
    describe_setup,
    fashion_mnist_root,
    interval_record,
    optimizer_for,
    optimizer_label,
    run_parts,
    runs_over_seeds,
)
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.runs import train_figure_runs
from paper_figures.stats import mean_interval, paired_difference_interval
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, band, new_figure, save_figure

__all__ = [
    "SVAG_FIGURE",
    "CurveRun",
    "plot_svag_sweep",
    "summarize_svag_sweep",
    "svag_sweep_members",
    "svag_sweep_settings",
]

FIGURE_ID = "fig2_svag"
CURVES = ("test_acc", "train_loss")


def svag_sweep_settings(context: FigureContext) -> dict[str, Any]:
    """The sweep of each scale (JSON-able; it keys the cached figure data)."""
    if context.scale == "full":
        root = context.data_path("cifar10", FIGURE_ID, "the CIFAR-10 python batches (cifar-10-batches-py)")
        return {
            "data": {"name": "cifar10", "options": {"root": root}, "train_subset": 0},
            "model": {"name": "resnet32", "options": {}},
            "batch_size": 512,
            "eta": 0.2,
            "beta": 0.9,
            "weight_decay": 5e-4,
            "ells": [1, 2, 4, 8],
            "momentum_scaling": "fixed",
            "seeds": [0, 1, 2],
            "train": {
                "length": 160,
                "milestones": [80, 120],
                "lr_decay": 0.1,
                "eval_every": 1,
                "eval_train_samples": 10000,
                "eval_test_samples": 0,
                "eval_batch_size": 1000,
                "checkpoint_every": 5,
                "log_every": 50,
            },
            "device": context.device,
        }
    tiny = context.scale == "tiny"
    return {
        "data": {
            "name": "fashion_mnist",
            "options": {"root": fashion_mnist_root(context, FIGURE_ID)},
            "train_subset": 1024 if tiny else 16384,
        },
        "model": {"name": "mlp", "options": {"hidden": [16] if tiny else [64]}},
        "batch_size": 128 if tiny else 512,
        "eta": 1.0,
        "beta": 0.9,
        "weight_decay": 0.0,
        "ells": [1, 2] if tiny else [1, 2, 4, 8],
        "momentum_scaling": "fixed",
        "seeds": [0, 1] if tiny else [0, 1, 2, 3, 4],
        "train": {
            "length": 2 if tiny else 5,
            "milestones": [1] if tiny else [3],
            "lr_decay": 0.1,
            "eval_every": 0.5,
            "eval_train_samples": 256 if tiny else 2048,
            "eval_test_samples": 0,
            "eval_batch_size": 1000 if tiny else 2500,
            "checkpoint_every": 0 if tiny else 1,  # epochs: a killed quick ensemble resumes, losing < 1 epoch
            "log_every": 50,
        },
        "device": context.device,
    }


def svag_sweep_members(settings: Mapping[str, Any]) -> list[RunConfig]:
    """Every run: ell x optimizer (SGD, normalized SGDM) x seed, in that order, all at the same eta."""
    schedule = TrainConfig(batch_size=settings["batch_size"], **run_parts(settings)[2])
    members = []
    for ell in settings["ells"]:
        svag = SvagConfig(ell=ell, momentum_scaling=settings["momentum_scaling"])
        for label in OPTIMIZER_LABELS:
            optimizer = optimizer_for(label, settings["eta"], settings["beta"], settings["weight_decay"])
            members += runs_over_seeds(settings, optimizer, schedule, f"{FIGURE_ID} ell={ell},{label}", svag)
    return members


@dataclass(frozen=True)
class CurveRun:
    """One run's evaluation curves against SDE time (``epochs``), its SVAG factor, optimizer, seed, status."""

    ell: int
    optimizer: str
    seed: int
    status: str
    epochs: tuple[float, ...]
    test_acc: tuple[float, ...]
    train_loss: tuple[float, ...]
    key: str = ""


def _band(curves: Sequence[Sequence[float]], level: float) -> dict[str, list[float]]:
    """Mean and interval over seeds at every evaluation point (rows: seeds)."""
    intervals = [mean_interval(column, level) for column in zip(*curves, strict=True)]
    return {name: [getattr(i, name) for i in intervals] for name in ("mean", "low", "high")}


def summarize_svag_sweep(runs: Sequence[CurveRun], level: float = 0.95) -> dict[str, Any]:
    """Per ell and optimizer: mean curves with bands over seeds, final test accuracy, and the paired final gap.

    Diverged runs are left out (and counted); completed runs of one ell and optimizer must share their
    evaluation times.  The gap SGDM - SGD pairs the runs of one seed; ``gap_change`` is the interval of
    the per-seed differences gap(smallest ell) - gap(largest ell) (positive: the gap closes as ell grows).
    """
    ells = sorted({r.ell for r in runs})
    per_ell = []
    per_seed_gaps: dict[int, dict[int, float]] = {}
    for ell in ells:
        entry: dict[str, Any] = {"ell": ell, "gap": None}
        finals: dict[str, dict[int, float]] = {}
        for label in OPTIMIZER_LABELS:
            cell = sorted((r for r in runs if r.ell == ell and r.optimizer == label), key=lambda r: r.seed)
            done = [r for r in cell if r.status == "completed"]
            entry[label] = {"n": len(done), "diverged": len(cell) - len(done), "final_test_acc": None}
            if not done:
                continue
            if len({r.epochs for r in done}) != 1:
                raise ValueError(f"ell={ell}, {label}: the runs were evaluated at different times")
            entry[label]["epochs"] = list(done[0].epochs)
            for name in CURVES:
                entry[label][name] = _band([getattr(r, name) for r in done], level)
            finals[label] = {r.seed: r.test_acc[-1] for r in done}
            entry[label]["final_test_acc"] = interval_record(mean_interval(list(finals[label].values()), level))
        if len(finals) == 2:
            seeds = sorted(set(finals["SGD"]) & set(finals["SGDM"]))
            sgdm, sgd = [finals["SGDM"][s] for s in seeds], [finals["SGD"][s] for s in seeds]
            entry["gap"] = interval_record(paired_difference_interval(sgdm, sgd, level))
            per_seed_gaps[ell] = {s: a - b for s, a, b in zip(seeds, sgdm, sgd, strict=True)}
        per_ell.append(entry)
    gap_change = None
    if len(per_seed_gaps) >= 2:
        first, last = min(per_seed_gaps), max(per_seed_gaps)
        seeds = sorted(set(per_seed_gaps[first]) & set(per_seed_gaps[last]))
        if seeds:
            change = paired_difference_interval(
                [per_seed_gaps[first][s] for s in seeds], [per_seed_gaps[last][s] for s in seeds], level
            )
            gap_change = {"from_ell": first, "to_ell": last, **interval_record(change)}
    summary = {}
    for entry in per_ell:
        for label in OPTIMIZER_LABELS:
            final = entry[label]["final_test_acc"]
            summary[f"ell={entry['ell']} {label}"] = "all diverged" if final is None else f"{final['text']} %"
        if entry["gap"] is not None:
            flag = "excludes 0" if entry["gap"]["excludes_zero"] else "includes 0"
            summary[f"ell={entry['ell']} gap SGDM-SGD"] = f"{entry['gap']['text']} pp (95% CI {flag})"
    if gap_change is not None:
        flag = "excludes 0" if gap_change["excludes_zero"] else "includes 0"
        summary[f"gap(ell={gap_change['from_ell']}) - gap(ell={gap_change['to_ell']})"] = (
            f"{gap_change['text']} pp (95% CI {flag})"
        )
    return {"ells": ells, "per_ell": per_ell, "gap_change": gap_change, "level": level, "summary": summary}


def _curve_run(member: RunConfig, result: RunResult) -> CurveRun:
    curves = result.curves
    return CurveRun(
        ell=member.svag.ell,
        optimizer=optimizer_label(member),
        seed=member.seed,
        status=result.status,
        epochs=tuple(curves["epoch"]),
        test_acc=tuple(curves["test_acc"]),
        train_loss=tuple(curves["train_loss"]),
        key=result.key,
    )


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    members = svag_sweep_members(settings)
    results = train_figure_runs(members, context)
    runs = [_curve_run(m, r) for m, r in zip(members, results, strict=True)]
    data = summarize_svag_sweep(runs)
    data["settings"] = {
        "eta": settings["eta"],
        "beta": settings["beta"],
        "batch_size": settings["batch_size"],
        "milestones": list(settings["train"]["milestones"]),
        "train_subset": settings["data"]["train_subset"],
        **describe_setup(settings),
    }
    data["runs"] = [{k: v for k, v in dataclasses.asdict(run).items() if k not in ("epochs", *CURVES)} for run in runs]
    return Computed(data=data, runs=tuple(m.identity() for m in members), seeds=tuple(settings["seeds"]))


def plot_svag_sweep(data: Mapping[str, Any], stem: str | Path) -> list[Path]:
    """One column per ell: test accuracy (top) and training loss (bottom) against SDE time, with bands."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    per_ell = data["per_ell"]
    info = data.get("settings", {})
    fig, axes = new_figure(len(per_ell), 2, width=FULL_WIDTH, height=3.3, sharex=True, sharey="row")
    for column, entry in enumerate(per_ell):
        top, bottom = axes[0][column], axes[1][column]
        for label in OPTIMIZER_LABELS:
            cell = entry[label]
            if "epochs" not in cell:
                continue
            name = "SGD" if label == "SGD" else f"SGDM ($\\beta$={info.get('beta', 0.9):g})"
            epochs = np.asarray(cell["epochs"])
            acc = cell["test_acc"]
            band(
                top,
                epochs,
                100 * np.asarray(acc["mean"]),
                np.clip(100 * np.asarray(acc["low"]), 0, 100),
                np.clip(100 * np.asarray(acc["high"]), 0, 100),
                color=OPTIMIZER_COLORS[label],
                label=name,
            )
            loss = cell["train_loss"]
            positive_low = np.maximum(np.asarray(loss["low"]), 1e-3 * np.asarray(loss["mean"]))  # log axis
            band(bottom, epochs, loss["mean"], positive_low, loss["high"], color=OPTIMIZER_COLORS[label])
        for milestone in info.get("milestones", []):
            for ax in (top, bottom):
                ax.axvline(milestone, color="0.55", lw=0.7, ls=":")
        gap = entry["gap"]
        gap_text = "" if gap is None else f"\ngap {gap['text']} pp" + ("*" if gap["excludes_zero"] else "")
        top.set_title(f"$\\ell$ = {entry['ell']}{gap_text}")
        bottom.set_yscale("log")
        bottom.yaxis.set_major_locator(FixedLocator([0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10]))
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        bottom.yaxis.set_minor_formatter(NullFormatter())
        bottom.set_xlabel("epoch (SDE time)")
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[1][0].set_ylabel("training loss")
    axes[1][-1].legend(*axes[0][0].get_legend_handles_labels(), loc="upper right")
    change = data.get("gap_change")
    subset = f" ({info['train_subset']} examples)" if info.get("train_subset") else ""
    caption = (
        f"{info.get('dataset', '')}{subset}, {info.get('model', '')}, $\\eta$={info.get('eta', 0):g}, "
        f"$B$={info.get('batch_size', 0)}; final gap SGDM$-$SGD with 95% CI over seeds (* excludes 0); "
        "dotted: learning-rate decay"
    )
    if change is not None:
        caption += f"\ngap($\\ell$={change['from_ell']}) $-$ gap($\\ell$={change['to_ell']}) = {change['text']} pp"
    fig.suptitle(caption, fontsize=6.5)
    return save_figure(fig, stem)


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    return plot_svag_sweep(data, stem)


SVAG_FIGURE = register(
    FigureSpec(
        figure_id=FIGURE_ID,
        title="SVAG sweep: SGD vs SGDM at one effective learning rate, ell in {1, 2, 4, 8}",
        kind="empirical",
        settings=svag_sweep_settings,
        compute=_compute,
        plot=_plot,
        members=svag_sweep_members,
    )
)
