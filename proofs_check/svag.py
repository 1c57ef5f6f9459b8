r"""Claim 6: SVAG (Definition 5.1) is unbiased with covariance :math:`\ell\Sigma`, and converges to the SDE.

* ``svag.moments.ell=L``: mini-batch gradients of a least-squares problem (fixed data, batches of
  :math:`B` drawn with replacement) at a fixed point, combined as :math:`r_1g^{(1)}+r_2g^{(2)}`.  The
  exact mean :math:`\bar g` and per-batch covariance :math:`\Sigma/B` are known; measured: the ratio
  :math:`\operatorname{tr}\widehat{\operatorname{Cov}}/\operatorname{tr}(\ell\Sigma/B)` (predicted 1) and
  the mean's deviation in standard errors.  Passed when the ratio's interval of :data:`Z` standard errors
  contains 1 and every mean coordinate lies within :data:`Z` standard errors.
* ``svag.weak_order``: at fixed :math:`\eta=0.5` on the log-cosh well, the weak error of SVAG against the
  SGD SDE (its expectation from the backward Kolmogorov equation, no sampling on that side) decays like
  :math:`\ell^{-1}` (Li, Malladi, Arora 2021, Theorem 4.3; THEORY.md 6.3): fitted order in :math:`1/\ell`
  within :data:`ORDER_TOLERANCE` of 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from proofs_check.registry import register
from proofs_check.result import ClaimResult
from theory.kolmogorov import kolmogorov_expectation
from theory.problems import Problem, log_cosh_well
from theory.sde import sgd_sde
from theory.simulate import SVAG, Method
from theory.svag import svag_coefficients
from theory.weak_error import WeakErrorResult, fit_weak_order, weak_error

__all__ = ["ORDER_TOLERANCE", "WEAK_ORDER_ETA", "Z", "check_svag", "svag_simulator", "svag_weak_errors"]

REFERENCE = "Definition 5.1 (SVAG); Li-Malladi-Arora 2021 Thm 4.3; THEORY.md 6.1-6.3"
STATEMENT = "SVAG gradient is unbiased with covariance ell*Sigma; weak error to the SDE is O(1/ell) at fixed eta"
Z = 4.0
ORDER_TOLERANCE = 0.25
#: The fixed learning rate of the weak-order measurement (SVAG's limit is taken at fixed eta).
WEAK_ORDER_ETA = 0.5

Coefficients = Callable[[float], tuple[float, float]]


def _least_squares_gradients(n: int = 64, dim: int = 4, seed: int = 0) -> np.ndarray:
    """Per-example gradients a_i (a_i.w - y_i) of a fixed least-squares problem at a fixed w."""
    rng = np.random.default_rng(seed)
    a, y, w = rng.normal(size=(n, dim)), rng.normal(size=n), rng.normal(size=dim)
    return a * (a @ w - y)[:, None]


def _cosine(x: np.ndarray) -> np.ndarray:
    return np.cos(x[:, 0])


def svag_simulator(problem: Problem, eta: float, ell: int) -> Method:
    """The method under test: SVAG paths at learning rate eta/ell (:class:`theory.simulate.SVAG`)."""
    return SVAG(problem, eta, ell=ell)


def svag_weak_errors(
    ells: Sequence[int],
    n_paths: int,
    seed: int,
    eta: float = WEAK_ORDER_ETA,
    svag_method: Callable[[Problem, float, int], Method] = svag_simulator,
) -> list[WeakErrorResult]:
    r"""Weak error of SVAG against the SGD SDE on the log-cosh well, one result per ``ell`` (THEORY.md 6.3).

    :math:`\max_{t_k\le1}|\mathbb E\cos x^{\eta/\ell}_k-\mathbb E\cos X_{t_k}|` at the times :math:`t=0,\eta,2\eta,
    \dots` (every ``ell`` SVAG steps) from :math:`x_0=1`, :math:`\sigma=\eta^{-1/2}`; the SDE side is exact (backward
    Kolmogorov equation, :func:`theory.kolmogorov.kolmogorov_expectation`), so the interval is pure Monte Carlo
    error of SVAG.  Seed ``seed + i`` for the ``i``-th ``ell``.
    """
    problem = log_cosh_well()
    sde = sgd_sde(problem, eta)

    def reference(times: np.ndarray) -> np.ndarray:
        return kolmogorov_expectation(sde, np.cos, 1.0, times, domain=(-14.0, 14.0)).values

    return [
        weak_error(svag_method(problem, eta, ell), reference, _cosine, [1.0], 1.0, n_paths, seed + i, observe_every=ell)
        for i, ell in enumerate(ells)
    ]


def check_svag(
    quick: bool = True,
    coefficients: Coefficients = svag_coefficients,
    svag_method: Callable[[Problem, float, int], Method] = svag_simulator,
    seed: int = 6,
) -> list[ClaimResult]:
    """Check SVAG's moments with ``coefficients(ell) -> (r1, r2)`` and the weak order of ``svag_method``."""
    per_example = _least_squares_gradients()
    n, batch = per_example.shape[0], 8
    mean = per_example.mean(0)
    sigma_batch = np.cov(per_example.T, bias=True) / batch
    rng = np.random.default_rng(seed)
    draws = 100_000 if quick else 1_000_000
    results = []
    for ell in (1, 2, 4, 8):
        r1, r2 = coefficients(ell)
        g1 = per_example[rng.integers(n, size=(draws, batch))].mean(1)
        g2 = per_example[rng.integers(n, size=(draws, batch))].mean(1)
        g = r1 * g1 + r2 * g2
        centred = g - mean
        squared_norm = np.sum(centred**2, axis=1)
        ratio = squared_norm.mean() / (ell * np.trace(sigma_batch))
        ratio_se = squared_norm.std(ddof=1) / np.sqrt(draws) / (ell * np.trace(sigma_batch))
        mean_z = np.abs(g.mean(0) - mean) / (g.std(0, ddof=1) / np.sqrt(draws))
        results.append(
            ClaimResult(
                claim_id=f"svag.moments.ell={ell}",
                reference=REFERENCE,
                statement=f"E g_svag = grad L and tr Cov g_svag = ell tr(Sigma/B), ell = {ell}",
                predicted=1.0,
                measured=float(ratio),
                ci_low=float(ratio - Z * ratio_se),
                ci_high=float(ratio + Z * ratio_se),
                passed=bool(abs(ratio - 1) <= Z * ratio_se and np.all(mean_z <= Z)),
                criterion=f"|trace ratio - 1| <= {Z:g} SE and each mean coordinate within {Z:g} SE",
                details={"draws": draws, "batch": batch, "mean_z_scores": mean_z.tolist(), "r1": r1, "r2": r2},
            )
        )

    eta = WEAK_ORDER_ETA
    ells = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 16, 32]
    n_paths = 200_000 if quick else 1_000_000
    errors = svag_weak_errors(ells, n_paths, seed + 10, eta, svag_method)
    fit = fit_weak_order(1.0 / np.asarray(ells), errors)
    results.append(
        ClaimResult(
            claim_id="svag.weak_order",
            reference=REFERENCE,
            statement="weak error of SVAG against the SGD SDE at fixed eta = 0.5 decays like 1/ell",
            predicted=1.0,
            measured=fit.order,
            ci_low=fit.ci_low,
            ci_high=fit.ci_high,
            passed=bool(abs(fit.order - 1.0) <= ORDER_TOLERANCE),
            criterion=f"|fitted order in 1/ell - 1| <= {ORDER_TOLERANCE}",
            details={
                "ells": ells,
                "errors": [e.estimate for e in errors],
                "standard_errors": [e.standard_error for e in errors],
                "n_paths": n_paths,
                "eta": eta,
            },
        )
    )
    return results


@register("svag", 6, REFERENCE, STATEMENT)
def _claim(quick: bool) -> list[ClaimResult]:
    return check_svag(quick)
