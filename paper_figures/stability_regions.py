r"""Linear stability regions of SGD, heavy-ball SGDM and Nesterov in the :math:`(\eta h,\beta)` plane (THEORY.md 5.3).

Figure ID ``fig_stability_regions``.  On :math:`\mathcal L=\tfrac h2x^2` each method is a linear recursion whose
characteristic polynomial (THEORY.md 1.4, 5.2; oracle 16), with :math:`\gamma h=(1-\beta)\eta h`, is

.. math::
    \text{SGD: } r-(1-\eta h),\qquad \text{heavy ball: } r^2-(1+\beta-\gamma h)r+\beta,\qquad
    \text{Nesterov: } r^2-(1+\beta)(1-\gamma h)r+\beta(1-\gamma h),

and the Jury conditions give the stable intervals (:func:`theory.quadratic.stability_threshold`, oracle 15)

.. math:: 0<\eta h<2,\qquad 0<\eta h<\frac{2(1+\beta)}{1-\beta},\qquad
          0<\eta h<\frac{2(1+\beta)}{(1-\beta)(1+2\beta)} .

At equal effective learning rate momentum tolerates sharper curvature (38 vs 2 at :math:`\beta=0.9`): this is
where momentum matters (claim 8, THEORY.md 2.4), when curvature-induced instability binds.

Left panel: the three nested regions (theory) and the measured edges: for each :math:`\beta` on a grid, bisection
in :math:`\log\eta h` of "the deterministic iteration of the update rule (:mod:`theory.forms`: paper eq. (3) and
normalized Nesterov) from :math:`(x_0,m_0)=(1,0)` has :math:`\max_{K-W<k\le K}|x_k|>1`"
(:func:`theory.quadratic.measured_stability_edge`).  Right panel: the
spectral radius of the transition matrix (:func:`theory.quadratic.transition_matrix`, eigenvalues by NumPy) against
:math:`\eta h` at one :math:`\beta`, crossing 1 at the thresholds, with the measured edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.style import FULL_WIDTH, OPTIMIZER_COLORS, PALETTE, new_figure, save_figure
from theory.forms import normalized_nesterov_step, normalized_step, sgd_step
from theory.params import check_momentum
from theory.quadratic import STABILITY_METHODS, stability_threshold, transition_matrix
from theory.quadratic import measured_stability_edge as theory_measured_stability_edge

__all__ = [
    "METHOD_COLORS",
    "STABILITY_REGIONS_FIGURE",
    "STEPS",
    "StabilityRegions",
    "measured_stability_edge",
    "plot_stability_regions",
    "stability_regions",
    "transition_spectral_radius",
]

METHOD_LABELS = {"sgd": "SGD", "heavy_ball": "SGDM (heavy ball)", "nesterov": "Nesterov"}
METHOD_COLORS = {"sgd": OPTIMIZER_COLORS["SGD"], "heavy_ball": OPTIMIZER_COLORS["SGDM"], "nesterov": PALETTE[2]}
#: The transition-matrix form of each stability method (paper eq. (3) for heavy ball).
_FORMS = {"sgd": "sgd", "heavy_ball": "normalized", "nesterov": "nesterov"}
#: The update rule of each stability method (:mod:`theory.forms`; paper eq. (3) for heavy ball).
STEPS = {"sgd": sgd_step, "heavy_ball": normalized_step, "nesterov": normalized_nesterov_step}


def measured_stability_edge(method: str, betas: Sequence[float], **options: Any) -> np.ndarray:
    r"""Measured edge in :math:`\eta h` of one stability method's update rule (:data:`STEPS`), per :math:`\beta`.

    :func:`theory.quadratic.measured_stability_edge` (bisection of the deterministic iteration; its docstring gives
    the accuracy and the ``options`` ``steps``, ``iterations``, ``bracket``) on the rule of ``method``; nothing of
    the threshold formulas is used.
    """
    if method not in STEPS:
        raise ValueError(f"method must be one of {STABILITY_METHODS}, got {method!r}")
    return theory_measured_stability_edge(STEPS[method], betas, **options)


def transition_spectral_radius(method: str, eta_h: Sequence[float], beta: float) -> np.ndarray:
    r"""Spectral radius of the transition matrix :math:`A` of one eigen-direction (:math:`h=1`, :math:`\eta=\eta h`).

    :math:`A` from :func:`theory.quadratic.transition_matrix` (``"sgd"``, ``"normalized"``, ``"nesterov"``),
    eigenvalues by :func:`numpy.linalg.eigvals` — independent of the closed-form thresholds.
    """
    form = _FORMS[method]
    matrices = np.stack([transition_matrix([[1.0]], float(x), beta, form).transition for x in eta_h])
    return np.max(np.abs(np.linalg.eigvals(matrices)), axis=1)


@dataclass(frozen=True)
class StabilityRegions:
    """Theory thresholds on a fine ``beta`` grid, measured edges on a coarse one, spectral radii at one beta."""

    methods: tuple[str, ...]
    betas: np.ndarray
    thresholds: np.ndarray  # (method, beta)
    measured_betas: np.ndarray
    measured: np.ndarray  # (method, measured beta)
    measured_thresholds: np.ndarray  # theory at the measured betas
    steps: int
    radius_beta: float
    radius_eta_h: np.ndarray
    radius: np.ndarray  # (method, eta_h)
    radius_measured: np.ndarray  # measured edge of each method at radius_beta
    radius_thresholds: np.ndarray  # theory edge of each method at radius_beta


def stability_regions(
    betas: Sequence[float] = tuple(np.linspace(0.0, 0.99, 100)),
    measured_betas: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    radius_beta: float = 0.9,
    radius_eta_h: Sequence[float] = tuple(np.geomspace(0.05, 100.0, 300)),
    steps: int = 2000,
) -> StabilityRegions:
    r"""Compute the thresholds, the measured edges and the spectral radii of the figure (THEORY.md 5.3).

    Stable for :math:`\eta h<2` (SGD), :math:`\eta h<\frac{2(1+\beta)}{1-\beta}` (heavy ball, paper eq. (3)) and
    :math:`\eta h<\frac{2(1+\beta)}{(1-\beta)(1+2\beta)}` (Nesterov).
    """
    methods = STABILITY_METHODS
    grid = np.asarray(betas, dtype=np.float64)
    coarse = np.asarray(measured_betas, dtype=np.float64)
    radius_beta = check_momentum(radius_beta)
    measured_at_radius = [float(measured_stability_edge(m, [radius_beta], steps=steps)[0]) for m in methods]
    return StabilityRegions(
        methods=methods,
        betas=grid,
        thresholds=np.array([stability_threshold(grid, m) for m in methods]),
        measured_betas=coarse,
        measured=np.array([measured_stability_edge(m, coarse, steps=steps) for m in methods]),
        measured_thresholds=np.array([stability_threshold(coarse, m) for m in methods]),
        steps=steps,
        radius_beta=radius_beta,
        radius_eta_h=np.asarray(radius_eta_h, dtype=np.float64),
        radius=np.array([transition_spectral_radius(m, radius_eta_h, radius_beta) for m in methods]),
        radius_measured=np.array(measured_at_radius),
        radius_thresholds=np.array([float(stability_threshold(radius_beta, m)) for m in methods]),
    )


def plot_stability_regions(regions: StabilityRegions, out_stem: str | Path) -> list[Path]:
    """Draw the two panels and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    fig, ((left, right),) = new_figure(2, width=FULL_WIDTH, height=2.8)
    # Nested regions, widest first: SGD in Nesterov in heavy ball.
    order = np.argsort([-np.max(t) for t in regions.thresholds])
    for i in order:
        method = regions.methods[i]
        color = METHOD_COLORS[method]
        left.fill_betweenx(regions.betas, 1e-3, regions.thresholds[i], color=color, alpha=0.13, lw=0)
        left.plot(regions.thresholds[i], regions.betas, color=color, label=METHOD_LABELS[method])
        left.plot(regions.measured[i], regions.measured_betas, ls="none", marker="o", mfc="none", ms=4.5, color=color)
    left.plot([], [], ls="none", marker="o", mfc="none", color="0.3", label=f"measured edge ({regions.steps} steps)")
    left.set_xscale("log")
    left.set_xlim(0.1, 1.2 * float(np.max(regions.thresholds)))
    left.set_ylim(0.0, 1.0)
    left.set_xlabel(r"$\eta h$ (effective learning rate $\times$ curvature)")
    left.set_ylabel(r"momentum $\beta$")
    left.legend(loc="lower right", title="stable for $\\eta h$ left of", title_fontsize=6.5)
    left.set_title(r"stable regions in the $(\eta h,\beta)$ plane (shaded)")

    for i, method in enumerate(regions.methods):
        color = METHOD_COLORS[method]
        right.plot(regions.radius_eta_h, regions.radius[i], color=color, label=METHOD_LABELS[method])
        right.axvline(regions.radius_thresholds[i], color=color, lw=0.7, ls=":")
        right.plot(regions.radius_measured[i], 1.0, ls="none", marker="o", mfc="none", ms=5, color=color)
    right.axhline(1.0, color="0.4", lw=0.8)
    right.set_xscale("log")
    right.set_ylim(0.0, 2.0)
    right.set_xlabel(r"$\eta h$")
    right.set_ylabel(r"spectral radius $\rho(A)$ of the transition matrix")
    right.set_title(
        rf"$\beta$ = {regions.radius_beta:g}: $\rho$ = 1 at "
        + ", ".join(f"{t:.4g}" for t in regions.radius_thresholds)
        + " (dotted); o: measured"
    )
    right.legend(loc="upper left")
    return save_figure(fig, out_stem)


