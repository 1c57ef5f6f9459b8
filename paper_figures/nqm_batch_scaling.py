r"""Exact batch-size scaling of tuned SGD and SGDM on the noisy quadratic model (Zhang et al. 2019; THEORY.md 5.6-5.7).

Figure ID ``fig_batch_scaling``.  The NQM (:func:`theory.batch_scaling.nqm`): :math:`h_i=1/i`, :math:`d=10^4`,
gradient noise covariance :math:`H/B`, start :math:`x_{0,i}=1` (:math:`\mathbb E\mathcal L_0=\tfrac12\sum_ih_i
\approx4.894`), optionally preconditioned by :math:`P=H^{-1/2}` (dynamics curvature :math:`h_i^{1/2}`, per-coordinate
noise :math:`h_i^{-1}\cdot h_i/B=1/B`, loss weights still :math:`h_i`).  Target: 1% of the initial expected loss.
For speed the spectrum is binned (:func:`theory.batch_scaling.nqm_bins`: the top indices alone, then geometric
groups of indices, each represented by its mean :math:`h` with multiplicity); the summary states the binning error
against the unbinned :math:`10^4`-dimensional model.

Steps to target are exact first crossings of the expected-loss curve of paper eq. (3)
(:func:`theory.batch_scaling.steps_to_target`), tuned over :math:`\eta` for SGD and over :math:`(\eta,\beta)` for
SGDM (:func:`theory.batch_scaling.tune_steps_to_target`; :math:`\beta` on the stated grid).

Left: tuned steps against :math:`B` with and without the preconditioner, the ideal linear-scaling line
:math:`S(B_0)B_0/B` from the smallest batch, and the critical batch size of each curve
(:func:`theory.batch_scaling.critical_batch_size`: steps twice the linear-scaling extrapolation).  Middle: the tuned
effective learning rates; SGD's stop at its stability bound :math:`\eta<2/h_{\max}`, SGDM's continue (its bound is
:math:`2(1+\beta)/((1-\beta)h_{\max})`).  Right: the paper's comparison, SGD and SGDM (:math:`\beta=0.9`) at the
*same* :math:`\eta`, following the linear scaling rule :math:`\eta=\eta^*_{\rm SGD}(B_0)B/B_0` (no preconditioner):
the curves coincide below the critical batch size; SGD diverges once :math:`\eta\ge2`, SGDM once :math:`\eta\ge38`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, new_figure, save_figure
from theory.batch_scaling import (
    NQM_DIMENSION,
    critical_batch_size,
    expected_loss_at,
    nqm,
    steps_to_target,
    tune_steps_to_target,
)
from theory.quadratic import stability_threshold

__all__ = [
    "BATCH_SCALING_FIGURE",
    "PRECONDITIONER_LABELS",
    "SAME_ETA_BETA",
    "TARGET_FRACTION",
    "BatchScaling",
    "batch_scaling_sweep",
    "plot_batch_scaling",
]

#: The target loss, as a fraction of the initial expected loss.
TARGET_FRACTION = 0.01
#: Momentum of the same-eta comparison (the paper's beta).
SAME_ETA_BETA = 0.9
#: Momentum grid of tuned SGDM at quick and full scale: 1 - beta from 0.7 down to 2e-4.
QUICK_BETAS = tuple(
    round(1.0 - x, 6) for x in (0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 1e-3, 5e-4, 2e-4)
)
PRECONDITIONER_LABELS = {0.0: "no preconditioner", 0.5: "$H^{-1/2}$ preconditioner"}


def _or_none(values: Sequence[float]) -> list[float | None]:
    """Finite floats, with inf/NaN (never reached, unstable) as None: the figure store is strict JSON."""
    return [float(v) if math.isfinite(v) else None for v in values]


def _as_float(values: Any) -> np.ndarray:
    """Stored lists back to float arrays, None as NaN."""
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)


@dataclass(frozen=True)
class BatchScaling:
    """Tuned and same-eta steps to target per preconditioner power (rows) and batch size (columns).

    Step counts of ``None`` (NaN once restored): the target is never reached, or the same-eta rate is unstable.
    """

    dimension: int
    bins: int | None
    batch_sizes: list[int]
    powers: list[float]
    target_fraction: float
    initial_loss: float
    target: float
    betas: list[float]
    grid_points: int
    refine_iterations: int
    sgd_steps: list[list[float | None]]
    sgd_eta: list[list[float | None]]
    sgdm_steps: list[list[float | None]]
    sgdm_eta: list[list[float | None]]
    sgdm_beta: list[list[float | None]]
    sgd_critical: list[float | None]
    sgdm_critical: list[float | None]
    same_eta_beta: float
    same_eta: list[float]
    same_eta_sgd: list[float | None]
    same_eta_sgdm: list[float | None]
    sgd_eta_bound: float
    sgdm_eta_bound: float
    binning_checks: list[dict[str, Any]]


def batch_scaling_sweep(
    batch_sizes: Sequence[int],
    *,
    dimension: int = NQM_DIMENSION,
    bins: int | None = 150,
    powers: Sequence[float] = (0.0, 0.5),
    betas: Sequence[float] = QUICK_BETAS,
    grid_points: int = 20,
    refine_iterations: int = 10,
    target_fraction: float = TARGET_FRACTION,
    same_eta_beta: float = SAME_ETA_BETA,
    check_binning: bool = True,
) -> BatchScaling:
    r"""Tune SGD and SGDM at every batch size and preconditioner power; the same-:math:`\eta` comparison.

    Target :math:`=` ``target_fraction`` :math:`\times\,\mathbb E\mathcal L_0`.  SGD is tuned over :math:`\eta`,
    SGDM over :math:`\eta` and ``betas`` (:func:`theory.batch_scaling.tune_steps_to_target` with ``grid_points``
    and ``refine_iterations``).  Same-:math:`\eta` comparison (no preconditioner): :math:`\eta_B=\eta^*_{\rm
    SGD}(B_0)\,B/B_0`; an :math:`\eta_B` at or beyond a method's stability bound is recorded as ``None``.
    ``check_binning``: at the smallest and largest batch, the tuned settings' steps and loss at the crossing are
    recomputed on the unbinned ``dimension``-dimensional model (skipped when ``bins`` is None).
    """
    sizes = [int(b) for b in batch_sizes]
    if len(sizes) < 2 or any(b < 1 for b in sizes) or sorted(set(sizes)) != sizes:
        raise ValueError(f"batch_sizes must be at least two increasing integers >= 1, got {list(batch_sizes)}")
    if not 0.0 < target_fraction < 1.0:
        raise ValueError(f"target_fraction must lie in (0, 1), got {target_fraction!r}")
    rows: dict[str, list[list[float]]] = {key: [] for key in ("sgd_steps", "sgd_eta", "sgdm_steps", "sgdm_eta")}
    rows["sgdm_beta"] = []
    critical: dict[str, list[float]] = {"sgd": [], "sgdm": []}
    checks: list[dict[str, Any]] = []
    reference = nqm(sizes[0], dimension=dimension, bins=bins)
    initial_loss = reference.initial_loss
    target = target_fraction * initial_loss
    tuned_at: dict[tuple[float, int, str], Any] = {}
    for power in powers:
        sgd, sgdm = [], []
        for batch in sizes:
            model = nqm(batch, dimension=dimension, bins=bins, preconditioner_power=power)
            options = {"grid_points": grid_points, "refine_iterations": refine_iterations}
            sgd.append(tune_steps_to_target(model, target, betas=(0.0,), **options))
            sgdm.append(tune_steps_to_target(model, target, betas=betas, **options))
            tuned_at[(power, batch, "SGD")], tuned_at[(power, batch, "SGDM")] = sgd[-1], sgdm[-1]
        rows["sgd_steps"].append(_or_none([r.steps for r in sgd]))
        rows["sgd_eta"].append(_or_none([r.eta for r in sgd]))
        rows["sgdm_steps"].append(_or_none([r.steps for r in sgdm]))
        rows["sgdm_eta"].append(_or_none([r.eta for r in sgdm]))
        rows["sgdm_beta"].append(_or_none([r.beta for r in sgdm]))
        critical["sgd"].append(critical_batch_size(sizes, [r.steps for r in sgd]))
        critical["sgdm"].append(critical_batch_size(sizes, [r.steps for r in sgdm]))

    h_max = 1.0  # h_1 = 1 with and without the preconditioner
    sgd_bound = float(stability_threshold(0.0, "sgd")) / h_max
    sgdm_bound = float(stability_threshold(same_eta_beta, "heavy_ball")) / h_max
    base = tuned_at[(0.0, sizes[0], "SGD")] if 0.0 in powers else None
    same_eta, same_sgd, same_sgdm = [], [], []
    if base is not None and math.isfinite(base.steps):
        for batch in sizes:
            eta = base.eta * batch / sizes[0]
            model = nqm(batch, dimension=dimension, bins=bins)
            same_eta.append(eta)
            same_sgd.append(steps_to_target(model, target, eta, 0.0) if eta < sgd_bound else math.inf)
            same_sgdm.append(steps_to_target(model, target, eta, same_eta_beta) if eta < sgdm_bound else math.inf)

    if check_binning and bins is not None:
        for power in powers:
            for batch in (sizes[0], sizes[-1]):
                full = nqm(batch, dimension=dimension, preconditioner_power=power)
                binned = nqm(batch, dimension=dimension, bins=bins, preconditioner_power=power)
                for method in ("SGD", "SGDM"):
                    tuned = tuned_at[(power, batch, method)]
                    if not math.isfinite(tuned.steps):
                        continue
                    steps = int(tuned.steps)
                    loss_full = float(expected_loss_at(full, tuned.eta, tuned.beta, [steps])[0])
                    loss_binned = float(expected_loss_at(binned, tuned.eta, tuned.beta, [steps])[0])
                    checks.append(
                        {
                            "power": power,
                            "batch_size": batch,
                            "method": method,
                            "eta": tuned.eta,
                            "beta": tuned.beta,
                            "steps_binned": tuned.steps,
                            "steps_unbinned": steps_to_target(full, target, tuned.eta, tuned.beta),
                            "loss_relative_error": abs(loss_binned / loss_full - 1.0),
                        }
                    )
    return BatchScaling(
        dimension=int(dimension),
        bins=bins,
        batch_sizes=sizes,
        powers=[float(p) for p in powers],
        target_fraction=float(target_fraction),
        initial_loss=initial_loss,
        target=target,
        betas=[float(b) for b in betas],
        grid_points=grid_points,
        refine_iterations=refine_iterations,
        sgd_steps=rows["sgd_steps"],
        sgd_eta=rows["sgd_eta"],
        sgdm_steps=rows["sgdm_steps"],
        sgdm_eta=rows["sgdm_eta"],
        sgdm_beta=rows["sgdm_beta"],
        sgd_critical=_or_none(critical["sgd"]),
        sgdm_critical=_or_none(critical["sgdm"]),
        same_eta_beta=float(same_eta_beta),
        same_eta=same_eta,
        same_eta_sgd=_or_none(same_sgd),
        same_eta_sgdm=_or_none(same_sgdm),
        sgd_eta_bound=sgd_bound,
        sgdm_eta_bound=sgdm_bound,
        binning_checks=checks,
    )


# --- plot -----------------------------------------------------------------------------------------------------

_LINESTYLES = {0.0: "-", 0.5: "--"}


def plot_batch_scaling(scaling: BatchScaling, out_stem: str | Path) -> list[Path]:
    """Draw the three panels and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    from matplotlib.lines import Line2D

    sizes = np.asarray(scaling.batch_sizes, dtype=np.float64)
    fig, ((steps_ax, eta_ax, same_ax),) = new_figure(3, width=FULL_WIDTH, height=2.9)
    colors = {"SGD": OPTIMIZER_COLORS["SGD"], "SGDM": OPTIMIZER_COLORS["SGDM"]}
    steps = {"SGD": _as_float(scaling.sgd_steps), "SGDM": _as_float(scaling.sgdm_steps)}
    etas = {"SGD": _as_float(scaling.sgd_eta), "SGDM": _as_float(scaling.sgdm_eta)}
    critical = {"SGD": scaling.sgd_critical, "SGDM": scaling.sgdm_critical}
    lowest = float(np.nanmin([np.nanmin(v) for v in steps.values()]))
    for i, power in enumerate(scaling.powers):
        style = _LINESTYLES.get(power, ":")
        for method in ("SGD", "SGDM"):
            s = steps[method][i]
            steps_ax.plot(sizes, s, ls=style, marker="o", ms=2.5, color=colors[method])
            eta_ax.plot(sizes, etas[method][i], ls=style, marker="o", ms=2.5, color=colors[method])
            b_crit = critical[method][i]
            if b_crit is not None:
                value = float(np.exp(np.interp(np.log(b_crit), np.log(sizes), np.log(s))))
                steps_ax.plot([b_crit], [value], marker="*", ms=8, color=colors[method], mec="k", mew=0.4, ls="none")
        speedup = steps["SGD"][i][-1] / steps["SGDM"][i][-1]
        if np.isfinite(speedup):
            middle = float(np.sqrt(steps["SGD"][i][-1] * steps["SGDM"][i][-1]))
            steps_ax.text(sizes[-1] / 1.3, middle, f"{speedup:.0f}x", ha="right", va="center", fontsize=6.5)
        ideal = steps["SGD"][i][0] * sizes[0] / sizes
        shown = ideal >= 0.3 * lowest
        steps_ax.plot(sizes[shown], ideal[shown], ls=style, color="0.55", lw=0.8)
    steps_ax.set_xscale("log", base=2)
    steps_ax.set_yscale("log")
    steps_ax.set_xlabel("batch size $B$")
    steps_ax.set_ylabel(f"steps to {scaling.target_fraction:g} x initial loss")
    steps_ax.set_title("tuned steps to target (exact NQM)")
    handles = [
        Line2D([], [], color=colors["SGD"], label="SGD, best $\\eta$"),
        Line2D([], [], color=colors["SGDM"], label="SGDM, best $(\\eta,\\beta)$"),
        Line2D([], [], color="0.55", lw=0.8, label="linear scaling from $B_0$"),
        Line2D([], [], ls="none", marker="*", ms=7, mec="k", mew=0.4, color="0.6", label="critical batch (2x)"),
    ]
    handles += [
        Line2D([], [], color="0.3", ls=_LINESTYLES.get(p, ":"), label=PRECONDITIONER_LABELS.get(p, f"$H^{{-{p:g}}}$"))
        for p in scaling.powers
    ]

    eta_ax.axhline(scaling.sgd_eta_bound, color=colors["SGD"], lw=0.7, ls=":")
    eta_ax.text(sizes[0], scaling.sgd_eta_bound * 1.15, "SGD bound $2/h_{\\max}$", fontsize=6.5, color=colors["SGD"])
    eta_ax.set_xscale("log", base=2)
    eta_ax.set_yscale("log")
    eta_ax.set_xlabel("batch size $B$")
    eta_ax.set_ylabel("tuned effective learning rate $\\eta$")
    eta_ax.set_title("tuned effective learning rate")
    fig.legend(handles=handles, loc="outside lower center", ncol=3, handlelength=2.2)

    if len(scaling.same_eta):
        same = {"SGD": _as_float([scaling.same_eta_sgd])[0], "SGDM": _as_float([scaling.same_eta_sgdm])[0]}
        finite = np.isfinite(same["SGD"]) | np.isfinite(same["SGDM"])
        last = min(int(np.flatnonzero(finite)[-1]) + 1, sizes.size - 1)
        window = slice(0, last + 1)
        for method, marker, size in (("SGD", "o", 4.5), ("SGDM", "s", 2.5)):
            label = "SGD" if method == "SGD" else f"SGDM, $\\beta$ = {scaling.same_eta_beta:g}"
            style = {"mfc": "none"} if method == "SGD" else {}
            same_ax.plot(
                sizes[window], same[method][window], marker=marker, ms=size, color=colors[method], label=label, **style
            )
        eta = np.asarray(scaling.same_eta, dtype=np.float64)
        for bound, method in ((scaling.sgd_eta_bound, "SGD"), (scaling.sgdm_eta_bound, "SGDM")):
            if eta[last] >= bound:
                crossing = float(sizes[0] * bound / eta[0])
                same_ax.axvline(crossing, color=colors[method], lw=0.7, ls=":")
                same_ax.text(
                    crossing * 1.12,
                    0.03,
                    f"{method} unstable ($\\eta\\geq${bound:g})",
                    rotation=90,
                    fontsize=6,
                    color=colors[method],
                    va="bottom",
                    transform=same_ax.get_xaxis_transform(),
                )
        powers = [float(p) for p in scaling.powers]
        b_crit = scaling.sgd_critical[powers.index(0.0)] if 0.0 in powers else None
        if b_crit is not None:
            same_ax.axvline(b_crit, color="0.5", lw=0.7, ls="--", label="SGD's critical batch")
        ideal = same["SGD"][0] * sizes[0] / sizes
        same_ax.plot(sizes[window], ideal[window], color="0.55", lw=0.8, label="linear scaling")
        same_ax.set_xscale("log", base=2)
        same_ax.set_yscale("log")
        same_ax.legend(loc="upper right")
    same_ax.set_xlabel("batch size $B$")
    same_ax.set_ylabel("steps to target")
    same_ax.set_title("same $\\eta=\\eta^*_{\\rm SGD}(B_0)\\,B/B_0$, no precond.")
    return save_figure(fig, out_stem)


