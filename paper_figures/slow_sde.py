r"""Figure of Theorem 4.5: SGD, SGDM and the slow SDE on the label-noise toy, and the manifold itself.

Figure ID ``fig_slow_sde``.  Compute and plot are separate: :func:`slow_sde_comparison` simulates
(vectorised, seeded) and returns arrays; :func:`plot_slow_sde` draws them with
:func:`toy_manifold_figure_data` (the manifold, the label-noise flow and isotropic-noise slow-SDE paths).

Left panel: the position :math:`s` of :math:`\Phi(x)` along :math:`\Gamma=\{uv=1\}` against slow time
:math:`t=k\eta^2` — mean over paths of SGD and of SGDM (paper eq. (3), same :math:`\eta`) for each
:math:`\eta`, and the slow SDE's flow :math:`\sinh2s(t)=\sinh2s_0e^{-t}` (THEORY.md 7.4, oracle 22).
Right panel: :math:`\Gamma`, the separatrix :math:`u+v=0`, the label-noise slow flow, isotropic-noise
slow-SDE sample paths, and one SGD path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, PALETTE, new_figure, save_figure
from theory.manifold import integrate_slow_sde
from theory.manifold_models import (
    isotropic_noise_toy_model,
    label_noise_toy_model,
    toy_coordinate,
    toy_label_noise_flow,
    toy_manifold_point,
)
from theory.problems import Problem
from theory.simulate import SGD, SGDM, simulate

__all__ = [
    "SLOW_SDE_FIGURE",
    "SlowSDEComparison",
    "ToyManifoldFigureData",
    "plot_slow_sde",
    "slow_sde_comparison",
    "toy_manifold_figure_data",
]


@dataclass(frozen=True)
class SlowSDEComparison:
    """Mean manifold coordinate of SGD and SGDM per ``eta`` on a common slow-time grid, and the slow SDE."""

    times: np.ndarray
    slow_sde: np.ndarray
    etas: tuple[float, ...]
    beta: float
    sgd: np.ndarray  # (len(etas), len(times))
    sgdm: np.ndarray  # (len(etas), len(times))
    sgd_path: np.ndarray  # (len(times), 2): one SGD path at the smallest eta, in (u, v)


def slow_sde_comparison(
    etas: tuple[float, ...] = (0.04, 0.02),
    beta: float = 0.9,
    t_final: float = 2.0,
    s0: float = 1.0,
    n_paths: int = 500,
    n_points: int = 51,
    seed: int = 0,
) -> SlowSDEComparison:
    r"""Simulate SGD and SGDM (:math:`\sigma=1`) for :math:`t_{\rm final}/\eta^2` steps from :math:`(e^{s_0},e^{-s_0})`.

    Every :math:`t_{\rm final}/\eta^2` must be divisible by ``n_points - 1`` (the observation grid).
    """
    model = label_noise_toy_model()
    problem = Problem(model.name, model.symbolic.variables, model.symbolic.loss, model.symbolic.noise_factor)
    x0 = toy_manifold_point(np.array(s0))
    times = np.linspace(0.0, t_final, n_points)
    sgd, sgdm = [], []
    sgd_path = np.empty((n_points, 2))
    for i, eta in enumerate(etas):
        steps = round(t_final / eta**2)
        if steps % (n_points - 1):
            raise ValueError(f"t_final / eta^2 = {steps} steps must be divisible by n_points - 1 = {n_points - 1}")
        every = steps // (n_points - 1)
        for method, store in (
            (SGD(problem, eta, sigma=1.0, time_scale=eta**2), sgd),
            (SGDM(problem, eta, beta=beta, sigma=1.0, time_scale=eta**2), sgdm),
        ):
            values = simulate(method, x0, steps, n_paths, seed + i, observe_every=every).values
            store.append(toy_coordinate(values).mean(axis=1))
            if store is sgd and i == len(etas) - 1:
                sgd_path = values[:, 0, :]
    return SlowSDEComparison(
        times=times,
        slow_sde=toy_label_noise_flow(s0, times),
        etas=tuple(etas),
        beta=beta,
        sgd=np.array(sgd),
        sgdm=np.array(sgdm),
        sgd_path=sgd_path,
    )


@dataclass(frozen=True)
class ToyManifoldFigureData:
    r"""Data for the manifold figure of the 2-D toy: the curve :math:`\Gamma_+`, the separatrix, the label-noise
    slow flow (ODE and closed form) and isotropic-noise slow-SDE sample paths, on :math:`t=k\eta^2`.
    """

    manifold_curve: np.ndarray  # (n_curve, 2): (e^s, e^-s), s in [-s_max, s_max]
    separatrix: np.ndarray  # (2, 2): end points of the segment u + v = 0 in the plotted window
    times: np.ndarray  # (n_times,)
    label_noise_path: np.ndarray  # (n_times, 2): slow flow by solve_ivp
    label_noise_closed_form: np.ndarray  # (n_times, 2): sinh(2 s) = sinh(2 s0) e^{-sigma^2 t}
    isotropic_paths: np.ndarray  # (n_paths, n_times, 2): Euler-Maruyama with re-projection


def toy_manifold_figure_data(
    s0: float = 1.0, t_final: float = 2.0, *, n_paths: int = 5, n_steps: int = 400, sigma: float = 1.0, seed: int = 0
) -> ToyManifoldFigureData:
    r"""Arrays for a figure of :math:`\Gamma=\{uv=1\}` with slow-SDE trajectories from
    :math:`\zeta_0=(e^{s_0},e^{-s_0})` (Theorem 4.5; THEORY.md 7.4): label noise (a deterministic flow to the
    flattest point :math:`s=0`) and isotropic noise (diffusion along :math:`\Gamma`), from the closed forms and
    :func:`theory.manifold.integrate_slow_sde` on :func:`theory.manifold_models.label_noise_toy_model` and
    :func:`theory.manifold_models.isotropic_noise_toy_model`; drawn by :func:`plot_slow_sde`.
    """
    s_max = abs(s0) + 1.0
    curve = toy_manifold_point(np.linspace(-s_max, s_max, 201))
    zeta0 = toy_manifold_point(np.array(s0))
    label = integrate_slow_sde(label_noise_toy_model(), zeta0, t_final, sigma=sigma, n_steps=n_steps)
    isotropic = integrate_slow_sde(
        isotropic_noise_toy_model(), zeta0, t_final, sigma=sigma, n_steps=n_steps, n_paths=n_paths, rng=seed
    )
    edge = math.exp(s_max)
    return ToyManifoldFigureData(
        manifold_curve=curve,
        separatrix=np.array([[-edge, edge], [edge, -edge]]),
        times=label.times,
        label_noise_path=label.states[0],
        label_noise_closed_form=toy_manifold_point(toy_label_noise_flow(s0, label.times, sigma)),
        isotropic_paths=isotropic.states,
    )


def plot_slow_sde(comparison: SlowSDEComparison, manifold: ToyManifoldFigureData, out_stem: str | Path) -> list[Path]:
    """Draw the two panels and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    fig, ((left, right),) = new_figure(2, width=FULL_WIDTH, height=2.8)
    left.plot(comparison.times, comparison.slow_sde, color=PALETTE[6], lw=2, label="slow SDE")
    for i, eta in enumerate(comparison.etas):
        style = {"alpha": 0.5 + 0.5 * i / max(1, len(comparison.etas) - 1)}
        left.plot(
            comparison.times,
            comparison.sgd[i],
            color=OPTIMIZER_COLORS["SGD"],
            ls="--",
            label=f"SGD, $\\eta$={eta:g}",
            **style,
        )
        left.plot(
            comparison.times,
            comparison.sgdm[i],
            color=OPTIMIZER_COLORS["SGDM"],
            ls=":",
            label=f"SGDM $\\beta$={comparison.beta:g}, $\\eta$={eta:g}",
            **style,
        )
    left.set_xlabel(r"slow time $t=k\eta^2$")
    left.set_ylabel(r"position $s$ of $\Phi(x)$ on $\Gamma$")
    left.legend()
    left.set_title("Theorem 4.5: SGD and SGDM follow one slow SDE")

    right.plot(*manifold.manifold_curve.T, color=PALETTE[6], lw=1, label=r"$\Gamma=\{uv=1\}$")
    right.plot(*manifold.separatrix.T, color="0.6", lw=0.8, ls="--", label="separatrix $u+v=0$")
    for k, path in enumerate(manifold.isotropic_paths):
        right.plot(*path.T, color=PALETTE[5], lw=0.6, alpha=0.7, label="isotropic-noise slow SDE" if k == 0 else None)
    right.plot(*manifold.label_noise_path.T, color=PALETTE[2], lw=2, label="label-noise slow flow")
    right.plot(*comparison.sgd_path.T, color=OPTIMIZER_COLORS["SGD"], lw=0.6, marker=".", ms=2, label="one SGD path")
    right.set_xlim(-0.6, 4)
    right.set_ylim(-0.6, 4)
    right.set_aspect("equal")
    right.set_xlabel("$u$")
    right.set_ylabel("$v$")
    right.legend(loc="upper right")
    right.set_title(r"toy $\mathcal{L}=\frac{1}{2}(uv-1)^2$")
    return save_figure(fig, out_stem)


