"""Simulated SGD/SGDM on noisy quadratics against ``theory.quadratic`` (issue 4 "Must show"; needs issue 3).

Skipped until ``theory.quadratic`` exists.  Covariances are compared entry by entry within 4 standard
errors (the standard error of each sample covariance entry is estimated from the products of centred samples).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.theory.monte_carlo import covariance_z_scores, mean_z_scores, sgdm_transition
from theory.problems import noisy_quadratic
from theory.simulate import SGDM, simulate

quadratic = pytest.importorskip("theory.quadratic")

HESSIAN = np.array([[2.0, 0.5], [0.5, 0.5]])  # THEORY.md oracle 14: non-commuting H and C
NOISE = np.array([[1.0, -0.3], [-0.3, 0.4]])
N_PATHS = 20_000


def exact_moments(eta: float, beta: float, x0: np.ndarray, steps: int):
    """Mean and covariance of x_k for k = 0..steps by the exact (x, m) second-moment recursion of paper eq. (3)."""
    d = x0.size
    transition, kick = sgdm_transition(HESSIAN, NOISE, eta, beta)
    mean, cov = np.concatenate([x0, np.zeros(d)]), np.zeros((2 * d, 2 * d))
    out = [(mean[:d].copy(), cov[:d, :d].copy())]
    for _ in range(steps):
        mean, cov = transition @ mean, transition @ cov @ transition.T + kick
        out.append((mean[:d].copy(), cov[:d, :d].copy()))
    return out


@pytest.mark.parametrize(("eta", "beta"), [(1.0, 0.8), (0.5, 0.0), (0.3, 0.9)])
def test_simulated_stationary_covariance_matches_theory_quadratic(eta: float, beta: float) -> None:
    # slowest mode: rate ~ eta * lambda_min = 0.1 per step at eta = 0.3, so 400 steps forget x0 = 0 to e^-40
    x = simulate(SGDM(noisy_quadratic(HESSIAN, NOISE), eta, beta, sigma=1.0), [0.0, 0.0], 400, N_PATHS, seed=31)
    exact = quadratic.stationary_covariance(HESSIAN, NOISE, eta, beta)
    z = covariance_z_scores(x.values[-1], exact)
    assert np.all(np.abs(z) < 4), z


def test_simulated_transient_moments_match_the_exact_recursion_and_its_limit() -> None:
    eta, beta, x0 = 1.0, 0.8, np.array([1.0, -1.0])
    result = simulate(
        SGDM(noisy_quadratic(HESSIAN, NOISE), eta, beta, sigma=1.0), x0, 400, N_PATHS, seed=32, observe_every=4
    )
    moments = exact_moments(eta, beta, x0, 400)
    for k in (4, 12, 40, 400):
        x = result.values[k // 4]
        mean, cov = moments[k]
        mean_z = mean_z_scores(x, mean)
        assert np.all(np.abs(mean_z) < 4), (k, mean_z)
        assert np.all(np.abs(covariance_z_scores(x, cov)) < 4), k
    np.testing.assert_allclose(moments[-1][1], quadratic.stationary_covariance(HESSIAN, NOISE, eta, beta), atol=1e-9)
