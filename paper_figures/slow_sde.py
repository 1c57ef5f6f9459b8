r"""Figure of Theorem 4.5: SGD, SGDM and the slow SDE on the label-noise toy, and the manifold itself.

Figure ID ``fig_slow_sde``.  Compute and plot are separate: :func:`slow_sde_comparison` simulates
(vectorised, seeded) and returns arrays; :func:`plot_slow_sde` draws them with
:func:`theory.manifold_models.toy_manifold_figure_data`.

Left panel: the position :math:`s` of :math:`\Phi(x)` along :math:`\Gamma=\{uv=1\}` against slow time
:math:`t=k\eta^2` — mean over paths of SGD and of SGDM (paper eq. (3), same :math:`\eta`) for each
:math:`\eta`, and the slow SDE's flow :math:`\sinh2s(t)=\sinh2s_0e^{-t}` (THEORY.md 7.4, oracle 22).
Right panel: :math:`\Gamma`, the separatrix :math:`u+v=0`, the label-noise slow flow, isotropic-noise
slow-SDE sample paths, and one SGD path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, PALETTE, new_figure, save_figure
from theory.manifold_models import (
    ToyManifoldFigureData,
    label_noise_toy_model,
    toy_coordinate,
    toy_label_noise_flow,
    toy_manifold_figure_data,
    toy_manifold_point,
)
from theory.problems import Problem
from theory.simulate import SGD, SGDM, simulate

__all__ = ["SLOW_SDE_FIGURE", "SlowSDEComparison", "plot_slow_sde", "slow_sde_comparison"]


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
