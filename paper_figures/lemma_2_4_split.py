r"""Lemma 2.4: curvature-induced and noise-induced terms of the one-step loss change, and SVAG (THEORY.md 2.3).

Figure ID ``fig_lemma_2_4_split``.  For SGD :math:`x_{k+1}=x_k-\eta(\nabla\mathcal L+\sigma v)` (Lemma 2.4, the
expansion derived in :func:`theory.loss_change.derive_one_step_expansion` and checked by claim 5):

.. math::
    \mathbb E\mathcal L(x_{k+1})-\mathcal L(x_k)=-\eta\|\nabla\mathcal L\|^2
    +\underbrace{\tfrac{\eta^2}2\nabla\mathcal L^\top\nabla^2\mathcal L\nabla\mathcal L}_{\text{curvature-induced}}
    +\underbrace{\tfrac{\eta^2}2\sigma^2\operatorname{tr}(\nabla^2\mathcal L\Sigma)}_{\text{noise-induced}}
    +O(\eta^3(1+\sigma^3)),

computed by :func:`theory.loss_change.lemma_2_4_terms`.  With the canonical noise :math:`\sigma=\eta^{-1/2}` the
noise term is :math:`\Theta(\eta)` — the order of the descent term — and the curvature term :math:`O(\eta^2)`, so
their ratio :math:`\eta\,\nabla\mathcal L^\top H\nabla\mathcal L/\operatorname{tr}(H\Sigma)` vanishes with
:math:`\eta` (noise dominates; at fixed :math:`\sigma`, a large batch, it would not).  Over :math:`\ell` SVAG steps at
frozen :math:`x` (Definition 5.1; :func:`theory.loss_change.svag_lemma_2_4_terms`) the curvature term becomes
:math:`\frac{\eta^2}{2\ell}\nabla\mathcal L^\top H\nabla\mathcal L` and the noise term is unchanged.

Measured on the same axes (1-D, :func:`theory.problems.log_cosh_well` with additive noise, at one point :math:`x`):

* curvature part: the noiseless step's loss change plus :math:`\eta\|\nabla\mathcal L\|^2` (exact evaluation of
  :math:`\mathcal L`; over :math:`\ell` frozen SVAG steps: :math:`\ell[\mathcal L(x-\frac\eta\ell\nabla\mathcal L)
  -\mathcal L(x)]+\eta\|\nabla\mathcal L\|^2`);
* noise part: Monte Carlo of one step of :class:`theory.simulate.SGD` (or :class:`theory.simulate.SVAG`, times
  :math:`\ell`) minus the noiseless step, :math:`\mathbb E\mathcal L(x_1)-\mathcal L(x_1^{\sigma=0})`, with 95%
  intervals over the sampled steps.

Both measured parts carry the :math:`O(\eta^3(1+\sigma^3))` remainder (with :math:`\sigma^2=1/\eta`: an
:math:`O(\eta^2)` shift of the noise part), so they meet the formulas as :math:`\eta\to0`; on a quadratic the
expansion is exact (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import interval_arrays, interval_errorbar, restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.stats import Interval, mean_interval
from paper_figures.style import FULL_WIDTH, PALETTE, new_figure, save_figure
from theory.loss_change import lemma_2_4_terms, svag_lemma_2_4_terms
from theory.problems import Problem, log_cosh_well
from theory.simulate import SGD, SVAG, Method, simulate

__all__ = ["LEMMA_2_4_FIGURE", "Lemma24Split", "lemma_2_4_split", "plot_lemma_2_4_split"]

TERM_COLORS = {"descent": PALETTE[6], "curvature": PALETTE[3], "noise": PALETTE[2]}


@dataclass(frozen=True)
class Lemma24Split:
    r"""Formula terms and measured parts against ``etas`` (at :math:`\sigma=\eta^{-1/2}`) and against ``ells`` (SVAG at
    ``svag_eta``); ``*_low``/``*_high`` are 95% intervals of the Monte Carlo noise parts."""

    x: float
    gradient: float
    hessian: float
    covariance: float  # the noise covariance Sigma(x) at sigma = 1
    etas: np.ndarray
    descent: np.ndarray
    curvature: np.ndarray
    noise: np.ndarray
    measured_curvature: np.ndarray
    measured_noise: np.ndarray
    noise_low: np.ndarray
    noise_high: np.ndarray
    svag_eta: float
    ells: np.ndarray
    svag_curvature: np.ndarray
    svag_noise: np.ndarray
    svag_measured_curvature: np.ndarray
    svag_measured_noise: np.ndarray
    svag_noise_low: np.ndarray
    svag_noise_high: np.ndarray
    n_paths: int

    @property
    def ratio(self) -> np.ndarray:
        """Formula curvature/noise ratio against ``etas``."""
        return self.curvature / self.noise

    @property
    def measured_ratio(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured curvature/noise ratio and its 95% interval (from the noise part's interval)."""
        return (
            self.measured_curvature / self.measured_noise,
            self.measured_curvature / self.noise_high,
            self.measured_curvature / self.noise_low,
        )


