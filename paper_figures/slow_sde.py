r"""Figure of Theorem 4.5: SGD, SGDM and the slow SDE on the label-noise toy, and the manifold itself.

Compute and plot are separate: :func:`slow_sde_comparison` simulates (vectorised, seeded) and returns
arrays; :func:`plot_slow_sde` draws them with :func:`theory.manifold_models.toy_manifold_figure_data`.

Left panel: the position :math:`s` of :math:`\Phi(x)` along :math:`\Gamma=\{uv=1\}` against slow time
:math:`t=k\eta^2` — mean over paths of SGD and of SGDM (paper eq. (3), same :math:`\eta`) for each
:math:`\eta`, and the slow SDE's flow :math:`\sinh2s(t)=\sinh2s_0e^{-t}` (THEORY.md 7.4, oracle 22).
Right panel: :math:`\Gamma`, the separatrix :math:`u+v=0`, the label-noise slow flow, isotropic-noise
slow-SDE sample paths, and one SGD path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theory.manifold_models import (
    ToyManifoldFigureData,
    label_noise_toy_model,
    toy_coordinate,
    toy_label_noise_flow,
    toy_manifold_point,
)
from theory.problems import Problem
from theory.simulate import SGD, SGDM, simulate

__all__ = ["SlowSDEComparison", "plot_slow_sde", "slow_sde_comparison"]

#: Okabe-Ito colour-blind-safe palette.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.8), constrained_layout=True)
    left.plot(comparison.times, comparison.slow_sde, color=PALETTE[6], lw=2, label="slow SDE")
    for i, eta in enumerate(comparison.etas):
        style = {"alpha": 0.5 + 0.5 * i / max(1, len(comparison.etas) - 1)}
        left.plot(
            comparison.times, comparison.sgd[i], color=PALETTE[0], ls="--", label=f"SGD, $\\eta$={eta:g}", **style
        )
        left.plot(
            comparison.times,
            comparison.sgdm[i],
            color=PALETTE[1],
            ls=":",
            label=f"SGDM $\\beta$={comparison.beta:g}, $\\eta$={eta:g}",
            **style,
        )
    left.set_xlabel(r"slow time $t=k\eta^2$")
    left.set_ylabel(r"position $s$ of $\Phi(x)$ on $\Gamma$")
    left.legend(fontsize=6, frameon=False)
    left.set_title("Theorem 4.5: same slow SDE", fontsize=8)

    right.plot(*manifold.manifold_curve.T, color=PALETTE[6], lw=1, label=r"$\Gamma=\{uv=1\}$")
    right.plot(*manifold.separatrix.T, color="0.6", lw=0.8, ls="--", label="separatrix $u+v=0$")
    for k, path in enumerate(manifold.isotropic_paths):
        right.plot(*path.T, color=PALETTE[5], lw=0.6, alpha=0.7, label="isotropic-noise slow SDE" if k == 0 else None)
    right.plot(*manifold.label_noise_path.T, color=PALETTE[2], lw=2, label="label-noise slow flow")
    right.plot(*comparison.sgd_path.T, color=PALETTE[0], lw=0.6, marker=".", ms=2, label="one SGD path")
    right.set_xlim(-0.6, 4)
    right.set_ylim(-0.6, 4)
    right.set_aspect("equal")
    right.set_xlabel("$u$")
    right.set_ylabel("$v$")
    right.legend(fontsize=6, frameon=False, loc="upper right")
    right.set_title(r"toy $\mathcal{L}=\frac{1}{2}(uv-1)^2$", fontsize=8)

    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(written[0], dpi=200)
    fig.savefig(written[1])
    plt.close(fig)
    return written
