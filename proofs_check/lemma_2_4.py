r"""Claim 5: Lemma 2.4's curvature/noise split of the one-step loss change, and its behaviour under SVAG.

Three measurements:

* ``lemma_2_4.symbolic`` (field ``loss_expansion``): for a generic smooth loss in 1 and 2 dimensions, SymPy's
  Taylor coefficients of :math:`\mathbb E\,\mathcal L(x-\eta g)` equal the lemma's descent term (order 1) and
  curvature + noise terms (order 2) written symbolically; and the expansion under test, evaluated at
  :data:`N_RANDOM_POINTS` random points per dimension (gradient, Hessian, a non-identity noise covariance
  :math:`\sigma^2\Sigma`), equals those exact coefficients to :data:`EVALUATION_TOLERANCE` relative.
* ``lemma_2_4.residual_order`` (field ``loss_expansion``): on :math:`\mathcal L(x)=\log\cosh x+x^2/10` with
  Gaussian noise of variance :data:`NOISE_VARIANCE` (not 1, so that :math:`\Sigma`, :math:`\Sigma^{1/2}` and
  :math:`\Sigma^2` differ), the residual of the expansion under test, computed with Gauss-Hermite quadrature (no
  sampling), decays like :math:`\eta^3`: fitted log-log slope >= 3 minus a tolerance of 0.1 for the curvature of
  the log-log line over the :math:`\eta` range (a wrong second-order term leaves an :math:`\eta^2` residual).
* ``lemma_2_4.svag`` (field ``svag_coefficients``): the second-order coefficient :math:`c_2(\ell)` of the
  frozen-:math:`x` loss change
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

from proofs_check.methods import REFERENCE, MethodSet
from proofs_check.registry import register
from proofs_check.result import ClaimResult
from proofs_check.verdicts import guarded
from theory.loss_change import derive_one_step_expansion

__all__ = ["check_lemma_2_4"]

REFERENCE_TEXT = "Lemma 2.4; Definition 5.1 (SVAG); THEORY.md 2.3, oracle 20"
STATEMENT = "one-step loss change = descent + curvature-induced + noise-induced + O(eta^3); SVAG shrinks curvature"
SLOPE_TOLERANCE = 0.1
#: Finite-difference (Richardson) and quadrature accuracy of the second-order coefficients.
COEFFICIENT_TOLERANCE = 1e-6
#: Relative agreement of the expansion under test with the exact Taylor coefficients (float64 rounding only).
EVALUATION_TOLERANCE = 1e-10
N_RANDOM_POINTS = 5
#: Total gradient-noise variance sigma^2 Sigma of the quadrature check.
NOISE_VARIANCE = 0.3
FIELDS = ("loss_expansion", "svag_coefficients")

_x = sp.Symbol("x", real=True)
_LOSS = sp.log(sp.cosh(_x)) + _x**2 / 10
_loss, _d1, _d2 = (sp.lambdify(_x, sp.diff(_LOSS, _x, n), "numpy") for n in range(3))
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
_WEIGHTS = _WEIGHTS / np.sqrt(2 * np.pi)  # expectation under N(0, 1)


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


def _symbolic_substitutions(dim: int, rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    xs = sp.symbols(f"x1:{dim + 1}", real=True)
    loss = sp.Function("L")(*xs)
    grad = rng.normal(size=dim)
    root = rng.normal(size=(dim, dim))
    hess = (root + root.T) / 2
    factor = rng.normal(size=(dim, dim))
    cov = factor @ factor.T + 0.2 * np.eye(dim)
    sigma = 0.7
    values: dict = {sp.Symbol("sigma", positive=True): sigma}
    for i in range(dim):
        values[sp.diff(loss, xs[i])] = grad[i]
        for j in range(dim):
            values[sp.diff(loss, xs[i], xs[j])] = hess[i, j]
            values[sp.Symbol(f"Sigma{min(i, j) + 1}{max(i, j) + 1}", real=True)] = cov[i, j]
    return values, grad, hess, sigma**2 * cov


def _symbolic(methods: MethodSet) -> ClaimResult:
    eta_symbol = sp.Symbol("eta", positive=True)
    residuals = []
    deviations = []
    rng = np.random.default_rng(24)
    for dim in (1, 2):
        terms = derive_one_step_expansion(dim)
        residuals.append(sp.simplify(terms["order1"] - terms["descent"]))
        residuals.append(sp.simplify(terms["order2"] - terms["curvature"] - terms["noise"]))
        for _ in range(N_RANDOM_POINTS):
            values, grad, hess, noise_cov = _symbolic_substitutions(dim, rng)
            eta = float(rng.uniform(0.01, 0.5))
            values[eta_symbol] = eta
            # derivatives first: substituting L's arguments would break the Derivative objects
            order1 = float(terms["order1"].subs(values))
            order2 = float(terms["order2"].subs(values))
            tested = methods.loss_expansion(grad, hess, noise_cov, eta)
            deviations.append(abs(tested.descent - order1) / max(abs(order1), 1e-300))
            deviations.append(abs(tested.curvature + tested.noise - order2) / max(abs(order2), 1e-300))
    symbolic_ok = all(r == 0 for r in residuals)
    worst = float(max(deviations))
    return ClaimResult(
        claim_id="lemma_2_4.symbolic",
        reference=REFERENCE_TEXT,
        statement="Taylor coefficients of E L(x - eta g) are -eta|grad|^2 and eta^2/2 (g'Hg + sigma^2 tr(H Sigma))",
        predicted=0.0,
        measured=worst,
        ci_low=worst,
        ci_high=worst,
        passed=symbolic_ok and worst <= EVALUATION_TOLERANCE,
        criterion=(
            "every symbolic residual (dim 1 and 2, orders 1 and 2) simplifies to 0 and loss_expansion matches the "
            f"exact coefficients at {N_RANDOM_POINTS} random points per dim within {EVALUATION_TOLERANCE:g} relative"
        ),
        details={"residuals": [str(r) for r in residuals], "symbolic_residuals_vanish": symbolic_ok},
        fields=("loss_expansion",),
    )


def _residual_order(methods: MethodSet, quick: bool, x: float) -> ClaimResult:
    etas = np.geomspace(0.02, 0.2, 5 if quick else 9)
    grad, hess = _d1(x), _d2(x)
    residuals = []
    for eta in etas:
        exact = _expected_loss_after_step(x, eta, np.sqrt(NOISE_VARIANCE)) - _loss(x)
        residuals.append(abs(exact - methods.loss_expansion([grad], [[hess]], [[NOISE_VARIANCE]], eta).total))
    fit = stats.linregress(np.log(etas), np.log(residuals))
    half_width = stats.t.ppf(0.975, df=len(etas) - 2) * fit.stderr
    return ClaimResult(
        claim_id="lemma_2_4.residual_order",
        reference=REFERENCE_TEXT,
        statement="residual of the second-order expansion is O(eta^3) (log cosh loss, Gaussian noise)",
        predicted=3.0,
        measured=float(fit.slope),
        ci_low=float(fit.slope - half_width),
        ci_high=float(fit.slope + half_width),
        passed=bool(fit.slope >= 3.0 - SLOPE_TOLERANCE),
        criterion=f"fitted log-log slope >= 3 - {SLOPE_TOLERANCE} (quadrature: no sampling error)",
        details={"etas": etas.tolist(), "residuals": residuals, "x": x, "noise_variance": NOISE_VARIANCE},
        fields=("loss_expansion",),
    )


def _svag(methods: MethodSet, quick: bool, x: float, sigma: float) -> ClaimResult:
    ells = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 16, 32]
    coefficients = methods.svag_coefficients
    c2 = [
        _second_order_coefficient(lambda e, ell=ell: _svag_loss_change(x, e, sigma, ell, coefficients)) for ell in ells
    ]
    grad, hess = _d1(x), _d2(x)
    design = np.stack([np.ones(len(ells)), 1.0 / np.asarray(ells)], axis=1)
    (noise_coef, curvature_coef), *_ = np.linalg.lstsq(design, np.asarray(c2), rcond=None)
    predicted_curvature, predicted_noise = 0.5 * hess * grad**2, 0.5 * sigma**2 * hess
    affine_residual = float(np.max(np.abs(design @ [noise_coef, curvature_coef] - c2)))
    rel_curv = abs(curvature_coef / predicted_curvature - 1)
    rel_noise = abs(noise_coef / predicted_noise - 1)
    return ClaimResult(
        claim_id="lemma_2_4.svag",
        reference=REFERENCE_TEXT,
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
        fields=("svag_coefficients",),
    )


def check_lemma_2_4(
    quick: bool = True, methods: MethodSet = REFERENCE, seed: int | None = None, x: float = 0.7, sigma: float = 1.0
) -> list[ClaimResult]:
    """Lemma 2.4 for ``methods.loss_expansion`` and its SVAG form for ``methods.svag_coefficients``.

    Exact computations (SymPy, quadrature, Richardson differences): ``seed`` is unused.
    """
    return [
        *guarded("lemma_2_4.symbolic", REFERENCE_TEXT, STATEMENT, ("loss_expansion",), lambda: _symbolic(methods)),
        *guarded(
            "lemma_2_4.residual_order",
            REFERENCE_TEXT,
            STATEMENT,
            ("loss_expansion",),
            lambda: _residual_order(methods, quick, x),
        ),
        *guarded(
            "lemma_2_4.svag", REFERENCE_TEXT, STATEMENT, ("svag_coefficients",), lambda: _svag(methods, quick, x, sigma)
        ),
    ]


@register("lemma_2_4", 5, REFERENCE_TEXT, STATEMENT, FIELDS)
def _claim(quick: bool, methods: MethodSet, seed: int | None) -> list[ClaimResult]:
    return check_lemma_2_4(quick, methods, seed)
