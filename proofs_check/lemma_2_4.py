r"""Claim 5: Lemma 2.4's curvature/noise split of the one-step loss change, and its behaviour under SVAG.

Three measurements:

* ``lemma_2_4.symbolic``: for a generic smooth loss in 1 and 2 dimensions, SymPy's Taylor coefficients of
  :math:`\mathbb E\,\mathcal L(x-\eta g)` equal the descent term (order 1) and curvature + noise terms
  (order 2) of :func:`theory.loss_change.lemma_2_4_terms`.
* ``lemma_2_4.residual_order``: on :math:`\mathcal L(x)=\log\cosh x+x^2/10` with Gaussian noise, the
  residual of the second-order expansion, computed with Gauss-Hermite quadrature (no sampling), decays
  like :math:`\eta^3`: fitted log-log slope >= 3 minus a tolerance of 0.1 for the curvature of the
  log-log line over the :math:`\eta` range.
* ``lemma_2_4.svag``: the second-order coefficient :math:`c_2(\ell)` of the frozen-:math:`x` loss change
  over :math:`\ell` SVAG steps (Definition 5.1) is exactly affine in :math:`1/\ell`; its slope is the
  curvature coefficient :math:`\tfrac12\mathcal L''\mathcal L'^2` and its intercept the noise coefficient
  :math:`\tfrac12\sigma^2\mathcal L''`: SVAG divides the curvature-induced term by :math:`\ell` and keeps
  the noise-induced term (THEORY.md 2.3).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp
from scipy import stats

from proofs_check.registry import register
from proofs_check.result import ClaimResult
from theory.loss_change import LossChangeTerms, derive_one_step_expansion, lemma_2_4_terms
from theory.svag import svag_coefficients

__all__ = ["check_lemma_2_4"]

REFERENCE = "Lemma 2.4; Definition 5.1 (SVAG); THEORY.md 2.3, oracle 20"
STATEMENT = "one-step loss change = descent + curvature-induced + noise-induced + O(eta^3); SVAG shrinks curvature"
SLOPE_TOLERANCE = 0.1
#: Finite-difference (Richardson) and quadrature accuracy of the second-order coefficients.
COEFFICIENT_TOLERANCE = 1e-6

_x = sp.Symbol("x", real=True)
_LOSS = sp.log(sp.cosh(_x)) + _x**2 / 10
_loss, _d1, _d2 = (sp.lambdify(_x, sp.diff(_LOSS, _x, n), "numpy") for n in range(3))
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
_WEIGHTS = _WEIGHTS / np.sqrt(2 * np.pi)  # expectation under N(0, 1)

Expansion = Callable[..., LossChangeTerms]


def _expected_loss_after_step(x: float, eta: float, noise_sd: float) -> float:
    """E L(x - eta (L'(x) + noise_sd v)), v ~ N(0, 1), by 60-point Gauss-Hermite quadrature."""
    return float(_WEIGHTS @ _loss(x - eta * (_d1(x) + noise_sd * _NODES)))


def _svag_loss_change(x: float, eta: float, sigma: float, ell: int, coefficients) -> float:
    """Loss change over ell frozen-x SVAG steps: ell * (E L(x - eta/ell (r1 g1 + r2 g2)) - L(x))."""
    r1, r2 = coefficients(ell)
    v1, v2 = np.meshgrid(_NODES, _NODES, indexing="ij")
    weights = np.outer(_WEIGHTS, _WEIGHTS)
    gradient = (r1 + r2) * _d1(x) + sigma * (r1 * v1 + r2 * v2)
    return float(ell * (np.sum(weights * _loss(x - eta / ell * gradient)) - _loss(x)))


def _second_order_coefficient(f: Callable[[float], float], h: float = 1e-2) -> float:
    """f''(0)/2 by Richardson-extrapolated central differences (f(0) = 0 here); error O(h^4)."""

    def central(step: float) -> float:
        return (f(step) + f(-step) - 2 * f(0.0)) / step**2

    return (4 * central(h / 2) - central(h)) / 3 / 2


def check_lemma_2_4(
    quick: bool = True,
    expansion: Expansion = lemma_2_4_terms,
    coefficients: Callable[[float], tuple[float, float]] = svag_coefficients,
    x: float = 0.7,
    sigma: float = 1.0,
) -> list[ClaimResult]:
    """Check Lemma 2.4 with the expansion ``expansion(grad, hess, noise_cov, eta)`` and SVAG ``coefficients``."""
    results = []
    symbolic_residuals = []
    for dim in (1, 2):
        terms = derive_one_step_expansion(dim)
        symbolic_residuals.append(sp.simplify(terms["order1"] - terms["descent"]))
        symbolic_residuals.append(sp.simplify(terms["order2"] - terms["curvature"] - terms["noise"]))
    symbolic_ok = all(r == 0 for r in symbolic_residuals)
    results.append(
        ClaimResult(
            claim_id="lemma_2_4.symbolic",
            reference=REFERENCE,
            statement="Taylor coefficients of E L(x - eta g) are -eta|grad|^2 and eta^2/2 (g'Hg + sigma^2 tr(H Sigma))",
            predicted=0.0,
            measured=float(sum(1 for r in symbolic_residuals if r != 0)),
            ci_low=0.0,
            ci_high=0.0,
            passed=symbolic_ok,
            criterion="every symbolic residual (dim 1 and 2, orders 1 and 2) simplifies to 0",
            details={"residuals": [str(r) for r in symbolic_residuals]},
        )
    )

    etas = np.geomspace(0.02, 0.2, 5 if quick else 9)
    grad, hess = _d1(x), _d2(x)
    residuals = []
    for eta in etas:
        exact = _expected_loss_after_step(x, eta, sigma) - _loss(x)
        residuals.append(abs(exact - expansion([grad], [[hess]], [[sigma**2]], eta).total))
    fit = stats.linregress(np.log(etas), np.log(residuals))
    half_width = stats.t.ppf(0.975, df=len(etas) - 2) * fit.stderr
    results.append(
        ClaimResult(
            claim_id="lemma_2_4.residual_order",
            reference=REFERENCE,
            statement="residual of the second-order expansion is O(eta^3) (log cosh loss, Gaussian noise)",
            predicted=3.0,
            measured=float(fit.slope),
            ci_low=float(fit.slope - half_width),
            ci_high=float(fit.slope + half_width),
            passed=bool(fit.slope >= 3.0 - SLOPE_TOLERANCE),
            criterion=f"fitted log-log slope >= 3 - {SLOPE_TOLERANCE}",
            details={"etas": etas.tolist(), "residuals": residuals, "x": x, "sigma": sigma},
        )
    )

    ells = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 16, 32]
    c2 = [
        _second_order_coefficient(lambda e, ell=ell: _svag_loss_change(x, e, sigma, ell, coefficients)) for ell in ells
    ]
    design = np.stack([np.ones(len(ells)), 1.0 / np.asarray(ells)], axis=1)
    (noise_coef, curvature_coef), *_ = np.linalg.lstsq(design, np.asarray(c2), rcond=None)
    predicted_curvature, predicted_noise = 0.5 * hess * grad**2, 0.5 * sigma**2 * hess
    affine_residual = float(np.max(np.abs(design @ [noise_coef, curvature_coef] - c2)))
    rel_curv = abs(curvature_coef / predicted_curvature - 1)
    rel_noise = abs(noise_coef / predicted_noise - 1)
    results.append(
        ClaimResult(
            claim_id="lemma_2_4.svag",
            reference=REFERENCE,
            statement="over ell SVAG steps the curvature term scales as 1/ell and the noise term is unchanged",
            predicted=1.0,
            measured=float(curvature_coef / predicted_curvature),
            ci_low=float(curvature_coef / predicted_curvature),
            ci_high=float(curvature_coef / predicted_curvature),
            passed=bool(max(rel_curv, rel_noise) <= COEFFICIENT_TOLERANCE and affine_residual <= COEFFICIENT_TOLERANCE),
            criterion=(
                f"c2(ell) affine in 1/ell; slope/curvature coefficient and intercept/noise coefficient "
                f"within {COEFFICIENT_TOLERANCE:g} of 1"
            ),
            details={
                "ells": ells,
                "c2": c2,
                "noise_ratio": float(noise_coef / predicted_noise),
                "affine_residual": affine_residual,
            },
        )
    )
    return results


@register("lemma_2_4", 5, REFERENCE, STATEMENT)
def _claim(quick: bool) -> list[ClaimResult]:
    return check_lemma_2_4(quick)
