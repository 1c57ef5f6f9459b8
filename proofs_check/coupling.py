r"""Claim 2: the coupling identity and the size of the coupling gap (THEORY.md section 8).

* ``coupling.identity`` (field ``update_step``): :math:`y_k=x_k-\frac{\eta\beta}{1-\beta}m_k` obeys
  :math:`y_{k+1}=y_k-\eta g_k` exactly for the update rule under test (SymPy, any loss and noise realisation), also
  with schedules (:math:`\bar\eta_k`).
* ``coupling.gap.alpha=A`` (field ``sgdm``): the gap :math:`x_k-y_k=\frac{\eta\beta}{1-\beta}m_k` of the simulated
  SGDM on the noisy quadratic :math:`\tfrac12x^2` (additive unit noise, :math:`\sigma=\eta^{-1/2}`,
  :math:`1-\beta=\eta^\alpha`, :math:`x_0=1`) after :math:`K=1/\eta` steps.  Its mean square is known exactly for
  eq. (3) (the moment recursion of :func:`theory.moments.discrete_moments`, no sampling), and
  :math:`\operatorname{Var}m\approx\frac{1-\beta}{1+\beta}\sigma^2` makes the root-mean-square gap
  :math:`\approx\sqrt u` with :math:`u=\frac{\eta}{1-\beta}\cdot\frac{\beta^2}{1+\beta}` (Theorem 3.5's
  :math:`\eta^{(1-\alpha)/2}`).  Passed when, at every :math:`\eta`, the measured mean-square gap lies within
  :data:`Z` standard errors of the exact value (about :math:`7\times6\times10^{-5}` false failures for the
  7 learning rates), and the exponent of the RMS gap fitted against :math:`u` is within
  :data:`EXPONENT_TOLERANCE` of 1/2.
"""

from __future__ import annotations

import numpy as np

from proofs_check.measure import definition_3_1_beta
from proofs_check.methods import REFERENCE, MethodSet
from proofs_check.registry import register
from proofs_check.result import ClaimResult
from proofs_check.verdicts import guarded
from theory.forms import prove_coupling_identity, prove_scheduled_coupling_identity
from theory.moments import discrete_moments
from theory.problems import noisy_quadratic
from theory.weak_error import fit_weak_order

__all__ = ["EXPONENT_TOLERANCE", "Z", "check_coupling", "coupling_gap_squares", "exact_mean_square_gap"]

REFERENCE_TEXT = "coupling identity (THEORY.md 8); Theorem 3.5 gap O(sqrt(eta/(1-beta)))"
STATEMENT = "y_k = x_k - eta beta/(1-beta) m_k is SGD exactly; |x_k - y_k| ~ sqrt(eta/(1-beta))"
EXPONENT_TOLERANCE = 0.1
Z = 4.0
FIELDS = ("update_step", "sgdm")


def coupling_gap_squares(method, eta: float, beta: float, n_paths: int, seed: int, x0: float = 1.0) -> np.ndarray:
    r"""Per-path squared coupling gaps :math:`(\frac{\eta\beta}{1-\beta}m_K)^2` at :math:`K=1/\eta`.

    ``method`` is a :class:`theory.simulate.Method` whose state is :math:`(x, m)` in eq. (3) form.
    """
    rng = np.random.default_rng(seed)
    state = method.initial_state(np.full((n_paths, 1), x0))
    if state.shape[1] < 2:
        raise ValueError(f"{method.name} keeps no momentum state: its state has {state.shape[1]} coordinate(s)")
    method.advance(state, rng.standard_normal((round(1 / eta), n_paths, 1)), 0, np.random.default_rng(seed + 1), True)
    return (eta * beta / (1 - beta) * state[:, 1]) ** 2


def exact_mean_square_gap(eta: float, beta: float, x0: float = 1.0) -> float:
    r"""Exact :math:`\mathbb E(\frac{\eta\beta}{1-\beta}m_K)^2` of eq. (3) on :math:`\tfrac12x^2`.

    Additive noise of variance :math:`\sigma^2=1/\eta`, :math:`K=1/\eta` (:func:`theory.moments.discrete_moments`).
    """
    moments = discrete_moments([[1.0]], [[1.0 / eta]], eta, beta, x0=[x0], steps=round(1 / eta))
    second = moments.mean_m[-1, 0] ** 2 + moments.cov_m[-1, 0, 0]
    return float((eta * beta / (1 - beta)) ** 2 * second)


