r"""SVAG (Definition 5.1) converges to the SDE like :math:`1/\ell` (THEORY.md 6; oracle 10).

Figure ID ``fig_svag_convergence``.  SVAG runs :math:`\ell` steps of size :math:`\eta/\ell` per unit of SDE time with
the gradient :math:`r_1g^{(1)}+r_2g^{(2)}`, :math:`r_{1,2}=\frac{1\pm\sqrt{2\ell-1}}2`, whose noise covariance is
:math:`\ell\sigma^2\Sigma` (THEORY.md 6.1-6.2), so it is Euler-Maruyama for
:math:`dX=-\nabla\mathcal L\,dt+(\eta\sigma^2\Sigma)^{1/2}dW` at step :math:`\eta/\ell`, at fixed :math:`\eta`.

Left panel: claim 6's measurement (:func:`proofs_check.svag.svag_weak_errors`): on the log-cosh well at
:math:`\eta=0.5`, :math:`\sigma=\eta^{-1/2}`, the weak error :math:`\max_{t\le1}|\mathbb E\cos x_t-\mathbb E\cos
X_t|` against the exact SDE expectation (backward Kolmogorov equation) with simultaneous 95% intervals, the fitted
order in :math:`1/\ell` (:func:`theory.weak_error.fit_weak_order`), and the Theorem 4.3 (Li, Malladi, Arora 2021)
reference :math:`C/\ell` through the :math:`\ell=1` point.

Right panel: the exact 1-D stationary variance of SVAG on :math:`\tfrac h2x^2` with additive noise :math:`s^2`
(SGD at rate :math:`\eta/\ell` with noise variance :math:`\ell s^2`, :func:`theory.quadratic.stationary_covariance`;
THEORY.md 6.4)

.. math:: \operatorname{Var}_\infty(\ell)=\frac{\eta s^2}{h(2-\eta h/\ell)}\ \xrightarrow[\ell\to\infty]{}\
          \frac{\eta s^2}{2h}\ (\text{the SDE, } :func:`theory.quadratic.sde_stationary_covariance`),

whose gap to the SDE is :math:`\frac{\eta^2s^2}{2\ell(2-\eta h/\ell)}=O(1/\ell)`; oracle 10 (:math:`\eta=0.5`,
:math:`h=s=1`): :math:`1/3,\ 4/15,\ 16/63` at :math:`\ell=1,4,16`.  Monte Carlo: time-averaged :math:`x^2` of SVAG
(:class:`theory.simulate.SVAG`) for every :math:`\ell` on one Brownian path (common random numbers), 95% intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import interval_arrays, interval_errorbar, restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.stationary_ratio import BURN_IN_RELAXATION_TIMES
from paper_figures.stats import mean_interval
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, PALETTE, new_figure, save_figure
from proofs_check.svag import WEAK_ORDER_ETA, svag_weak_errors
from theory.params import check_learning_rate
from theory.problems import noisy_quadratic
from theory.quadratic import sde_stationary_covariance, stationary_covariance
from theory.simulate import SVAG
from theory.stationary import stationary_second_moments
from theory.svag import check_svag_factor
from theory.weak_error import fit_weak_order

__all__ = [
    "SVAG_CONVERGENCE_FIGURE",
    "SVAGConvergence",
    "plot_svag_convergence",
    "svag_convergence",
    "svag_stationary_variance",
]


def svag_stationary_variance(eta: float, ell: float, h: float = 1.0, s: float = 1.0) -> float:
    r"""Exact stationary variance of SVAG on :math:`\tfrac h2x^2`: SGD at :math:`\eta/\ell` with noise :math:`\ell s^2`.

    Equals :math:`\frac{\eta s^2}{h(2-\eta h/\ell)}` (THEORY.md 6.4, oracle 10); ``ValueError`` (naming SGD's
    threshold) when :math:`\eta h/\ell\ge2`.
    """
    ell = check_svag_factor(ell)
    return float(stationary_covariance([[h]], [[ell * s * s]], eta / ell)[0, 0])


@dataclass(frozen=True)
class SVAGConvergence:
    """Weak errors per ``weak_ells`` (with intervals and fit) and stationary variances: exact curve and Monte Carlo."""

    weak_eta: float
    weak_ells: np.ndarray
    weak_errors: np.ndarray
    weak_low: np.ndarray
    weak_high: np.ndarray
    weak_standard_errors: np.ndarray
    order: float
    order_low: float
    order_high: float
    log_constant: float
    weak_n_paths: int
    eta: float
    h: float
    s: float
    ell_curve: np.ndarray
    variance_curve: np.ndarray
    sde_variance: float
    oracle_ells: np.ndarray
    oracle_variance: np.ndarray
    mc_ells: np.ndarray
    mc_exact: np.ndarray
    mc_mean: np.ndarray
    mc_low: np.ndarray
    mc_high: np.ndarray
    mc_n_paths: int


def svag_convergence(
    weak_ells: Sequence[int] = (1, 2, 4, 8),
    weak_n_paths: int = 200_000,
    weak_seed: int = 16,
    eta: float = 0.5,
    h: float = 1.0,
    s: float = 1.0,
    ell_curve: Sequence[float] = tuple(np.geomspace(1.0, 64.0, 97)),
    oracle_ells: Sequence[int] = (1, 4, 16),
    mc_ells: Sequence[int] = (1, 2, 4, 8, 16),
    mc_n_paths: int = 2000,
    burn_in: int = 20,
    window: int = 400,
    seed: int = 0,
) -> SVAGConvergence:
    r"""Compute both panels (Definition 5.1, THEORY.md 6).  ``burn_in``, ``window`` count SDE time steps :math:`\eta`.

    SVAG's weak error to the SDE is :math:`O(1/\ell)`; its exact stationary variance on :math:`\tfrac h2x^2` is
    :math:`\frac{\eta s^2}{h(2-\eta h/\ell)}` (oracle 10).

    Monte Carlo ``mc_ells`` must be powers of 2 (so every SVAG step divides the coarsest on the common grid), and the
    burn-in must span :data:`~paper_figures.stationary_ratio.BURN_IN_RELAXATION_TIMES` relaxation times
    :math:`1/(2h)` of the SDE's second moment.
    """
    for ell in mc_ells:
        if int(ell) != ell or ell < 1 or int(ell) & (int(ell) - 1):
            raise ValueError(f"mc_ells must be powers of 2 (common time grid), got {list(mc_ells)}")
    eta = check_learning_rate(eta, "eta")
    if not (isinstance(h, int | float) and h > 0 and np.isfinite(h)):
        raise ValueError(f"h (the curvature) must be a finite number > 0, got {h!r}")
    if 2.0 * h * eta * burn_in < BURN_IN_RELAXATION_TIMES:
        needed = int(np.ceil(BURN_IN_RELAXATION_TIMES / (2.0 * h * eta)))
        raise ValueError(f"burn_in = {burn_in} steps of eta is shorter than the relaxation needs: need >= {needed}")
    weak_ells = np.asarray(weak_ells, dtype=np.int64)
    errors = svag_weak_errors([int(e) for e in weak_ells], weak_n_paths, weak_seed)
    fit = fit_weak_order(1.0 / weak_ells, errors)

    problem = noisy_quadratic(h, s * s)
    methods = [SVAG(problem, eta, ell=float(ell), sigma=1.0) for ell in mc_ells]
    moments = stationary_second_moments(methods, [0.0], burn_in, window, mc_n_paths, seed)
    mc_mean, mc_low, mc_high = interval_arrays([mean_interval(moments[i, :, 0]) for i in range(len(mc_ells))])
    return SVAGConvergence(
        weak_eta=WEAK_ORDER_ETA,
        weak_ells=weak_ells,
        weak_errors=np.array([e.estimate for e in errors]),
        weak_low=np.array([e.ci_low for e in errors]),
        weak_high=np.array([e.ci_high for e in errors]),
        weak_standard_errors=np.array([e.standard_error for e in errors]),
        order=fit.order,
        order_low=fit.ci_low,
        order_high=fit.ci_high,
        log_constant=fit.log_constant,
        weak_n_paths=weak_n_paths,
        eta=eta,
        h=h,
        s=s,
        ell_curve=np.asarray(ell_curve, dtype=np.float64),
        variance_curve=np.array([svag_stationary_variance(eta, ell, h, s) for ell in ell_curve]),
        sde_variance=float(sde_stationary_covariance([[h]], [[s * s]], eta)[0, 0]),
        oracle_ells=np.asarray(oracle_ells, dtype=np.int64),
        oracle_variance=np.array([svag_stationary_variance(eta, ell, h, s) for ell in oracle_ells]),
        mc_ells=np.asarray(mc_ells, dtype=np.int64),
        mc_exact=np.array([svag_stationary_variance(eta, ell, h, s) for ell in mc_ells]),
        mc_mean=mc_mean,
        mc_low=mc_low,
        mc_high=mc_high,
        mc_n_paths=mc_n_paths,
    )


def plot_svag_convergence(result: SVAGConvergence, out_stem: str | Path) -> list[Path]:
    """Draw the two panels and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    fig, ((left, right),) = new_figure(2, width=FULL_WIDTH, height=2.7)
    ells = result.weak_ells.astype(float)
    fine = np.geomspace(ells.min(), ells.max(), 50)
    interval_errorbar(
        left,
        ells,
        result.weak_errors,
        result.weak_low,
        result.weak_high,
        marker="o",
        ms=3.5,
        capsize=2,
        color=OPTIMIZER_COLORS["SGD"],
        label=f"SVAG vs SDE, 95% CI ({result.weak_n_paths:,} paths)",
    )
    left.plot(
        fine,
        np.exp(result.log_constant) * fine**-result.order,
        color=OPTIMIZER_COLORS["SGD"],
        lw=1.0,
        label=f"fit: order {result.order:.2f} [{result.order_low:.2f}, {result.order_high:.2f}] in $1/\\ell$",
    )
    left.plot(
        fine, result.weak_errors[0] / fine, color="0.4", ls=":", label=r"$O(1/\ell)$ (Li, Malladi, Arora 2021, Thm 4.3)"
    )
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    # An interval reaching 0 (the Monte Carlo floor at large ell) must not stretch the log axis to 1e-16.
    positive = np.concatenate([result.weak_errors, result.weak_low[result.weak_low > 0]])
    left.set_ylim(0.5 * positive.min(), 2.0 * result.weak_high.max())
    left.set_xlabel(r"SVAG factor $\ell$ (step $\eta/\ell$, noise $\times\sqrt{\ell}$)")
    left.set_ylabel(r"weak error $\max_{t\leq1}|\mathbb{E}\cos x_t-\mathbb{E}\cos X_t|$")
    left.set_title(f"log-cosh well, $\\eta$ = {result.weak_eta:g}: weak error to the SDE")
    left.legend(loc="lower left")

    right.plot(result.ell_curve, result.variance_curve, color=PALETTE[2], label="SVAG exact (THEORY.md 6.4)")
    right.axhline(
        result.sde_variance, color="0.3", ls="--", lw=1.0, label=rf"SDE: $\eta s^2/(2h)$ = {result.sde_variance:g}"
    )
    interval_errorbar(
        right,
        result.mc_ells,
        result.mc_mean,
        result.mc_low,
        result.mc_high,
        marker="s",
        ms=3,
        capsize=2,
        color=OPTIMIZER_COLORS["SGDM"],
        label=f"Monte Carlo, 95% CI ({result.mc_n_paths} paths)",
    )
    for ell, value in zip(result.oracle_ells, result.oracle_variance, strict=True):
        fraction = Fraction(float(value)).limit_denominator(1000)
        right.annotate(
            f"{fraction.numerator}/{fraction.denominator}",
            (ell, value),
            textcoords="offset points",
            xytext=(4, 5),
            fontsize=6.5,
            color=PALETTE[2],
        )
        right.plot(ell, value, marker="o", mfc="none", ms=6, color=PALETTE[2], ls="none")
    right.set_xscale("log", base=2)
    right.set_xlabel(r"SVAG factor $\ell$")
    right.set_ylabel(r"stationary $\mathrm{Var}\,x$ on $\frac{h}{2}x^2$")
    right.set_title(f"$\\eta$ = {result.eta:g}, $h$ = {result.h:g}, $s$ = {result.s:g}: oracle 10 (circles)")
    right.legend(loc="upper right")
    return save_figure(fig, out_stem)


