r"""Stationary variance ratio SGD/SGDM at equal effective :math:`\eta` on the noisy quadratic (THEORY.md 5.4-5.5).

Figure ID ``fig_stationary_ratio``.  On :math:`\mathcal L=\tfrac h2x^2` with additive noise of variance :math:`s^2`,
SGD (:math:`x_{k+1}=x_k-\eta g_k`) and normalized SGDM (paper eq. (3), :math:`m_{k+1}=\beta m_k+(1-\beta)g_k`,
:math:`x_{k+1}=x_k-\eta m_{k+1}`) have the exact stationary variances (THEORY.md 5.4, oracles 6, 9)

.. math::
    \operatorname{Var}_{\rm SGD}=\frac{\eta s^2}{h(2-\eta h)},\qquad
    \operatorname{Var}_{\rm SGDM}=\frac{\eta s^2(1+\beta)}{h\big(2(1+\beta)-\eta h(1-\beta)\big)},\qquad
    \frac{\operatorname{Var}_{\rm SGD}}{\operatorname{Var}_{\rm SGDM}}=1+\frac{2\beta}{1+\beta}\,R,\quad
    R=\frac{\eta h}{2-\eta h},

a function of :math:`\eta h` and :math:`\beta` only (the loss ratio is the same number: :math:`\mathcal L=\tfrac h2
x^2`).  :math:`R` is Lemma 2.4's curvature-to-noise ratio at SGD's stationary law; the identity is the one of
:func:`theory.quadratic.regime_loss_ratio` (claim 8).  Its series in :math:`\eta h`,
:math:`1+\frac{2\beta}{1+\beta}\sum_{n\ge1}(\eta h/2)^n`, converges only for :math:`\eta h<2` — SGD's stability
threshold — so every truncation misses the blow-up there: the leading-order statement "SGD and SGDM have the same
stationary law" (Theorem 3.5's SDE) is an :math:`\eta h\to0` statement.

Left panel: the exact ratio (:func:`theory.quadratic.stationary_covariance`, the eigenbasis closed form) for a few
:math:`\beta`, the identity at marked points, and Monte Carlo ratios of time-averaged :math:`x_k^2` (SGD and SGDM
on common random numbers, :func:`theory.stationary.stationary_second_moments`) with 95% delta-method intervals
(:func:`theory.stationary.ratio_of_means_interval`).  Right panel: for one :math:`\beta`, the truncations of order
1, 2, 3 of the SymPy series (derived from :func:`theory.quadratic_symbolic.stationary_variance_symbolic`) against
the exact ratio.

Monte Carlo: all :math:`\eta h` values run at once as the coordinates of a diagonal quadratic with
:math:`\eta=1`, :math:`H=\operatorname{diag}(\eta h)`, :math:`\Sigma=I` (independent coordinates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
from scipy import stats

from paper_figures.figure_parts import interval_errorbar, restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.style import FULL_WIDTH, PALETTE, new_figure, save_figure
from theory.problems import noisy_quadratic
from theory.quadratic import regime_loss_ratio, spectral_radius, stability_threshold, stationary_covariance
from theory.quadratic_symbolic import beta as beta_symbol
from theory.quadratic_symbolic import eta as eta_symbol
from theory.quadratic_symbolic import h as h_symbol
from theory.quadratic_symbolic import s as s_symbol
from theory.quadratic_symbolic import stationary_variance_symbolic
from theory.simulate import SGD, SGDM
from theory.stationary import ratio_of_means_interval, stationary_second_moments

__all__ = [
    "BETA_COLORS",
    "BURN_IN_RELAXATION_TIMES",
    "STATIONARY_RATIO_FIGURE",
    "StationaryRatioComparison",
    "check_burn_in",
    "plot_stationary_ratio",
    "ratio_series_coefficients",
    "stationary_ratio_comparison",
]

#: Burn-in needed before time-averaging, in relaxation times :math:`1/(-2\log\rho)` of the slowest second moment.
BURN_IN_RELAXATION_TIMES = 10.0
#: Colours of momentum values (blue and vermillion stay reserved for SGD and SGDM).
BETA_COLORS = (PALETTE[2], PALETTE[3], PALETTE[4], PALETTE[5])


# --- burn-in ----------------------------------------------------------------------------------------------------


def check_burn_in(burn_in: int, eta_h: Sequence[float], betas: Sequence[float]) -> None:
    r"""``ValueError`` unless ``burn_in`` steps cover :data:`BURN_IN_RELAXATION_TIMES` relaxation times.

    From a deterministic start the second moment of a mode with spectral radius :math:`\rho`
    (:func:`theory.quadratic.spectral_radius`) approaches its stationary value like :math:`\rho^{2k}`, so the
    relaxation time is :math:`1/(-2\log\rho)` steps; the slowest mode over SGD and every SGDM decides.
    """
    grid, momenta = np.asarray(eta_h, dtype=np.float64), np.asarray([0.0, *betas], dtype=np.float64)
    radius = spectral_radius(grid[:, None], momenta[None, :], "heavy_ball")
    slowest = np.unravel_index(int(np.argmax(radius)), radius.shape)
    rho = float(radius[slowest])
    if not rho < 1.0:
        raise ValueError(f"eta*h = {grid[slowest[0]]:g} is unstable (spectral radius {rho:.6g} >= 1)")
    needed = math.ceil(BURN_IN_RELAXATION_TIMES / (-2.0 * math.log(rho)))
    if burn_in < needed:
        raise ValueError(
            f"burn_in = {burn_in} steps is shorter than {BURN_IN_RELAXATION_TIMES:g} relaxation times of the slowest "
            f"mode (eta*h = {grid[slowest[0]]:g}, beta = {momenta[slowest[1]]:g}, spectral radius {rho:.6g}): "
            f"need burn_in >= {needed}"
        )


# --- theory ---------------------------------------------------------------------------------------------------


def _symbolic_ratio() -> sp.Expr:
    """SGD/SGDM stationary variance ratio from the SymPy derivation, at h = s = 1 (eta stands for eta*h)."""
    unit = {h_symbol: 1, s_symbol: 1}
    return (stationary_variance_symbolic("sgd") / stationary_variance_symbolic("sgdm")).subs(unit)


@cache
def ratio_series_coefficients(order: int) -> tuple[sp.Expr, ...]:
    r"""Coefficients :math:`(c_0,\dots,c_{\rm order})` of the series of the stationary variance ratio SGD/SGDM.

    :math:`\operatorname{Var}_{\rm SGD}/\operatorname{Var}_{\rm SGDM}=\sum_nc_n(\eta h)^n+O((\eta h)^{{\rm order}+1})`,
    exact in :math:`\beta`.

    Series by SymPy of the ratio of :func:`theory.quadratic_symbolic.stationary_variance_symbolic` for
    ``"sgd"`` and ``"sgdm"`` (at :math:`h=s=1`, so :math:`\eta` stands for :math:`\eta h`); by the identity of the
    module docstring, :math:`c_0=1` and :math:`c_n=\frac{\beta}{(1+\beta)2^{n-1}}` (tested).
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be an integer >= 0 (highest power of eta*h kept), got {order!r}")
    series = sp.expand(sp.series(_symbolic_ratio(), eta_symbol, 0, order + 1).removeO())
    return tuple(sp.factor(series.coeff(eta_symbol, n)) for n in range(order + 1))


