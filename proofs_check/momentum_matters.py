r"""Claim 8: where momentum does matter — curvature-induced instability (THEORY.md 2.4, 5.3; Lemma 2.4).

* ``momentum_matters.stability.METHOD``: iterating the deterministic update on :math:`\mathcal L=\tfrac h2x^2`
  (the update rules of :mod:`theory.forms`, :math:`g=hx`), the measured edge of convergence in
  :math:`\eta h` equals the derived threshold (:func:`theory.quadratic.stability_threshold`): 2 for SGD,
  :math:`2(1+\beta)/(1-\beta)` for heavy ball (38 at :math:`\beta=0.9`), :math:`2(1+\beta)/((1-\beta)(1+2\beta))`
  for Nesterov.  Measured as the first diverging point of a grid of relative spacing
  :data:`GRID_SPACING` around the prediction; passed within two grid steps.
* ``momentum_matters.regime.eta_h=X``: on the noisy quadratic (:math:`h=s=1`, additive noise) at equal
  :math:`\eta`, the ratio of stationary losses SGD/SGDM is exactly
  :math:`1+\frac{2\beta}{1+\beta}R` with :math:`R=\frac{\eta h}{2-\eta h}` — Lemma 2.4's curvature-induced
  over noise-induced term, :math:`h^2\mathbb Ex^2/s^2`, evaluated at SGD's stationary law (derived with
  SymPy below).  So momentum is worth nothing when noise dominates (:math:`R\ll1`: ratio
  :math:`1+O(\eta h)`) and a lot when curvature dominates (:math:`\eta h\to2`).  Measured by Monte Carlo
  (stationary :math:`\mathbb Ex^2` of SGD and SGDM, time-averaged after burn-in); passed when the measured
  ratio is within :data:`Z` standard errors of the prediction.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp

from proofs_check.registry import register
from proofs_check.result import ClaimResult
from proofs_check.theorem_3_5 import MomentumMethod, normalized_sgdm
from theory.forms import Step, normalized_nesterov_step, normalized_step
from theory.problems import noisy_quadratic
from theory.quadratic import stability_threshold
from theory.simulate import SGD, simulate

__all__ = ["GRID_SPACING", "Z", "check_momentum_matters", "regime_loss_ratio"]

REFERENCE = "THEORY.md 2.4, 5.3 (stability), Lemma 2.4 (regime); Cohen et al. 2021"
STATEMENT = "momentum matters when curvature-induced instability dominates: eta*h near or beyond 2"
GRID_SPACING = 1e-4
Z = 4.0
_BETA = 0.9


def regime_loss_ratio(eta_h: float, beta: float) -> tuple[float, float]:
    r"""Exact SGD/SGDM stationary-loss ratio and Lemma 2.4's ratio :math:`R` on :math:`\tfrac h2x^2`.

    .. math:: \frac{\operatorname{Var}_{\rm SGD}}{\operatorname{Var}_{\rm SGDM}}
              =\frac{2(1+\beta)-\eta h(1-\beta)}{(1+\beta)(2-\eta h)}=1+\frac{2\beta}{1+\beta}R,
              \qquad R=\frac{\eta h}{2-\eta h}.
    """
    r = eta_h / (2 - eta_h)
    return 1 + 2 * beta / (1 + beta) * r, r


def _regime_identity_holds() -> bool:
    eta_h, beta = sp.symbols("eta_h beta", positive=True)
    var_sgd = 1 / (2 - eta_h)
    var_sgdm = (1 + beta) / (2 * (1 + beta) - eta_h * (1 - beta))
    r = eta_h / (2 - eta_h)
    return sp.simplify(var_sgd / var_sgdm - (1 + 2 * beta / (1 + beta) * r)) == 0


def _sgd_step(x, m, g, eta, beta):
    return x - eta * g, m


def _measured_threshold(step: Step, beta: float, predicted: float, steps: int = 6000) -> float:
    """First point of a grid around ``predicted`` at which the deterministic iteration grows."""
    eta_h = predicted * (1 + GRID_SPACING * np.arange(-200, 201))
    x, m = np.ones_like(eta_h), np.zeros_like(eta_h)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            x, m = step(x, m, x, eta_h, beta)  # h = 1: g = h x = x and eta = eta_h
    diverged = ~(np.abs(x) < 1.0)
    if not diverged.any():
        return float("inf")
    return float(eta_h[np.argmax(diverged)])


def _stationary_second_moment(method, n_paths: int, seed: int, burn_in: int = 300, window: int = 300):
    path = simulate(method, [0.0], burn_in + window, n_paths, seed, observe_every=1).values[burn_in + 1 :, :, 0]
    per_path = (path**2).mean(axis=0)
    return float(per_path.mean()), float(per_path.std(ddof=1) / np.sqrt(n_paths))


def check_momentum_matters(
    quick: bool = True,
    method: MomentumMethod = normalized_sgdm,
    heavy_ball_step: Step = normalized_step,
    seed: int = 8,
) -> list[ClaimResult]:
    """Stability edges of the update rules, and the curvature/noise regime of ``method`` against SGD."""
    results = []
    for name, step, beta in (
        ("sgd", _sgd_step, 0.0),
        ("heavy_ball", heavy_ball_step, _BETA),
        ("nesterov", normalized_nesterov_step, _BETA),
    ):
        predicted = float(stability_threshold(beta, name))
        measured = _measured_threshold(step, beta, predicted)
        tolerance = 2 * GRID_SPACING * predicted
        results.append(
            ClaimResult(
                claim_id=f"momentum_matters.stability.{name}",
                reference=REFERENCE,
                statement=f"deterministic {name} on h x^2/2 converges iff eta*h < threshold (beta = {beta:g})",
                predicted=predicted,
                measured=measured,
                ci_low=measured - GRID_SPACING * predicted,
                ci_high=measured,
                passed=bool(abs(measured - predicted) <= tolerance),
                criterion=f"first diverging eta*h within 2 grid steps ({2 * GRID_SPACING:g} relative) of the threshold",
                details={"beta": beta, "grid_spacing": GRID_SPACING},
            )
        )

    identity = _regime_identity_holds()
    n_paths = 20_000 if quick else 200_000
    for i, eta_h in enumerate((0.05, 0.5, 1.5, 1.9)):
        problem = noisy_quadratic(1.0, 1.0)
        sgd, sgd_se = _stationary_second_moment(SGD(problem, eta_h, sigma=1.0), n_paths, seed + i)
        sgdm_method = dataclasses.replace(method(problem, eta_h, _BETA), sigma=1.0)  # sigma = 1, not eta^-1/2
        sgdm, sgdm_se = _stationary_second_moment(sgdm_method, n_paths, seed + 10 + i)
        ratio = sgd / sgdm
        ratio_se = ratio * np.hypot(sgd_se / sgd, sgdm_se / sgdm)
        predicted, lemma_ratio = regime_loss_ratio(eta_h, _BETA)
        results.append(
            ClaimResult(
                claim_id=f"momentum_matters.regime.eta_h={eta_h:g}",
                reference=REFERENCE,
                statement=(
                    f"stationary loss SGD/SGDM = 1 + 2beta/(1+beta) R, Lemma 2.4 ratio R = {lemma_ratio:.3g} "
                    f"({'curvature' if lemma_ratio > 1 else 'noise'}-dominated)"
                ),
                predicted=predicted,
                measured=ratio,
                ci_low=ratio - Z * ratio_se,
                ci_high=ratio + Z * ratio_se,
                passed=bool(identity and abs(ratio - predicted) <= Z * ratio_se),
                criterion=f"|measured ratio - prediction| <= {Z:g} SE (and the SymPy identity holds)",
                details={
                    "lemma_2_4_ratio_predicted": lemma_ratio,
                    "lemma_2_4_ratio_measured": sgd,  # h^2 E x^2 / s^2 with h = s = 1
                    "sgd_second_moment": sgd,
                    "sgdm_second_moment": sgdm,
                    "n_paths": n_paths,
                    "symbolic_identity_holds": identity,
                },
            )
        )
    return results


@register("momentum_matters", 8, REFERENCE, STATEMENT)
def _claim(quick: bool) -> list[ClaimResult]:
    return check_momentum_matters(quick)