def lemma_2_4_split(
    problem: Problem | None = None,
    x: float = 0.7,
    etas: Sequence[float] = tuple(np.geomspace(0.003, 0.3, 7)),
    svag_eta: float = 0.1,
    ells: Sequence[int] = (1, 2, 4, 8, 16, 32),
    n_paths: int = 1_000_000,
    seed: int = 0,
) -> Lemma24Split:
    r"""Formulas and measurements of the figure at the point ``x`` of a 1-D ``problem`` (default: the log-cosh well,
    additive noise), with :math:`\sigma=\eta^{-1/2}`; seed ``seed + i`` for the ``i``-th sampled step.

    Lemma 2.4: :math:`\mathbb E\mathcal L(x_{k+1})-\mathcal L(x_k)\approx-\eta\|g\|^2
    +\tfrac{\eta^2}2g^\top Hg+\tfrac{\eta^2\sigma^2}2\operatorname{tr}(H\Sigma)` (curvature- and noise-induced terms).
    """
    problem = log_cosh_well(noise_modulation=0.0) if problem is None else problem
    if problem.dim != 1:
        raise ValueError(f"problem must be one-dimensional, got dim = {problem.dim}")
    point = np.array([[float(x)]])
    gradient = float(problem.gradient(point)[0, 0])
    hessian = float(problem.hessian(point)[0, 0, 0])
    covariance = float(problem.noise_covariance(point)[0, 0, 0])
    loss = float(problem.value(point)[0])

    def measure(method: Method, eta: float, ell: int, seed: int) -> tuple[float, Interval]:
        """Curvature part (noiseless, exact) and noise part (Monte Carlo) over ell frozen-x steps at eta / ell."""
        after = float(problem.value(point - eta / ell * gradient)[0])
        curvature = ell * (after - loss) + eta * gradient**2
        x1 = simulate(method, [x], 1, n_paths, seed).values[-1]
        return curvature, mean_interval(ell * (problem.value(x1) - after))

    # sigma = None: the canonical eta^(-1/2) for SGD and for SVAG (of its eta, not eta / ell)
    sgd = [measure(SGD(problem, float(eta)), eta, 1, seed + i) for i, eta in enumerate(etas)]
    svag = [
        measure(SVAG(problem, float(svag_eta), ell=float(ell)), svag_eta, int(ell), seed + len(etas) + j)
        for j, ell in enumerate(ells)
    ]
    terms = [lemma_2_4_terms([gradient], [[hessian]], [[covariance / eta]], eta) for eta in etas]
    svag_terms = [
        svag_lemma_2_4_terms([gradient], [[hessian]], [[covariance / svag_eta]], svag_eta, ell) for ell in ells
    ]
    noise, noise_low, noise_high = interval_arrays([interval for _, interval in sgd])
    svag_noise, svag_low, svag_high = interval_arrays([interval for _, interval in svag])
    return Lemma24Split(
        x=float(x),
        gradient=gradient,
        hessian=hessian,
        covariance=covariance,
        etas=np.asarray(etas, dtype=np.float64),
        descent=np.array([t.descent for t in terms]),
        curvature=np.array([t.curvature for t in terms]),
        noise=np.array([t.noise for t in terms]),
        measured_curvature=np.array([curvature for curvature, _ in sgd]),
        measured_noise=noise,
        noise_low=noise_low,
        noise_high=noise_high,
        svag_eta=float(svag_eta),
        ells=np.asarray(ells, dtype=np.int64),
        svag_curvature=np.array([t.curvature for t in svag_terms]),
        svag_noise=np.array([t.noise for t in svag_terms]),
        svag_measured_curvature=np.array([curvature for curvature, _ in svag]),
        svag_measured_noise=svag_noise,
        svag_noise_low=svag_low,
        svag_noise_high=svag_high,
        n_paths=n_paths,
    )