def _settings(context: FigureContext) -> dict[str, Any]:
    common = {"eta": 0.5, "h": 1.0, "s": 1.0, "oracle_ells": [1, 4, 16], "weak_seed": 16, "seed": 0}
    if context.scale == "tiny":
        return {
            **common,
            "weak_ells": [1, 2, 4],
            "weak_n_paths": 20_000,
            "mc_ells": [1, 4, 16],
            "mc_n_paths": 200,
            "burn_in": 20,
            "window": 100,
        }
    if context.scale == "quick":
        return {
            **common,
            "weak_ells": [1, 2, 4, 8],
            "weak_n_paths": 200_000,
            "mc_ells": [1, 2, 4, 8, 16],
            "mc_n_paths": 2000,
            "burn_in": 20,
            "window": 400,
        }
    return {
        **common,
        "weak_ells": [1, 2, 4, 8, 16, 32],
        "weak_n_paths": 1_000_000,
        "mc_ells": [1, 2, 4, 8, 16, 32],
        "mc_n_paths": 20_000,
        "burn_in": 20,
        "window": 2000,
    }


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    result = svag_convergence(
        weak_ells=settings["weak_ells"],
        weak_n_paths=settings["weak_n_paths"],
        weak_seed=settings["weak_seed"],
        eta=settings["eta"],
        h=settings["h"],
        s=settings["s"],
        oracle_ells=settings["oracle_ells"],
        mc_ells=settings["mc_ells"],
        mc_n_paths=settings["mc_n_paths"],
        burn_in=settings["burn_in"],
        window=settings["window"],
        seed=settings["seed"],
    )
    half = (result.mc_high - result.mc_low) / 2
    summary: dict[str, Any] = {
        "weak order in 1/ell": f"{result.order:.3f} [{result.order_low:.3f}, {result.order_high:.3f}] (predicted 1)",
        "weak errors": {
            f"ell={int(ell)}": f"{e:.4f} [{lo:.4f}, {hi:.4f}]"
            for ell, e, lo, hi in zip(
                result.weak_ells, result.weak_errors, result.weak_low, result.weak_high, strict=True
            )
        },
        "oracle 10 exact variance": {
            f"ell={int(ell)}": float(v) for ell, v in zip(result.oracle_ells, result.oracle_variance, strict=True)
        },
        "stationary variance": {
            f"ell={int(ell)}": f"exact {x:.4f}, MC {m:.4f} ± {d:.4f}"
            for ell, x, m, d in zip(result.mc_ells, result.mc_exact, result.mc_mean, half, strict=True)
        },
    }
    seeds = (settings["seed"], *range(settings["weak_seed"], settings["weak_seed"] + len(settings["weak_ells"])))
    return Computed(data={"result": asdict(result), "summary": summary}, seeds=seeds)


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    result = restore_dataclass(SVAGConvergence, data["result"])
    return plot_svag_convergence(result, stem)


SVAG_CONVERGENCE_FIGURE = register(
    FigureSpec(
        figure_id="fig_svag_convergence",
        title="SVAG converges to the SDE like 1/ell: weak error and the exact stationary variance (oracle 10)",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
    )
)