def _check_eta_h(eta_h: Sequence[float], name: str) -> np.ndarray:
    grid = np.asarray(eta_h, dtype=np.float64).reshape(-1)
    limit = float(stability_threshold(0.0, "sgd"))
    if grid.size == 0 or not np.all((grid > 0.0) & (grid < limit)):
        raise ValueError(
            f"{name} must lie in (0, {limit:g}): SGD has no stationary law at or beyond its stability threshold "
            f"eta*h = {limit:g}; got {grid.tolist()}"
        )
    return grid


def _exact_ratio(eta_h: np.ndarray, beta: float) -> np.ndarray:
    # eta = 1 and h = eta*h: the ratio depends on eta*h only; one 1-D closed-form call per point.
    def variance(x: float, momentum: float) -> float:
        return float(stationary_covariance([[x]], [[1.0]], 1.0, momentum)[0, 0])

    return np.array([variance(x, 0.0) / variance(x, beta) for x in eta_h])


@dataclass(frozen=True)
class StationaryRatioComparison:
    r"""Exact, identity, series and Monte Carlo values of the stationary variance ratio SGD/SGDM.

    Arrays are indexed ``[beta, eta_h]``; ``series`` is ``[order, eta_h]`` at ``series_beta``; Monte Carlo values
    come with their 95% interval ``mc_low``, ``mc_high`` and standard error ``mc_se``.
    """

    betas: tuple[float, ...]
    eta_h: np.ndarray
    exact: np.ndarray
    symbolic: np.ndarray
    identity_eta_h: np.ndarray
    identity: np.ndarray
    series_beta: float
    series_orders: tuple[int, ...]
    series: np.ndarray
    series_exact: np.ndarray
    mc_eta_h: np.ndarray
    mc_exact: np.ndarray
    mc_ratio: np.ndarray
    mc_low: np.ndarray
    mc_high: np.ndarray
    mc_se: np.ndarray
    n_paths: int
    burn_in: int
    window: int