def _settings(context: FigureContext) -> dict[str, Any]:
    if context.scale == "tiny":
        return {"etas": [0.04], "beta": 0.9, "n_paths": 50, "manifold_paths": 2, "seed": 0}
    if context.scale == "quick":
        return {"etas": [0.04, 0.02], "beta": 0.9, "n_paths": 500, "manifold_paths": 5, "seed": 0}
    return {"etas": [0.04, 0.02, 0.01], "beta": 0.9, "n_paths": 2000, "manifold_paths": 5, "seed": 0}


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    comparison = slow_sde_comparison(
        etas=tuple(settings["etas"]), beta=settings["beta"], n_paths=settings["n_paths"], seed=settings["seed"]
    )
    manifold = toy_manifold_figure_data(n_paths=settings["manifold_paths"], seed=settings["seed"])
    final_gap = np.abs(comparison.sgd[:, -1] - comparison.slow_sde[-1])
    summary = {
        "slow_sde_s_final": float(comparison.slow_sde[-1]),
        "sgd_gap_at_t_final": dict(zip(map(str, comparison.etas), final_gap.tolist(), strict=True)),
        "sgdm_gap_at_t_final": dict(
            zip(
                map(str, comparison.etas),
                np.abs(comparison.sgdm[:, -1] - comparison.slow_sde[-1]).tolist(),
                strict=True,
            )
        ),
    }
    data = {"comparison": asdict(comparison), "manifold": asdict(manifold), "summary": summary}
    return Computed(data=data, seeds=(settings["seed"],))


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    comparison = restore_dataclass(SlowSDEComparison, data["comparison"], tuples=("etas",))
    manifold = restore_dataclass(ToyManifoldFigureData, data["manifold"])
    return plot_slow_sde(comparison, manifold, stem)


SLOW_SDE_FIGURE = register(
    FigureSpec(
        figure_id="fig_slow_sde",
        title="Theorem 4.5: SGD, SGDM and the slow SDE on the label-noise toy",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
    )
)
