r"""Theorem 3.5: the weak error between SGDM and SGD decays like :math:`\eta^{(1-\alpha)/2}` (THEORY.md 3.3; oracle 24).

Figure ID ``fig_weak_error_slopes``.  The computation is claim 3's (:func:`proofs_check.theorem_3_5.weak_error_sweep`
on :func:`theory.problems.log_cosh_well`): SGDM (paper eq. (3)) with :math:`1-\beta=\eta^\alpha`
(:math:`\beta=0.9` at :math:`\alpha=0`, :func:`proofs_check.measure.definition_3_1_beta`) and SGD at the same
:math:`\eta`, both with :math:`\sigma=\eta^{-1/2}`, from :math:`x_0=1` for :math:`1/\eta` steps (:math:`T=1`), on
common random numbers; the weak error is

.. math:: e(\eta)=\max_{k\le1/\eta}\big|\mathbb Eh(x_k)-\mathbb Eh(z_k)\big|,\qquad h(x)\in\{x,\ x^2\}

(the larger of the two, :func:`proofs_check.measure.worst_weak_errors`), with its simultaneous 95% interval.  The
fitted order :math:`p` of :math:`e\approx C\eta^p` (:func:`theory.weak_error.fit_weak_order`, weighted least
squares on the log-log points) is compared with Theorem 3.5's guaranteed order :math:`(1-\alpha)/2` — a lower bound
on :math:`p`, since the theorem bounds the error from above.  At :math:`\alpha=1` the guaranteed order is 0: the
underdamped SDE of THEORY.md 3.5 takes over and the error does not vanish.

Left panel: :math:`e(\eta)` per :math:`\alpha` (points with intervals), the fitted lines (solid) and reference lines
of slope :math:`(1-\alpha)/2` through the largest-:math:`\eta` point (dotted).  Right panel: fitted order with its
95% interval against :math:`\alpha`, and the line :math:`(1-\alpha)/2`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper_figures.figure_parts import interval_errorbar, restore_dataclass
from paper_figures.registry import Computed, FigureContext, FigureSpec, register
from paper_figures.style import FULL_WIDTH, new_figure, save_figure
from proofs_check.methods import REFERENCE
from proofs_check.theorem_3_5 import weak_error_sweep
from theory.problems import log_cosh_well
from theory.weak_error import fit_weak_order

__all__ = ["WEAK_ERROR_SLOPES_FIGURE", "WeakErrorSlopes", "plot_weak_error_slopes", "weak_error_slopes"]


@dataclass(frozen=True)
class WeakErrorSlopes:
    """Weak errors ``[alpha, eta]`` with intervals and standard errors, and the fitted order per ``alpha``."""

    alphas: tuple[float, ...]
    etas: np.ndarray
    errors: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    standard_errors: np.ndarray
    order: np.ndarray
    order_low: np.ndarray
    order_high: np.ndarray
    log_constant: np.ndarray
    predicted: np.ndarray
    n_paths: int


def weak_error_slopes(
    alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    etas: Sequence[float] = tuple(0.1 / 2**j for j in range(5)),
    n_paths: int = 20_000,
    seed: int = 35,
) -> WeakErrorSlopes:
    r"""Weak errors and fitted orders for each :math:`\alpha` (Theorem 3.5 via claim 3's sweep; module docstring).

    With :math:`1-\beta=\eta^\alpha` and :math:`\sigma=\eta^{-1/2}`, Theorem 3.5 predicts
    :math:`\max_{k\le1/\eta}|\mathbb E h(x_k)-\mathbb E h(z_k)|=O(\eta^{(1-\alpha)/2})` for :math:`\alpha<1`.
    """
    problem = log_cosh_well()
    etas = tuple(float(e) for e in etas)
    rows, fits = [], []
    for alpha in alphas:
        errors = weak_error_sweep(problem, REFERENCE, etas, float(alpha), n_paths, seed)
        rows.append(errors)
        fits.append(fit_weak_order(etas, errors))

    def table(field: str) -> np.ndarray:
        return np.array([[getattr(e, field) for e in row] for row in rows])

    return WeakErrorSlopes(
        alphas=tuple(float(a) for a in alphas),
        etas=np.array(etas),
        errors=table("estimate"),
        ci_low=table("ci_low"),
        ci_high=table("ci_high"),
        standard_errors=table("standard_error"),
        order=np.array([f.order for f in fits]),
        order_low=np.array([f.ci_low for f in fits]),
        order_high=np.array([f.ci_high for f in fits]),
        log_constant=np.array([f.log_constant for f in fits]),
        predicted=np.array([(1.0 - a) / 2.0 for a in alphas]),
        n_paths=n_paths,
    )


def _alpha_colors(count: int) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps["viridis"](np.linspace(0.0, 0.85, count))


def plot_weak_error_slopes(slopes: WeakErrorSlopes, out_stem: str | Path) -> list[Path]:
    """Draw the two panels and write ``out_stem.png`` and ``out_stem.pdf``; returns the paths written."""
    fig, ((left, right),) = new_figure(2, width=FULL_WIDTH, height=3.2, gridspec_kw={"width_ratios": [1.6, 1.0]})
    colors = _alpha_colors(len(slopes.alphas))
    fine = np.geomspace(slopes.etas.min(), slopes.etas.max(), 50)
    for i, alpha in enumerate(slopes.alphas):
        color = colors[i]
        interval_errorbar(
            left, slopes.etas, slopes.errors[i], slopes.ci_low[i], slopes.ci_high[i], marker="o", ms=3, color=color
        )
        left.plot(
            fine,
            np.exp(slopes.log_constant[i]) * fine ** slopes.order[i],
            color=color,
            lw=1.0,
            label=rf"$\alpha$={alpha:g}: fit {slopes.order[i]:.2f} [{slopes.order_low[i]:.2f}, "
            rf"{slopes.order_high[i]:.2f}], bound {slopes.predicted[i]:g}",
        )
        largest = int(np.argmax(slopes.etas))  # the reference slope starts at the largest-eta point
        anchor = slopes.errors[i, largest] * (fine / slopes.etas[largest]) ** slopes.predicted[i]
        left.plot(fine, anchor, color=color, lw=0.9, ls=":")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel(r"effective learning rate $\eta$ (horizon $1/\eta$ steps, $\sigma=\eta^{-1/2}$)")
    left.set_ylabel(r"weak error $\max_k|\mathbb{E}h(x_k)-\mathbb{E}h(z_k)|$")
    left.set_title(r"SGDM ($1-\beta=\eta^\alpha$) vs SGD: solid fit, dotted slope $(1-\alpha)/2$")
    fig.legend(
        *left.get_legend_handles_labels(),
        loc="outside lower center",
        ncol=3,
        title=r"$e\approx C\eta^p$: fitted order $p$ [95% CI] and Theorem 3.5's bound $(1-\alpha)/2$",
        title_fontsize=6.5,
    )

    interval_errorbar(
        right,
        slopes.alphas,
        slopes.order,
        slopes.order_low,
        slopes.order_high,
        marker="o",
        ms=3.5,
        capsize=2,
        color="0.15",
        label="fitted order, 95% CI",
    )
    for i, alpha in enumerate(slopes.alphas):
        right.plot(alpha, slopes.order[i], marker="o", ms=3.5, color=colors[i], ls="none")
    grid = np.linspace(0.0, 1.0, 11)
    right.plot(grid, (1 - grid) / 2, color="0.4", ls="--", label=r"Theorem 3.5: $(1-\alpha)/2$")
    right.set_xlabel(r"momentum scaling index $\alpha$ ($1-\beta=\eta^\alpha$)")
    right.set_ylabel(r"weak order $p$ in $e\approx C\eta^p$")
    right.set_title("fitted order against the bound")
    right.legend(loc="upper right")
    return save_figure(fig, out_stem)


def _settings(context: FigureContext) -> dict[str, Any]:
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    if context.scale == "tiny":
        return {"alphas": [0.0, 0.5, 1.0], "n_etas": 3, "n_paths": 2000, "seed": 35}
    if context.scale == "quick":
        return {"alphas": alphas, "n_etas": 6, "n_paths": 20_000, "seed": 35}
    return {"alphas": alphas, "n_etas": 8, "n_paths": 200_000, "seed": 35}


def _compute(settings: Mapping[str, Any], context: FigureContext) -> Computed:
    slopes = weak_error_slopes(
        alphas=settings["alphas"],
        etas=[0.1 / 2**j for j in range(settings["n_etas"])],
        n_paths=settings["n_paths"],
        seed=settings["seed"],
    )
    summary = {
        f"alpha={alpha:g}": (
            f"fitted order {slopes.order[i]:.3f} [{slopes.order_low[i]:.3f}, {slopes.order_high[i]:.3f}], "
            f"Theorem 3.5 bound {slopes.predicted[i]:g}; error at eta={slopes.etas[-1]:g}: "
            f"{slopes.errors[i, -1]:.4f} [{slopes.ci_low[i, -1]:.4f}, {slopes.ci_high[i, -1]:.4f}]"
        )
        for i, alpha in enumerate(slopes.alphas)
    }
    seeds = tuple(range(settings["seed"], settings["seed"] + settings["n_etas"]))  # seed + i for the i-th eta
    return Computed(data={"slopes": asdict(slopes), "summary": summary}, seeds=seeds)


def _plot(data: Mapping[str, Any], stem: Path) -> list[Path]:
    slopes = restore_dataclass(WeakErrorSlopes, data["slopes"], tuples=("alphas",))
    return plot_weak_error_slopes(slopes, stem)


WEAK_ERROR_SLOPES_FIGURE = register(
    FigureSpec(
        figure_id="fig_weak_error_slopes",
        title="Theorem 3.5: weak error SGDM vs SGD against eta for each momentum scaling index alpha",
        kind="theory",
        settings=_settings,
        compute=_compute,
        plot=_plot,
    )
)
