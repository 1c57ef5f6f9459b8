r"""Figure 1: SGD and SGDM at matched effective learning rate across batch sizes (empirical, real data).

Figure ID ``fig1_batch_sweep``.  For every batch size :math:`B` and optimizer, SGD
(:math:`x_{k+1}=x_k-\eta_k g_k`) and normalized SGDM (paper eq. (3),
:math:`m_{k+1}=\beta m_k+(1-\beta)g_k,\ x_{k+1}=x_k-\eta_k m_{k+1}`, :math:`\beta=0.9`) are trained for the
same number of epochs at every effective learning rate :math:`\eta` of a small grid, with several seeds; a
seed fixes the initialisation and the batch order, so SGD and SGDM runs with one seed are paired.  For
each :math:`(B,\text{optimizer})` the best :math:`\eta` is the one with the highest final accuracy on a
held-out split (training examples outside the training subset, :func:`empirical.data.fixed_subset`),
averaged over seeds, among the :math:`\eta` at which no seed diverged; the figure reports the test
accuracy of that choice, so the selection does not look at the test set.

Panels: (a) test accuracy against :math:`B` (mean and 95% Student-t band over seeds), (b) the paired gap
SGDM - SGD with its 95% interval (:func:`paper_figures.stats.paired_difference_interval`), (c) held-out
accuracy against :math:`\eta` for every batch size (the selection; chosen :math:`\eta` circled).

What it illustrates (paper abstract and Section 2, THEORY.md 2.3, 2.4 and 9.2): at small batch the
gradient noise dominates and SGD and SGDM at equal :math:`\eta` behave alike (Theorem 3.5); at large
batch the learning rates worth using approach SGD's curvature stability limit :math:`\eta\lambda<2`, which
SGDM relaxes to :math:`\eta\lambda<2(1+\beta)/(1-\beta)` (THEORY.md 5.3), so SGDM can be ahead there.
Which way the measurement comes out is reported, not assumed.

Scales.  ``quick``: Fashion-MNIST (a fixed 32768-example training subset, 8192 other training examples
held out), an MLP with one hidden layer of 64 units (the small CNN trains about 30x slower per example in
the CPU ensemble, beyond the 2-core budget), :math:`B\in\{32,128,512,2048\}`, the grid
:math:`\eta\in\{0.1,0.2,0.4,0.8\}` for every batch size (it spans SGD's stability limit at the largest
batch), 5 seeds, 5 epochs with a x0.1 decay after epoch 4, no warm-up, trained as one ``torch.func``
ensemble per batch size.  A fixed number of epochs gives every batch size the same compute (examples
processed), as in Goyal et al.'s ImageNet sweep; larger batches then take fewer, larger steps.
``full``: ImageNet ResNet-50 after ``configs/imagenet_resnet50_b1024.toml`` (Goyal et al. 2017 [R]:
:math:`\eta=4.0\cdot B/1024`, i.e. PyTorch :math:`\gamma=0.1B/256` with :math:`\eta=\gamma/(1-\beta)`,
5 warm-up epochs, x0.1 at epochs 30, 60, 80, 90 epochs), :math:`B` from 256 to 8192, data from
``--data imagenet=PATH``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empirical.config import RunConfig, TrainConfig
from empirical.data import fixed_subset, load_dataset
from empirical.models import build_model
from empirical.records import CorruptRecordError, ResultStore
from empirical.run import RunResult, evaluate, load_final_checkpoint, resolve_device
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
from paper_figures.runs import discard_corrupt_entries, train_figure_runs
from paper_figures.stats import mean_interval, paired_difference_interval
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, new_figure, save_figure

__all__ = [
    "BATCH_SWEEP_FIGURE",
    "SweepRun",
    "batch_sweep_members",
    "batch_sweep_settings",
    "held_out_split",
    "plot_batch_sweep",
    "select_best_etas",
    "summarize_batch_sweep",
]

FIGURE_ID = "fig1_batch_sweep"
#: eta(B) = eta_ref (B / B_ref)^p: the exponent p of each rule
ETA_SCALINGS = {"none": 0, "linear": 1}


def batch_sweep_settings(context: FigureContext) -> dict[str, Any]:
    """The sweep of each scale (JSON-able; it keys the cached figure data)."""
    if context.scale == "full":
        root = context.data_path("imagenet", FIGURE_ID, "an ImageNet tree ROOT/{train,val}/CLASS/IMAGE")
        return {
            "data": {"name": "image_folder", "options": {"root": root, "num_workers": 16}, "train_subset": 0},
            "held_out": 0,  # one eta per batch size (linear scaling): nothing is selected
            "model": {"name": "resnet50", "options": {"zero_init_residual": True}},
            "batch_sizes": [256, 512, 1024, 2048, 4096, 8192],
            "etas_at_reference": [4.0],
            "reference_batch": 1024,
            "eta_scaling": "linear",
            "beta": 0.9,
            "weight_decay": 1e-4,
            "seeds": [0, 1, 2],
            "train": {
                "length": 90,
                "warmup": 5,
                "milestones": [30, 60, 80],
                "lr_decay": 0.1,
                "eval_train_samples": 10000,
                "eval_test_samples": 0,
                "eval_batch_size": 500,
                "checkpoint_every": 1,
                "log_every": 100,
            },
            "device": context.device,
        }
    root = fashion_mnist_root(context, FIGURE_ID)
    tiny = context.scale == "tiny"
    return {
        "data": {"name": "fashion_mnist", "options": {"root": root}, "train_subset": 1024 if tiny else 32768},
        "held_out": 512 if tiny else 8192,
        "model": {"name": "mlp", "options": {"hidden": [16] if tiny else [64]}},
        "batch_sizes": [32, 256] if tiny else [32, 128, 512, 2048],
        "etas_at_reference": [0.1, 0.4] if tiny else [0.1, 0.2, 0.4, 0.8],
        "reference_batch": 32,
        "eta_scaling": "none",
        "beta": 0.9,
        "weight_decay": 0.0,
        "seeds": [0, 1] if tiny else [0, 1, 2, 3, 4],
        "train": {
            "length": 1 if tiny else 5,
            "warmup": 0,
            "milestones": [] if tiny else [4],
            "lr_decay": 0.1,
            "eval_train_samples": 256 if tiny else 2048,
            "eval_test_samples": 0,
            "eval_batch_size": 1000,
            "checkpoint_every": 0 if tiny else 1,  # epochs: a killed quick ensemble resumes, losing < 1 epoch
            "log_every": 50,
        },
        "device": context.device,
    }


def _etas(settings: Mapping[str, Any], batch_size: int) -> list[float]:
    r""":math:`\eta(B)=\eta_{\rm ref}\,(B/B_{\rm ref})^p` with :math:`p=1` (``"linear"``) or 0 (``"none"``)."""
    power = ETA_SCALINGS[settings["eta_scaling"]]
    factor = (batch_size / settings["reference_batch"]) ** power
    return [float(eta * factor) for eta in settings["etas_at_reference"]]


def batch_sweep_members(settings: Mapping[str, Any]) -> list[RunConfig]:
    """Every run of the sweep: batch size x optimizer (SGD, normalized SGDM) x eta x seed, in that order."""
    if len(settings["etas_at_reference"]) > 1 and not settings["held_out"]:
        raise ValueError("a grid of several eta needs a held-out split (held_out > 0) to choose from")
    if settings["held_out"] and not settings["data"]["train_subset"]:
        raise ValueError(
            "held_out > 0 needs data.train_subset > 0: the held-out examples are the training examples outside "
            "the subset (without one, eta would be chosen on the training data)"
        )
    if settings["eta_scaling"] not in ETA_SCALINGS:
        raise ValueError(f"eta_scaling must be one of {list(ETA_SCALINGS)}, got {settings['eta_scaling']!r}")
    train = run_parts(settings)[2]
    members = []
    for batch_size in settings["batch_sizes"]:
        schedule = TrainConfig(batch_size=batch_size, eval_every=train["length"], **train)
        for label in OPTIMIZER_LABELS:
            for eta in _etas(settings, batch_size):
                optimizer = optimizer_for(label, eta, settings["beta"], settings["weight_decay"])
                name = f"{FIGURE_ID} B={batch_size},{label},eta={eta:g}"
                members += runs_over_seeds(settings, optimizer, schedule, name)
    return members


@dataclass(frozen=True)
class SweepRun:
    """The outcome of one run of the sweep: final test accuracy and held-out accuracy (``None`` if diverged)."""

    batch_size: int
    optimizer: str
    eta: float
    seed: int
    status: str
    test_acc: float | None
    held_out_acc: float | None = None
    key: str = ""


def select_best_etas(runs: Sequence[SweepRun]) -> dict[tuple[int, str], float | None]:
    """For each (batch size, optimizer) the eta of highest held-out accuracy averaged over seeds.

    Only etas at which every seed completed count (a diverged seed rules its eta out); ties go to the
    smaller eta.  With a single eta it is chosen without held-out accuracies.  ``None`` when every eta
    diverged.  The test accuracy is never looked at.
    """
    cells: dict[tuple[int, str], dict[float, list[SweepRun]]] = {}
    for run in runs:
        cells.setdefault((run.batch_size, run.optimizer), {}).setdefault(run.eta, []).append(run)
    best: dict[tuple[int, str], float | None] = {}
    for cell, by_eta in cells.items():
        seed_sets = {tuple(sorted(r.seed for r in group)) for group in by_eta.values()}
        if len(seed_sets) != 1:
            raise ValueError(f"batch size {cell[0]}, {cell[1]}: the etas were run with different seeds {seed_sets}")
        scores = {}
        for eta, group in by_eta.items():
            if any(r.status != "completed" for r in group):
                continue
            if len(by_eta) == 1:
                scores[eta] = 0.0
                continue
            values = [r.held_out_acc for r in group]
            if any(v is None or not math.isfinite(v) for v in values):
                raise ValueError(
                    f"batch size {cell[0]}, {cell[1]}, eta={eta}: choosing among etas needs held-out accuracies"
                )
            scores[eta] = float(np.mean(values))
        best[cell] = max(sorted(scores), key=lambda eta: scores[eta]) if scores else None
    return best


def summarize_batch_sweep(runs: Sequence[SweepRun], level: float = 0.95) -> dict[str, Any]:
    """Best eta per (batch size, optimizer), its test accuracy over seeds, the paired gap, the grid (JSON-able).

    The gap SGDM - SGD pairs the two optimizers' runs of one seed (same initialisation and batch order),
    each at its own best eta.
    """
    best = select_best_etas(runs)
    batch_sizes = sorted({r.batch_size for r in runs})
    per_batch = []
    for batch_size in batch_sizes:
        entry: dict[str, Any] = {"batch_size": batch_size, "gap": None}
        chosen: dict[str, dict[int, float]] = {}
        for label in OPTIMIZER_LABELS:
            eta = best.get((batch_size, label))
            cell = [r for r in runs if r.batch_size == batch_size and r.optimizer == label]
            grid = []
            for grid_eta in sorted({r.eta for r in cell}):
                group = [r for r in cell if r.eta == grid_eta]
                done = [r for r in group if r.status == "completed"]
                held = [r.held_out_acc for r in done if r.held_out_acc is not None]
                grid.append({
                    "eta": grid_eta,
                    "diverged": len(group) - len(done),
                    "held_out_acc": float(np.mean(held)) if held else None,
                    "test_acc": float(np.mean([r.test_acc for r in done])) if done else None,
                })  # fmt: skip
            entry[label] = {"eta": eta, "grid": grid, "test_acc": None, "per_seed": {}}
            if eta is None:
                continue
            per_seed = {r.seed: float(r.test_acc) for r in cell if r.eta == eta}  # type: ignore[arg-type]
            chosen[label] = per_seed
            entry[label]["per_seed"] = {str(seed): acc for seed, acc in sorted(per_seed.items())}
            entry[label]["test_acc"] = interval_record(mean_interval(list(per_seed.values()), level))
        if len(chosen) == 2:
            seeds = sorted(set(chosen["SGD"]) & set(chosen["SGDM"]))
            gap = paired_difference_interval(
                [chosen["SGDM"][s] for s in seeds], [chosen["SGD"][s] for s in seeds], level
            )
            entry["gap"] = interval_record(gap)
        per_batch.append(entry)
    summary = {}
    for entry in per_batch:
        b = entry["batch_size"]
        for label in OPTIMIZER_LABELS:
            cell = entry[label]
            summary[f"B={b} {label}"] = (
                "all etas diverged"
                if cell["eta"] is None
                else f"eta={cell['eta']:g}, test acc {cell['test_acc']['text']} %"
            )
        if entry["gap"] is not None:
            flag = "excludes 0" if entry["gap"]["excludes_zero"] else "includes 0"
            summary[f"B={b} gap SGDM-SGD"] = f"{entry['gap']['text']} pp (95% CI {flag})"
    return {"batch_sizes": batch_sizes, "per_batch": per_batch, "level": level, "summary": summary}


def held_out_split(settings: Mapping[str, Any], train: Any) -> Any:
    """The ``held_out`` training examples the learning rate is chosen on: disjoint from the runs' fixed
    ``data.train_subset`` (:func:`empirical.data.fixed_subset` after skipping it), never the test set."""
    data = settings["data"]
    return fixed_subset(train, settings["held_out"], skip=data["train_subset"], name="held_out")


def _held_out_accuracies(
    settings: Mapping[str, Any], members: Sequence[RunConfig], results: Sequence[RunResult], store: ResultStore
) -> list[float | None]:
    """Accuracy of each completed run's final parameters on the held-out split (``None`` if it diverged).

    The parameters come from the run's final checkpoint, read once, checked against the SHA-256 its record holds
    and against its own digest, with ``weights_only=True`` (:func:`empirical.run.load_final_checkpoint`); the
    accuracies then live in the figure record, under its digest.  A damaged checkpoint is a
    :class:`empirical.records.CorruptRecordError`.
    """
    data = settings["data"]
    dataset = load_dataset(data["name"], **data["options"])
    device = resolve_device(settings["device"])
    held_out = held_out_split(settings, dataset.train).to(device)
    accuracies: list[float | None] = []
    for member, result in zip(members, results, strict=True):
        if result.status != "completed":
            accuracies.append(None)
            continue
        state = load_final_checkpoint(store, result, map_location=device)
        model = build_model(member.model.name, dataset, member.seed, **member.model.options).to(device)
        model.load_state_dict(state["model"])
        accuracies.append(evaluate(model, held_out, member.train.eval_batch_size, device)[1])
    return accuracies


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    members = batch_sweep_members(settings)
    results = train_figure_runs(members, context)
    held_out = [None] * len(members)
    if settings["held_out"]:
        store = ResultStore(context.runs_dir)
        try:
            held_out = _held_out_accuracies(settings, members, results, store)
        except CorruptRecordError as exc:  # a final checkpoint changed since its record: retrain, said on screen
            print(f"cache: {exc}; discarding the damaged runs and retraining them", file=sys.stderr, flush=True)
            discard_corrupt_entries(store, [result.key for result in results])
            results = train_figure_runs(members, context)
            held_out = _held_out_accuracies(settings, members, results, store)
    runs = [
        SweepRun(
            batch_size=m.train.batch_size,
            optimizer=optimizer_label(m),
            eta=m.optimizer.effective_lr,
            seed=m.seed,
            status=r.status,
            test_acc=r.metrics["final_test_acc"] if r.status == "completed" else None,
            held_out_acc=acc,
            key=r.key,
        )
        for m, r, acc in zip(members, results, held_out, strict=True)
    ]
    data = summarize_batch_sweep(runs)
    data["runs"] = [dataclasses.asdict(run) for run in runs]
    data["settings"] = {
        "beta": settings["beta"],
        "epochs": settings["train"]["length"],
        "train_subset": settings["data"]["train_subset"],
        "held_out": settings["held_out"],
        **describe_setup(settings),
    }
    return Computed(data=data, runs=tuple(m.identity() for m in members), seeds=tuple(settings["seeds"]))


def _interval_arrays(cells: Sequence[Mapping[str, Any] | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def value(cell: Mapping[str, Any] | None, name: str) -> float:
        return math.nan if cell is None else 100.0 * cell[name]

    return tuple(np.array([value(c, name) for c in cells]) for name in ("mean", "low", "high"))  # type: ignore[return-value]


def plot_batch_sweep(data: Mapping[str, Any], stem: str | Path) -> list[Path]:
    """Draw the three panels from :func:`summarize_batch_sweep` data; writes ``stem.png`` and ``stem.pdf``."""
    per_batch = data["per_batch"]
    batch_sizes = np.array([entry["batch_size"] for entry in per_batch], dtype=float)
    info = data.get("settings", {})
    fig, ((acc_ax, gap_ax, grid_ax),) = new_figure(3, width=FULL_WIDTH, height=2.35)
    for label in OPTIMIZER_LABELS:
        mean, low, high = _interval_arrays([entry[label]["test_acc"] for entry in per_batch])
        color = OPTIMIZER_COLORS[label]
        name = "SGD" if label == "SGD" else f"SGDM ($\\beta$={info.get('beta', 0.9):g})"
        acc_ax.plot(batch_sizes, mean, color=color, marker="o", ms=3, label=name)
        # a 95% t-interval over few seeds can reach past 0 or 100 %; accuracy cannot
        acc_ax.fill_between(batch_sizes, np.clip(low, 0, 100), np.clip(high, 0, 100), color=color, alpha=0.2, lw=0)
    acc_ax.set_xscale("log", base=2)
    acc_ax.set_xticks(batch_sizes, [f"{int(b)}" for b in batch_sizes])
    acc_ax.set_xlabel("batch size $B$")
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_title("(a) at the best $\\eta$ of each")
    acc_ax.legend(loc="lower left")

    gaps = [entry["gap"] for entry in per_batch]
    mean, low, high = _interval_arrays(gaps)
    gap_ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
    gap_ax.errorbar(
        batch_sizes, mean, yerr=[mean - low, high - mean], color="0.15", marker="o", ms=3, capsize=2.5, lw=1.0
    )
    for b, cell in zip(batch_sizes, gaps, strict=True):
        if cell is not None and cell["excludes_zero"]:
            gap_ax.annotate("*", (b, 100.0 * cell["high"]), ha="center", va="bottom", fontsize=9)
    gap_ax.text(0.03, 0.97, "* CI excludes 0", transform=gap_ax.transAxes, ha="left", va="top", fontsize=6.5)
    gap_ax.set_xscale("log", base=2)
    gap_ax.set_xticks(batch_sizes, [f"{int(b)}" for b in batch_sizes])
    gap_ax.set_xlabel("batch size $B$")
    gap_ax.set_ylabel("SGDM $-$ SGD test accuracy (pp)")
    n_seeds = max((cell["n"] for cell in gaps if cell is not None), default=0)
    gap_ax.set_title(f"(b) paired gap, 95% CI, {n_seeds} seeds")

    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    for i, entry in enumerate(per_batch):
        shade = 0.35 + 0.65 * i / max(1, len(per_batch) - 1)
        for label in OPTIMIZER_LABELS:
            grid = entry[label]["grid"]
            etas = np.array([g["eta"] for g in grid])
            key = "held_out_acc" if any(g["held_out_acc"] is not None for g in grid) else "test_acc"
            values = np.array([math.nan if g[key] is None else 100.0 * g[key] for g in grid])
            grid_ax.plot(
                etas,
                values,
                color=OPTIMIZER_COLORS[label],
                alpha=shade,
                ls="--" if label == "SGD" else "-",
                marker=markers[i % len(markers)],
                ms=3,
                label=f"B={entry['batch_size']}" if label == "SGDM" else None,
            )
            chosen = entry[label]["eta"]
            if chosen is not None:
                y = values[list(etas).index(chosen)]
                grid_ax.plot([chosen], [y], marker="o", ms=7, mfc="none", color=OPTIMIZER_COLORS[label], alpha=shade)
            for eta, g in zip(etas, grid, strict=True):
                if g["diverged"]:
                    grid_ax.annotate("x", (eta, 0.0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                                     color=OPTIMIZER_COLORS[label], fontsize=7)  # fmt: skip
    grid_ax.set_xscale("log", base=2)
    etas_all = sorted({g["eta"] for e in per_batch for label in OPTIMIZER_LABELS for g in e[label]["grid"]})
    grid_ax.set_xticks(etas_all, [f"{eta:g}" for eta in etas_all])
    grid_ax.minorticks_off()
    grid_ax.set_xlabel("effective learning rate $\\eta$")
    held = bool(info.get("held_out"))
    grid_ax.set_ylabel(("held-out" if held else "test") + " accuracy (%)")
    grid_ax.set_title("(c) choosing $\\eta$ (SGD dashed, chosen circled)")
    grid_ax.legend(loc="lower left", ncol=2)
    if info:
        subset = f" on a fixed {info['train_subset']}-example subset" if info.get("train_subset") else ""
        chosen_on = f"{info['held_out']} held-out training examples" if held else "the single eta per $B$"
        fig.suptitle(
            f"{info['dataset']}, {info['model']}, {info['epochs']} epochs{subset} for every $B$; "
            f"$\\eta$ chosen on {chosen_on}; SGD and SGDM at the same effective $\\eta$",
            fontsize=6.5,
        )
    return save_figure(fig, stem)


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    return plot_batch_sweep(data, stem)


BATCH_SWEEP_FIGURE = register(
    FigureSpec(
        figure_id=FIGURE_ID,
        title="SGD vs SGDM at matched effective learning rate across batch sizes",
        kind="empirical",
        settings=batch_sweep_settings,
        compute=_compute,
        plot=_plot,
        members=batch_sweep_members,
    )
)
