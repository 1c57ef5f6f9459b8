r"""The three regimes of the momentum scaling :math:`1-\beta=c\,\eta^\alpha` (THEORY.md 3.3-3.6) against their limits.

Figure ID ``fig_alpha_regimes``.  Normalized SGDM (paper eq. (3)) on the noisy quadratic :math:`\mathcal L=\tfrac h2
x^2` with additive noise and the canonical scale :math:`\sigma=\eta^{-1/2}` (total noise variance :math:`1/\eta`),
started at :math:`(x_0,m_0)=(x_0,0)`, over :math:`T/\eta` steps, time :math:`t=k\eta`.  Each panel shows the exact
:math:`\mathbb Ex_k^2` of the discrete method for several :math:`\eta` (no sampling: the moment recursion
:math:`\mu_{k+1}=A\mu_k`, :math:`P_{k+1}=AP_kA^\top+B\Sigma B^\top` of :func:`theory.moments.discrete_moments`), a
Monte Carlo check at one :math:`\eta` (:func:`theory.simulate.simulate`, 95% intervals), and the limit
:math:`\eta\to0` — the SDE of :func:`theory.sde.sgdm_sde`, whose moments solve the linear ODE
:math:`\dot\mu=A\mu+a`, :math:`\dot P=AP+PA^\top+GG^\top` (:func:`theory.moments.linear_sde_moments`):

* :math:`\alpha<1` (Theorem 3.5): SGD's SDE :math:`dX=-hX\,dt+dW`, so
  :math:`\mathbb EX_t^2=x_0^2e^{-2ht}+\frac{1-e^{-2ht}}{2h}`; momentum does not change the limit.
* :math:`\alpha=1` (THEORY.md 3.5): the underdamped SDE :math:`dX=-M\,dt`,
  :math:`dM=c(hX-M)\,dt+c\,dW`: a damped oscillator, visibly not SGD's SDE (grey), although its stationary
  :math:`\operatorname{Var}X=\frac1{2h}` is the same (oracle 12).
* :math:`\alpha>1` (THEORY.md 3.6): :math:`dX=-M\,dt`, :math:`dM=0` — the momentum is frozen over
  :math:`O(1/\eta)` steps, so :math:`X_t=x_0-m_0t` (here :math:`x_0`): neither the gradient nor the noise acts yet.
  Convergence is slow: SGDM is the underdamped oscillator with :math:`c=\eta^{\alpha-1}`, of frequency about
  :math:`\sqrt{ch}`, so it looks frozen only once :math:`\eta^{(\alpha-1)/2}T\ll1`; the figure uses :math:`\alpha=2`.

SGD's SDE (grey, dashed) is drawn in every panel for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import interval_arrays, interval_errorbar, restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.stats import mean_interval
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, new_figure, save_figure
from theory.moments import discrete_moments, linear_sde_moments, sde_moments
from theory.params import MomentumParams
from theory.problems import noisy_quadratic
from theory.sde import sgdm_sde
from theory.simulate import SGDM, simulate

__all__ = ["ALPHA_REGIMES_FIGURE", "AlphaRegimes", "alpha_regimes", "plot_alpha_regimes"]


@dataclass(frozen=True)
class AlphaRegimes:
    r"""Second moments :math:`\mathbb Ex^2` on the time grid ``times``.

    ``discrete[alpha, eta, t]`` exact for SGDM, ``limit[alpha, t]`` the SDE limit, ``sgd_sde[t]`` SGD's SDE;
    ``mc_*[alpha, t_mc]`` Monte Carlo at ``mc_eta`` with 95% intervals, ``mc_exact`` the exact value there and
    ``mc_exact_sd`` the exact standard deviation of :math:`x_k^2` over paths (:math:`x_k` is Gaussian with mean
    :math:`\mu` and variance :math:`v`: :math:`\operatorname{Var}x^2=2v^2+4\mu^2v`), the honest scale for the
    Monte Carlo error of a skewed :math:`x^2` (a sample standard deviation understates it when the mean is low).
    """

    alphas: tuple[float, ...]
    etas: tuple[float, ...]
    c: float
    h: float
    x0: float
    times: np.ndarray
    discrete: np.ndarray
    limit: np.ndarray
    sgd_sde: np.ndarray
    mc_eta: float
    mc_times: np.ndarray
    mc_mean: np.ndarray
    mc_low: np.ndarray
    mc_high: np.ndarray
    mc_exact: np.ndarray
    mc_exact_sd: np.ndarray
    n_paths: int

    def sup_distance(self) -> np.ndarray:
        r""":math:`\max_t|\mathbb Ex^2_{\rm SGDM}(t)-\mathbb EX^2_{\rm limit}(t)|` per ``[alpha, eta]``."""
        return np.max(np.abs(self.discrete - self.limit[:, None, :]), axis=-1)


def _limit_second_moment(alpha: float, eta: float, c: float, h: float, x0: float, times: np.ndarray) -> np.ndarray:
    sde = sgdm_sde(noisy_quadratic(h), eta, alpha, c=c)
    drift, offset, diffusion = sde.linear_coefficients
    start = np.zeros(sde.dim)
    start[0] = x0  # (x, m) with m0 = 0 when the limit keeps the momentum
    moments = linear_sde_moments(drift, diffusion, start, times, offset=offset)
    return moments.mean[:, 0] ** 2 + moments.cov[:, 0, 0]


def _check_grid(etas: Sequence[float], T: float, n_points: int) -> None:
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
        raise ValueError(f"n_points and mc_points must be integers >= 2 (a time grid), got {n_points!r}")
    for eta in etas:
        steps = round(T / eta)
        if abs(steps * eta - T) > 1e-9 * T or steps % (n_points - 1):
            raise ValueError(
                f"T / eta = {T / eta:g} must be a whole number of steps divisible by n_points - 1 = {n_points - 1}"
            )


def alpha_regimes(
    alphas: Sequence[float] = (0.5, 1.0, 2.0),
    etas: Sequence[float] = (0.1, 0.01, 0.001),
    c: float = 1.0,
    h: float = 1.0,
    x0: float = 2.0,
    T: float = 8.0,
    n_points: int = 81,
    mc_eta: float = 0.01,
    mc_points: int = 17,
    n_paths: int = 4000,
    seed: int = 0,
) -> AlphaRegimes:
    r"""Exact discrete second moments, their SDE limits and a Monte Carlo check (THEORY.md 3.3-3.6).

    :math:`1-\beta=c\eta^\alpha`: for :math:`\alpha<1` the limit is SGD's SDE :math:`dX=-hX\,dt+s\,dW`
    (Theorem 3.5); at :math:`\alpha=1` the underdamped SDE of THEORY.md 3.5; for :math:`\alpha>1` frozen momentum
    (THEORY.md 3.6).  All three limits come from :func:`theory.sde.sgdm_sde`.

    ``T / eta`` must be a whole number of steps divisible by ``n_points - 1`` for every ``eta`` (and by
    ``mc_points - 1`` at ``mc_eta``); ``1 - beta = c * eta**alpha`` must lie in (0, 1].
    """
    _check_grid(etas, T, n_points)
    _check_grid([mc_eta], T, mc_points)
    times = np.linspace(0.0, T, n_points)
    discrete = np.empty((len(alphas), len(etas), n_points))
    for i, alpha in enumerate(alphas):
        for j, eta in enumerate(etas):
            beta = MomentumParams.from_alpha(eta, alpha, c).beta
            steps = round(T / eta)
            moments = discrete_moments(h, 1.0 / eta, eta, beta, x0=[x0], steps=steps)
            every = steps // (n_points - 1)
            discrete[i, j] = moments.mean_x[::every, 0] ** 2 + moments.cov_x[::every, 0, 0]
    limit = np.array([_limit_second_moment(alpha, etas[0], c, h, x0, times) for alpha in alphas])
    sgd = sde_moments(h, 1.0 / etas[0], etas[0], x0=[x0], times=times)  # eta * sigma^2 = 1 for every eta

    problem = noisy_quadratic(h)
    steps = round(T / mc_eta)
    every = steps // (mc_points - 1)
    mc, exact, exact_sd = [], [], []
    for i, alpha in enumerate(alphas):
        beta = MomentumParams.from_alpha(mc_eta, alpha, c).beta
        paths = simulate(SGDM(problem, mc_eta, beta=beta), [x0], steps, n_paths, seed + i, observe_every=every)
        mc.append([mean_interval(x[:, 0] ** 2) for x in paths.values])
        moments = discrete_moments(h, 1.0 / mc_eta, mc_eta, beta, x0=[x0], steps=steps)
        mean, variance = moments.mean_x[::every, 0], moments.cov_x[::every, 0, 0]
        exact.append(mean**2 + variance)
        exact_sd.append(np.sqrt(2 * variance**2 + 4 * mean**2 * variance))
    mc_mean, mc_low, mc_high = interval_arrays(mc)
    return AlphaRegimes(
        alphas=tuple(float(a) for a in alphas),
        etas=tuple(float(e) for e in etas),
        c=float(c),
        h=float(h),
        x0=float(x0),
        times=times,
        discrete=discrete,
        limit=limit,
        sgd_sde=sgd.mean[:, 0] ** 2 + sgd.cov[:, 0, 0],
        mc_eta=float(mc_eta),
        mc_times=np.linspace(0.0, T, mc_points),
        mc_mean=mc_mean,
        mc_low=mc_low,
        mc_high=mc_high,
        mc_exact=np.array(exact),
        mc_exact_sd=np.array(exact_sd),
        n_paths=n_paths,
    )


def _regime_title(alpha: float) -> str:
    if alpha < 1:
        return rf"$\alpha$ = {alpha:g} < 1: SGD's SDE (Theorem 3.5)"
    if alpha == 1:
        return r"$\alpha$ = 1: underdamped SDE"
    return rf"$\alpha$ = {alpha:g} > 1: frozen momentum"


def plot_alpha_regimes(regimes: AlphaRegimes, out_stem: str | Path) -> list[Path]:
    """Draw one panel per alpha and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    from matplotlib import colormaps

    fig, (axes,) = new_figure(len(regimes.alphas), width=FULL_WIDTH, height=2.6, sharey=True)
    shades = colormaps["viridis"](np.linspace(0.15, 0.75, len(regimes.etas)))
    for i, (ax, alpha) in enumerate(zip(axes, regimes.alphas, strict=True)):
        ax.plot(regimes.times, regimes.sgd_sde, color="0.55", lw=1.0, ls="--", label="SGD's SDE")
        for j, eta in enumerate(regimes.etas):
            ax.plot(
                regimes.times, regimes.discrete[i, j], color=shades[j], lw=1.0, label=f"SGDM exact, $\\eta$={eta:g}"
            )
        ax.plot(regimes.times, regimes.limit[i], color="0.05", lw=1.8, ls=(0, (1, 1.2)), label=r"limit $\eta\to0$")
        interval_errorbar(
            ax,
            regimes.mc_times,
            regimes.mc_mean[i],
            regimes.mc_low[i],
            regimes.mc_high[i],
            marker="o",
            mfc="none",
            ms=3,
            capsize=1.2,
            elinewidth=0.7,
            color=OPTIMIZER_COLORS["SGDM"],
            label=f"Monte Carlo, $\\eta$={regimes.mc_eta:g}, 95% CI",
        )
        ax.set_title(_regime_title(alpha))
        ax.set_xlabel(r"time $t=k\eta$")
    axes[0].set_ylabel(r"$\mathbb{E}\,x_k^2$")
    axes[len(axes) // 2].legend(loc="upper right")
    scale = "" if regimes.c == 1 else f"{regimes.c:g}\\,"
    fig.suptitle(
        rf"SGDM with $1-\beta={scale}\eta^\alpha$, $\sigma=\eta^{{-1/2}}$ on $\frac{{h}}{{2}}x^2$ "
        rf"($h$ = {regimes.h:g}, $x_0$ = {regimes.x0:g}): exact $\mathbb{{E}}\,x_k^2$ and the $\eta\to0$ limit",
        fontsize=8,
    )
    return save_figure(fig, out_stem)


def _settings(context: FigureContext) -> dict[str, Any]:
    common = {"alphas": [0.5, 1.0, 2.0], "c": 1.0, "h": 1.0, "x0": 2.0, "T": 8.0, "seed": 0}
    if context.scale == "tiny":
        return {**common, "etas": [0.1, 0.02], "n_points": 41, "mc_eta": 0.02, "mc_points": 9, "n_paths": 500}
    if context.scale == "quick":
        return {**common, "etas": [0.1, 0.01, 0.001], "n_points": 81, "mc_eta": 0.01, "mc_points": 17, "n_paths": 4000}
    return {
        **common,
        "etas": [0.1, 0.01, 0.001, 0.0001],
        "n_points": 81,
        "mc_eta": 0.01,
        "mc_points": 33,
        "n_paths": 100_000,
    }


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    regimes = alpha_regimes(
        alphas=settings["alphas"],
        etas=settings["etas"],
        c=settings["c"],
        h=settings["h"],
        x0=settings["x0"],
        T=settings["T"],
        n_points=settings["n_points"],
        mc_eta=settings["mc_eta"],
        mc_points=settings["mc_points"],
        n_paths=settings["n_paths"],
        seed=settings["seed"],
    )
    distance = regimes.sup_distance()
    standard_error = regimes.mc_exact_sd / np.sqrt(regimes.n_paths)
    summary: dict[str, Any] = {
        f"alpha={alpha:g} max_t |E x^2 - limit|": {
            f"eta={eta:g}": float(distance[i, j]) for j, eta in enumerate(regimes.etas)
        }
        for i, alpha in enumerate(regimes.alphas)
    }
    z = (regimes.mc_mean - regimes.mc_exact)[:, 1:] / standard_error[:, 1:]  # t = 0 is deterministic
    summary["monte_carlo max |z| (exact standard error)"] = float(np.max(np.abs(z)))
    seeds = tuple(settings["seed"] + i for i in range(len(regimes.alphas)))
    return Computed(data={"regimes": asdict(regimes), "summary": summary}, seeds=seeds)


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    regimes = restore_dataclass(AlphaRegimes, data["regimes"], tuples=("alphas", "etas"))
    return plot_alpha_regimes(regimes, stem)


ALPHA_REGIMES_FIGURE = register(
    FigureSpec(
        figure_id="fig_alpha_regimes",
        title="Momentum scaling 1 - beta = eta^alpha: alpha < 1, = 1, > 1 against their SDE limits",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
    )
)