def _identity(methods: MethodSet) -> ClaimResult:
    identity = prove_coupling_identity(methods.update_step)
    scheduled = prove_scheduled_coupling_identity(methods.update_step)
    residuals = identity.residuals + scheduled.residuals
    return ClaimResult(
        claim_id="coupling.identity",
        reference=REFERENCE_TEXT,
        statement="y_{k+1} = y_k - eta g_k exactly, and y_{k+1} = y_k - etabar_k g_k with schedules",
        predicted=0.0,
        measured=float(sum(r != 0 for r in residuals)),
        ci_low=0.0,
        ci_high=0.0,
        passed=identity.holds and scheduled.holds,
        criterion="SymPy residuals of update_step simplify to 0",
        details={"residuals": [str(r) for r in residuals]},
        fields=("update_step",),
    )


def _gap(methods: MethodSet, alpha: float, quick: bool, n_paths: int, seed: int) -> ClaimResult:
    problem = noisy_quadratic(1.0, 1.0)
    etas = np.array([0.1 / 2**j for j in range(7)])
    betas = np.array([definition_3_1_beta(eta, alpha) for eta in etas])
    scale = etas / (1 - betas) * betas**2 / (1 + betas)
    measured, standard_errors, exact = [], [], []
    for i, (eta, beta) in enumerate(zip(etas, betas, strict=True)):
        squares = coupling_gap_squares(methods.sgdm(problem, float(eta), float(beta)), eta, beta, n_paths, seed + i)
        measured.append(float(squares.mean()))
        standard_errors.append(float(squares.std(ddof=1) / np.sqrt(n_paths)))
        exact.append(exact_mean_square_gap(float(eta), float(beta)))
    measured_arr, se_arr, exact_arr = np.array(measured), np.array(standard_errors), np.array(exact)
    if np.any(se_arr <= 0) or np.any(measured_arr <= 0):
        # a deterministic (noise-free) gap: no interval, and only an exact match could pass
        z_scores = np.where(measured_arr == exact_arr, 0.0, np.inf)
        order, low, high = float("nan"), float("nan"), float("nan")
    else:
        z_scores = (measured_arr - exact_arr) / se_arr
        rms = np.sqrt(measured_arr)
        fit = fit_weak_order(scale, rms, se_arr / (2 * rms))  # delta method for the RMS
        order, low, high = fit.order, fit.ci_low, fit.ci_high
    levels_ok = bool(np.all(np.abs(z_scores) <= Z))
    exponent_ok = abs(order - 0.5) <= EXPONENT_TOLERANCE
    return ClaimResult(
        claim_id=f"coupling.gap.alpha={alpha:g}",
        reference=REFERENCE_TEXT,
        statement=f"RMS |x_k - y_k| at T = 1 scales like sqrt(eta/(1-beta)), 1-beta ~ eta^{alpha:g} (noisy quadratic)",
        predicted=0.5,
        measured=order,
        ci_low=low,
        ci_high=high,
        passed=levels_ok and exponent_ok,
        criterion=(
            f"mean-square gap within {Z:g} SE of the exact eq. (3) value at each of the {len(etas)} eta and "
            f"|fitted exponent vs u = eta beta^2/((1-beta)(1+beta)) - 1/2| <= {EXPONENT_TOLERANCE}"
        ),
        details={
            "etas": etas.tolist(),
            "betas": betas.tolist(),
            "mean_square_gap": measured,
            "exact_mean_square_gap": exact,
            "z_scores": z_scores.tolist(),
            "max_abs_z": float(np.max(np.abs(z_scores))),
            "rms_gap_over_sqrt_u": (np.sqrt(measured_arr / scale)).tolist(),
            "n_paths": n_paths,
        },
        fields=("sgdm",),
    )


def check_coupling(quick: bool = True, methods: MethodSet = REFERENCE, seed: int | None = None) -> list[ClaimResult]:
    """Symbolic identity for ``methods.update_step``; gap level and exponent for the simulated ``methods.sgdm``."""
    seed = 2 if seed is None else seed
    results = guarded("coupling.identity", REFERENCE_TEXT, STATEMENT, ("update_step",), lambda: _identity(methods))
    n_paths = 20_000 if quick else 200_000
    for alpha in (0.0, 0.5) if quick else (0.0, 0.25, 0.5, 0.75):
        results += guarded(
            f"coupling.gap.alpha={alpha:g}",
            REFERENCE_TEXT,
            STATEMENT,
            ("sgdm",),
            lambda alpha=alpha: _gap(methods, alpha, quick, n_paths, seed + int(100 * alpha)),
        )
    return results


@register("coupling", 2, REFERENCE_TEXT, STATEMENT, FIELDS)
def _claim(quick: bool, methods: MethodSet, seed: int | None) -> list[ClaimResult]:
    return check_coupling(quick, methods, seed)