# --- registration ---------------------------------------------------------------------------------------------


def _settings(context: FigureContext) -> dict[str, Any]:
    if context.scale == "tiny":
        return {
            "dimension": 1000,
            "bins": 30,
            "batch_sizes": [4, 64, 1024, 16384, 1048576],
            "betas": [0.5, 0.9, 0.98, 0.995],
            "grid_points": 12,
            "refine_iterations": 5,
        }
    sizes = [4**j for j in range(1, 11)]  # 4 to 2^20 by factors of 4
    if context.scale == "quick":
        return {
            "dimension": NQM_DIMENSION,
            "bins": 150,
            "batch_sizes": sizes,
            "betas": list(QUICK_BETAS),
            "grid_points": 20,
            "refine_iterations": 10,
        }
    return {
        "dimension": NQM_DIMENSION,
        "bins": 1000,
        "batch_sizes": sizes,
        "betas": [round(1.0 - x, 6) for x in np.geomspace(0.8, 1e-4, 25)],
        "grid_points": 28,
        "refine_iterations": 14,
    }


def _speedup(slow: float | None, fast: float | None) -> float | None:
    return None if slow is None or fast is None else slow / fast


def _short(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def _count(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    scaling = batch_scaling_sweep(
        settings["batch_sizes"],
        dimension=settings["dimension"],
        bins=settings["bins"],
        betas=settings["betas"],
        grid_points=settings["grid_points"],
        refine_iterations=settings["refine_iterations"],
    )
    summary: dict[str, Any] = {
        "target": f"{scaling.target_fraction:g} x initial loss {scaling.initial_loss:.4f} = {scaling.target:.5g}",
    }
    sizes = scaling.batch_sizes
    for i, power in enumerate(scaling.powers):
        name = "no precond" if power == 0.0 else f"H^-{power:g}"
        for method, values in (("SGD", scaling.sgd_critical), ("SGDM", scaling.sgdm_critical)):
            summary[f"critical batch {method} ({name})"] = _short(values[i])
        for j in (0, len(sizes) - 1):
            sgd, sgdm = scaling.sgd_steps[i][j], scaling.sgdm_steps[i][j]
            summary[f"B={sizes[j]} steps SGD / SGDM ({name})"] = (
                f"{_count(sgd)} / {_count(sgdm)} (eta {_short(scaling.sgd_eta[i][j])} / "
                f"{_short(scaling.sgdm_eta[i][j])}, beta {scaling.sgdm_beta[i][j]})"
            )
            summary[f"B={sizes[j]} speedup SGDM over SGD ({name})"] = _short(_speedup(sgd, sgdm))
        summary[f"tuned SGDM beta by B ({name})"] = ", ".join(f"{b:g}" for b in scaling.sgdm_beta[i] if b is not None)
    if scaling.same_eta:
        pairs = zip(sizes, scaling.same_eta_sgd, scaling.same_eta_sgdm, strict=True)
        summary[f"same eta: SGDM (beta {scaling.same_eta_beta:g}) / SGD steps by B"] = ", ".join(
            f"B={b}: {sgdm / sgd:.3f}" for b, sgd, sgdm in pairs if sgd is not None and sgdm is not None
        )
    if scaling.binning_checks:
        summary["binning: max relative loss error at the crossing"] = _short(
            max(c["loss_relative_error"] for c in scaling.binning_checks)
        )
        summary["binning: max relative steps error"] = _short(
            max(abs(c["steps_binned"] / c["steps_unbinned"] - 1.0) for c in scaling.binning_checks)
        )
    return Computed(data={"scaling": asdict(scaling), "summary": summary})


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    return plot_batch_scaling(restore_dataclass(BatchScaling, data["scaling"]), stem)


BATCH_SCALING_FIGURE = register(
    FigureSpec(
        figure_id="fig_batch_scaling",
        title="Steps to a target loss against batch size for tuned SGD and SGDM on the noisy quadratic model (exact)",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
    )
)