def stationary_ratio_comparison(
    betas: Sequence[float] = (0.5, 0.9, 0.99),
    eta_h: Sequence[float] = tuple(np.linspace(0.01, 1.95, 98)),
    identity_eta_h: Sequence[float] = (0.015, 0.03, 0.06, 0.15, 0.3, 0.6, 1.2, 1.6, 1.9),
    series_beta: float = 0.9,
    series_orders: Sequence[int] = (1, 2, 3),
    mc_eta_h: Sequence[float] = (0.1, 0.5, 0.9, 1.3, 1.7),
    n_paths: int = 2000,
    burn_in: int = 1000,
    window: int = 4000,
    observe_every: int = 10,
    seed: int = 0,
) -> StationaryRatioComparison:
    r"""Compute every curve and point of the figure (THEORY.md 5.4-5.5, claim 8; see the module docstring).

    The exact ratio on :math:`\tfrac h2x^2` at equal :math:`\eta` is
    :math:`\operatorname{Var}_{\rm SGD}/\operatorname{Var}_{\rm SGDM}=1+\frac{2\beta}{1+\beta}\frac{\eta h}{2-\eta h}`.

    ``ValueError`` if an :math:`\eta h` lies outside SGD's stable interval :math:`(0,2)` or ``burn_in`` is too short
    (:func:`check_burn_in`).  ``burn_in`` and ``window`` count steps; :math:`x_k^2` is averaged every
    ``observe_every`` steps, which must divide both.
    """
    grid = _check_eta_h(eta_h, "eta_h")
    marks = _check_eta_h(identity_eta_h, "identity_eta_h")
    mc_grid = _check_eta_h(mc_eta_h, "mc_eta_h")
    betas = tuple(float(b) for b in betas)
    check_burn_in(burn_in, mc_grid, betas)
    if observe_every < 1 or burn_in % observe_every or window % observe_every:
        raise ValueError(f"observe_every = {observe_every} must be >= 1 and divide burn_in and window")
    exact = np.array([_exact_ratio(grid, beta) for beta in betas])
    symbolic_ratio = sp.lambdify((eta_symbol, beta_symbol), _symbolic_ratio(), "numpy")
    symbolic = np.array([symbolic_ratio(grid, beta) for beta in betas])
    identity = np.array([[regime_loss_ratio(float(x), beta)[0] for x in marks] for beta in betas])

    if not series_orders or any(int(n) != n or n < 1 for n in series_orders):
        raise ValueError(f"series_orders must be a non-empty list of integers >= 1, got {list(series_orders)}")
    orders = tuple(int(n) for n in series_orders)
    beta_value = float(series_beta)
    coefficients = [float(c.subs(beta_symbol, beta_value)) for c in ratio_series_coefficients(max(orders))]
    series = [np.polynomial.polynomial.polyval(grid, coefficients[: order + 1]) for order in orders]

    problem = noisy_quadratic(np.diag(mc_grid), np.eye(mc_grid.size))
    methods = [SGD(problem, 1.0, sigma=1.0)] + [SGDM(problem, 1.0, beta=beta, sigma=1.0) for beta in betas]
    moments = stationary_second_moments(
        methods,
        np.zeros(mc_grid.size),
        burn_in // observe_every,
        window // observe_every,
        n_paths,
        seed,
        period_steps=observe_every,
    )
    estimates = [
        [ratio_of_means_interval(moments[0][:, j], moments[1 + i][:, j]) for j in range(mc_grid.size)]
        for i in range(len(betas))
    ]
    mc_ratio, mc_low, mc_high = (
        np.array([[getattr(e, field) for e in row] for row in estimates]) for field in ("ratio", "ci_low", "ci_high")
    )
    return StationaryRatioComparison(
        betas=betas,
        eta_h=grid,
        exact=exact,
        symbolic=symbolic,
        identity_eta_h=marks,
        identity=identity,
        series_beta=beta_value,
        series_orders=orders,
        series=np.array(series),
        series_exact=_exact_ratio(grid, beta_value),
        mc_eta_h=mc_grid,
        mc_exact=np.array([_exact_ratio(mc_grid, beta) for beta in betas]),
        mc_ratio=mc_ratio,
        mc_low=mc_low,
        mc_high=mc_high,
        mc_se=(mc_high - mc_low) / 2 / stats.t.ppf(0.975, n_paths - 1),
        n_paths=n_paths,
        burn_in=burn_in,
        window=window,
    )