def _measured(ax: Any, x: np.ndarray, value: np.ndarray, low: np.ndarray | None, high: np.ndarray | None, color: str):
    if low is None:
        ax.plot(x, value, ls="none", marker="D", mfc="none", ms=3.5, color=color)
        return
    interval_errorbar(ax, x, value, low, high, marker="o", ms=3, color=color)


def plot_lemma_2_4_split(split: Lemma24Split, out_stem: str | Path) -> list[Path]:
    """Draw the three panels and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    from matplotlib.lines import Line2D

    fig, ((terms_ax, ratio_ax, svag_ax),) = new_figure(3, width=FULL_WIDTH, height=2.9)
    terms_ax.plot(split.etas, -split.descent, color=TERM_COLORS["descent"], ls="--", lw=1.0, label="|descent|")
    terms_ax.plot(split.etas, split.curvature, color=TERM_COLORS["curvature"], label="curvature-induced")
    terms_ax.plot(split.etas, split.noise, color=TERM_COLORS["noise"], label="noise-induced")
    _measured(terms_ax, split.etas, split.measured_curvature, None, None, TERM_COLORS["curvature"])
    _measured(terms_ax, split.etas, split.measured_noise, split.noise_low, split.noise_high, TERM_COLORS["noise"])
    terms_ax.set_xscale("log")
    terms_ax.set_yscale("log")
    terms_ax.set_xlabel(r"learning rate $\eta$ ($\sigma=\eta^{-1/2}$)")
    terms_ax.set_ylabel("term of the one-step loss change")
    terms_ax.set_title(f"Lemma 2.4 terms at $x$ = {split.x:g}")
    handles, _ = terms_ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], ls="none", marker="D", mfc="none", color="0.3", label="measured (noiseless step)"),
        Line2D([], [], ls="none", marker="o", ms=3, color="0.3", label="measured (Monte Carlo, 95% CI)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=5)

    value, low, high = split.measured_ratio
    ratio_ax.plot(split.etas, split.ratio, color="0.15", label=r"formula, $\sigma=\eta^{-1/2}$")
    fixed_sigma_ratio = split.gradient**2 / split.covariance  # curvature/noise = g^2 / (sigma^2 Sigma) at sigma = 1
    ratio_ax.axhline(
        fixed_sigma_ratio,
        color="0.55",
        ls="--",
        lw=1.0,
        label=r"formula, $\sigma$ = 1 fixed (large batch)",
    )
    interval_errorbar(ratio_ax, split.etas, value, low, high, marker="o", ms=3, color="0.15")
    ratio_ax.set_xscale("log")
    ratio_ax.set_yscale("log")
    ratio_ax.set_xlabel(r"learning rate $\eta$")
    ratio_ax.set_ylabel("curvature-induced / noise-induced")
    ratio_ax.set_title("noise dominates as $\\eta\\to0$")
    ratio_ax.set_ylim(top=30.0 * fixed_sigma_ratio)
    ratio_ax.legend(loc="upper left")

    svag_ax.plot(split.ells, split.svag_curvature, color=TERM_COLORS["curvature"], label=r"curvature $\propto1/\ell$")
    svag_ax.plot(split.ells, split.svag_noise, color=TERM_COLORS["noise"], label="noise (unchanged)")
    _measured(svag_ax, split.ells, split.svag_measured_curvature, None, None, TERM_COLORS["curvature"])
    _measured(
        svag_ax,
        split.ells,
        split.svag_measured_noise,
        split.svag_noise_low,
        split.svag_noise_high,
        TERM_COLORS["noise"],
    )
    svag_ax.set_xscale("log", base=2)
    svag_ax.set_yscale("log")
    svag_ax.set_xlabel(r"SVAG factor $\ell$")
    svag_ax.set_ylabel(r"term over $\ell$ SVAG steps (frozen $x$)")
    svag_ax.set_title(f"SVAG at $\\eta$ = {split.svag_eta:g}, $\\sigma=\\eta^{{-1/2}}$")
    svag_ax.legend(loc="center right")
    return save_figure(fig, out_stem)


def _settings(context: FigureContext) -> dict[str, Any]:
    common = {"x": 0.7, "svag_eta": 0.1, "seed": 0}
    if context.scale == "tiny":
        return {**common, "eta_range": [0.01, 0.3], "n_etas": 3, "ells": [1, 4, 16], "n_paths": 100_000}
    if context.scale == "quick":
        return {**common, "eta_range": [0.003, 0.3], "n_etas": 7, "ells": [1, 2, 4, 8, 16, 32], "n_paths": 1_000_000}
    return {**common, "eta_range": [0.001, 0.3], "n_etas": 11, "ells": [1, 2, 4, 8, 16, 32, 64], "n_paths": 4_000_000}


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    split = lemma_2_4_split(
        x=settings["x"],
        etas=np.geomspace(*settings["eta_range"], settings["n_etas"]),
        svag_eta=settings["svag_eta"],
        ells=settings["ells"],
        n_paths=settings["n_paths"],
        seed=settings["seed"],
    )
    half = (split.noise_high - split.noise_low) / 2
    svag_half = (split.svag_noise_high - split.svag_noise_low) / 2
    summary: dict[str, Any] = {
        "noise part, measured/formula": {
            f"eta={eta:.3g}": f"{m / f:.4f} ± {d / f:.4f}"
            for eta, m, f, d in zip(split.etas, split.measured_noise, split.noise, half, strict=True)
        },
        "curvature part, measured/formula": {
            f"eta={eta:.3g}": float(m / f)
            for eta, m, f in zip(split.etas, split.measured_curvature, split.curvature, strict=True)
        },
        "curvature/noise ratio at smallest and largest eta": [float(split.ratio[0]), float(split.ratio[-1])],
        "svag curvature, measured/formula": {
            f"ell={ell}": float(m / f)
            for ell, m, f in zip(split.ells, split.svag_measured_curvature, split.svag_curvature, strict=True)
        },
        "svag noise, measured/formula": {
            f"ell={ell}": f"{m / f:.4f} ± {d / f:.4f}"
            for ell, m, f, d in zip(split.ells, split.svag_measured_noise, split.svag_noise, svag_half, strict=True)
        },
    }
    seeds = tuple(range(settings["seed"], settings["seed"] + settings["n_etas"] + len(settings["ells"])))
    return Computed(data={"split": asdict(split), "summary": summary}, seeds=seeds)


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    split = restore_dataclass(Lemma24Split, data["split"])
    return plot_lemma_2_4_split(split, stem)


LEMMA_2_4_FIGURE = register(
    FigureSpec(
        figure_id="fig_lemma_2_4_split",
        title="Lemma 2.4: curvature- and noise-induced terms of the one-step loss change, and SVAG",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
        version=2,  # 2: stores Sigma(x), so the fixed-sigma ratio line is g^2 / Sigma
    )
)