def _settings(context: FigureContext) -> dict[str, Any]:
    if context.scale == "tiny":
        return {"beta_points": 40, "measured_betas": [0.0, 0.5, 0.9], "radius_points": 60, "steps": 400}
    if context.scale == "quick":
        return {
            "beta_points": 200,
            "measured_betas": [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
            "radius_points": 400,
            "steps": 2000,
        }
    return {
        "beta_points": 400,
        "measured_betas": [round(0.05 * k, 2) for k in range(20)] + [0.97, 0.98, 0.99],
        "radius_points": 800,
        "steps": 20_000,
    }


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    regions = stability_regions(
        betas=np.linspace(0.0, 0.99, settings["beta_points"]),
        measured_betas=settings["measured_betas"],
        radius_eta_h=np.geomspace(0.05, 100.0, settings["radius_points"]),
        steps=settings["steps"],
    )
    gaps = np.abs(regions.measured - regions.measured_thresholds)
    summary: dict[str, Any] = {
        f"{method} max |measured - theory| edge": float(np.max(gaps[i])) for i, method in enumerate(regions.methods)
    }
    for i, method in enumerate(regions.methods):
        summary[f"{method} edge at beta={regions.radius_beta:g}"] = (
            f"theory {regions.radius_thresholds[i]:.6g}, measured {regions.radius_measured[i]:.6g}"
        )
    return Computed(data={"regions": asdict(regions), "summary": summary})


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    regions = restore_dataclass(StabilityRegions, data["regions"], tuples=("methods",))
    return plot_stability_regions(regions, stem)


STABILITY_REGIONS_FIGURE = register(
    FigureSpec(
        figure_id="fig_stability_regions",
        title="Linear stability regions of SGD, heavy-ball SGDM and Nesterov in the (eta*h, beta) plane",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
    )
)