# --- plot -----------------------------------------------------------------------------------------------------


def plot_stationary_ratio(comparison: StationaryRatioComparison, out_stem: str | Path) -> list[Path]:
    r"""Draw the two panels (log-log, :math:`\operatorname{Var}_{\rm SGD}/\operatorname{Var}_{\rm SGDM}-1` against
    :math:`\eta h`) and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    fig, ((left, right),) = new_figure(2, width=FULL_WIDTH, height=2.7)
    for i, beta in enumerate(comparison.betas):
        color = BETA_COLORS[i % len(BETA_COLORS)]
        left.plot(comparison.eta_h, comparison.exact[i] - 1, color=color, label=rf"$\beta$ = {beta:g}")
        left.plot(
            comparison.identity_eta_h, comparison.identity[i] - 1, ls="none", marker="o", mfc="none", ms=5, color=color
        )
        excess = (comparison.mc_ratio[i] - 1, comparison.mc_low[i] - 1, comparison.mc_high[i] - 1)
        interval_errorbar(left, comparison.mc_eta_h, *excess, marker="s", ms=2.5, color=color)
    for ax in (left, right):
        ax.axvline(2.0, color="0.5", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(comparison.eta_h[0], 2.3)
        ax.set_xlabel(r"$\eta h$ (effective learning rate $\times$ curvature)")
        ax.set_ylabel(r"stationary $\mathrm{Var}_{\rm SGD}/\mathrm{Var}_{\rm SGDM}-1$")
        ax.text(
            1.95,
            0.04,
            "SGD unstable",
            rotation=90,
            ha="right",
            va="bottom",
            fontsize=6.5,
            color="0.4",
            transform=ax.get_xaxis_transform(),
        )
    handles, _ = left.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.3", label="exact closed form"),
        Line2D(
            [],
            [],
            color="0.3",
            ls="none",
            marker="o",
            mfc="none",
            label=r"identity $\frac{2\beta}{1+\beta}\frac{\eta h}{2-\eta h}$",
        ),
        Line2D(
            [], [], color="0.3", ls="none", marker="s", ms=3, label=f"Monte Carlo, 95% CI ({comparison.n_paths} paths)"
        ),
    ]
    left.legend(handles=handles, loc="upper left")
    left.set_title("SGD's excess stationary variance (= loss) over SGDM, equal $\\eta$")

    right.plot(comparison.eta_h, comparison.series_exact - 1, color="0.1", lw=1.6, label="exact")
    shades = colormaps["viridis"](np.linspace(0.2, 0.8, len(comparison.series_orders)))
    for k, order in enumerate(comparison.series_orders):
        right.plot(
            comparison.eta_h,
            comparison.series[k] - 1,
            color=shades[k],
            ls=(0, (4, 1.5)),
            label=f"series to $(\\eta h)^{order}$",
        )
    right.set_title(f"the $\\eta h$-series diverges at SGD's threshold 2 ($\\beta$ = {comparison.series_beta:g})")
    right.legend(loc="upper left")
    return save_figure(fig, out_stem)


# --- registration ---------------------------------------------------------------------------------------------


def _settings(context: FigureContext) -> dict[str, Any]:
    if context.scale == "tiny":
        return {
            "betas": [0.5, 0.9],
            "curve_points": 40,
            "mc_eta_h": [0.3, 1.0, 1.7],
            "n_paths": 200,
            "burn_in": 150,
            "window": 300,
            "observe_every": 5,
            "seed": 0,
        }
    if context.scale == "quick":
        return {
            "betas": [0.5, 0.9, 0.99],
            "curve_points": 196,
            "mc_eta_h": [0.1, 0.2, 0.4, 0.7, 1.0, 1.4, 1.8],
            "n_paths": 2000,
            "burn_in": 1000,
            "window": 2000,
            "observe_every": 5,
            "seed": 0,
        }
    return {
        "betas": [0.5, 0.9, 0.99],
        "curve_points": 391,
        "mc_eta_h": [round(0.1 * k, 1) for k in range(1, 20)],
        "n_paths": 10_000,
        "burn_in": 1000,
        "window": 20_000,
        "observe_every": 2,
        "seed": 0,
    }


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    comparison = stationary_ratio_comparison(
        betas=settings["betas"],
        eta_h=np.geomspace(0.01, 1.96, settings["curve_points"]),
        mc_eta_h=settings["mc_eta_h"],
        n_paths=settings["n_paths"],
        burn_in=settings["burn_in"],
        window=settings["window"],
        observe_every=settings["observe_every"],
        seed=settings["seed"],
    )
    z_scores = (comparison.mc_ratio - comparison.mc_exact) / comparison.mc_se
    identity_gap = max(
        abs(regime_loss_ratio(float(x), beta)[0] - value)
        for i, beta in enumerate(comparison.betas)
        for x, value in zip(comparison.eta_h, comparison.exact[i], strict=True)
    )
    summary: dict[str, Any] = {
        "identity_max_abs_deviation_from_closed_form": identity_gap,
        "sympy_max_abs_deviation_from_closed_form": float(np.max(np.abs(comparison.symbolic - comparison.exact))),
        "monte_carlo_max_abs_z": float(np.max(np.abs(z_scores))),
    }
    for i, beta in enumerate(comparison.betas):
        for j, x in enumerate(comparison.mc_eta_h):
            if x in (0.1, 0.3, 1.0, 1.8):
                half = (comparison.mc_high[i, j] - comparison.mc_low[i, j]) / 2
                summary[f"ratio beta={beta:g} eta*h={x:g}"] = (
                    f"exact {comparison.mc_exact[i, j]:.4f}, MC {comparison.mc_ratio[i, j]:.4f} ± {half:.4f}"
                )
    relative = np.abs(comparison.series / comparison.series_exact - 1.0)
    for k, order in enumerate(comparison.series_orders):
        good = comparison.eta_h[relative[k] <= 0.01]
        summary[f"series order {order} within 1% up to eta*h"] = float(good.max()) if good.size else 0.0
    return Computed(data={"comparison": asdict(comparison), "summary": summary}, seeds=(settings["seed"],))


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    comparison = restore_dataclass(StationaryRatioComparison, data["comparison"], tuples=("betas", "series_orders"))
    return plot_stationary_ratio(comparison, stem)


STATIONARY_RATIO_FIGURE = register(
    FigureSpec(
        figure_id="fig_stationary_ratio",
        title="Stationary variance ratio SGD/SGDM at equal effective learning rate: exact, series, Monte Carlo",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
    )
)
