"""Monte Carlo of stationary laws (theory.stationary) against the exact stationary covariance (THEORY.md 5.4)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from theory.problems import noisy_quadratic
from theory.quadratic import stationary_covariance
from theory.simulate import SGD, SGDM, simulate
from theory.stationary import (
    RatioEstimate,
    ratio_of_means_interval,
    stationary_second_moment,
    stationary_second_moments,
)

#: Monte Carlo estimates must lie within Z standard errors of the exact value (about 6e-5 two-sided per check).
Z = 4.0


def _old_stationary_second_moment(method, n_paths: int, seed: int, burn_in: int = 300, window: int = 300):
    """The private helper of proofs_check/momentum_matters.py before the move, verbatim: the reference."""
    path = simulate(method, [0.0], burn_in + window, n_paths, seed, observe_every=1).values[burn_in + 1 :, :, 0]
    per_path = (path**2).mean(axis=0)
    return float(per_path.mean()), float(per_path.std(ddof=1) / np.sqrt(n_paths))


def _unit_quadratic_methods(eta_h: float, beta: float) -> tuple[SGD, SGDM]:
    """SGD and normalized SGDM on h x^2 / 2 with h = 1 and noise variance s^2 = 1 (sigma = 1, not eta^-1/2)."""
    problem = noisy_quadratic(1.0, 1.0)
    return SGD(problem, eta_h, sigma=1.0), SGDM(problem, eta_h, beta=beta, sigma=1.0)


@pytest.mark.parametrize(("eta_h", "burn_in", "window"), [(0.5, 300, 300), (1.5, 40, 75)])
def test_stationary_second_moment_returns_the_numbers_of_the_old_helper(eta_h: float, burn_in: int, window: int):
    sgd, sgdm = _unit_quadratic_methods(eta_h, 0.9)
    sgdm = dataclasses.replace(sgdm, sigma=1.0)  # as claim 8 builds it
    for method, seed in ((sgd, 8), (sgdm, 18)):
        expected = _old_stationary_second_moment(method, 500, seed, burn_in, window)
        assert stationary_second_moment(method, 500, seed, burn_in=burn_in, window=window) == expected


@pytest.mark.parametrize("eta_h", [0.05, 0.5, 1.5, 1.9])
def test_stationary_second_moment_matches_the_exact_variance(eta_h: float) -> None:
    """E x^2 of SGD and SGDM (beta = 0.9) within Z standard errors of stationary_covariance; the SGD estimate is far
    from SGDM's exact value wherever the two differ by more than the noise (the check can fail)."""
    beta = 0.9
    exact_sgd = float(stationary_covariance([[1.0]], [[1.0]], eta_h, 0.0)[0, 0])
    exact_sgdm = float(stationary_covariance([[1.0]], [[1.0]], eta_h, beta)[0, 0])
    sgd, sgdm = _unit_quadratic_methods(eta_h, beta)
    # SGD relaxes like (1 - eta_h)^(2k): at eta_h = 0.05 that takes 10 / -log(0.95^2) ~ 100 steps per 10 relaxations
    burn_in = 600 if eta_h < 0.1 else 300
    measured_sgd, se_sgd = stationary_second_moment(sgd, 4000, 1, burn_in=burn_in, window=1200)
    measured_sgdm, se_sgdm = stationary_second_moment(sgdm, 4000, 2, burn_in=burn_in, window=1200)
    assert abs(measured_sgd - exact_sgd) <= Z * se_sgd
    assert abs(measured_sgdm - exact_sgdm) <= Z * se_sgdm
    if eta_h >= 0.5:
        assert abs(measured_sgd - exact_sgdm) > Z * se_sgd


def test_stationary_second_moments_match_a_non_commuting_covariance() -> None:
    """Per-coordinate E x_i^2 on a 2-D quadratic whose H and Sigma do not commute, on common random numbers."""
    H = np.array([[1.0, 0.3], [0.3, 0.5]])
    Sigma = np.array([[1.0, -0.4], [-0.4, 0.5]])
    assert not np.allclose(H @ Sigma, Sigma @ H)
    problem = noisy_quadratic(H, Sigma)
    eta, beta = 0.8, 0.9
    methods = [SGD(problem, eta, sigma=1.0), SGDM(problem, eta, beta=beta, sigma=1.0)]
    moments = stationary_second_moments(methods, np.zeros(2), 100, 200, 3000, 5, period_steps=5)
    assert moments.shape == (2, 3000, 2)
    for replicates, momentum in zip(moments, (0.0, beta), strict=True):
        exact = np.diag(stationary_covariance(H, Sigma, eta, momentum))
        se = replicates.std(axis=0, ddof=1) / math.sqrt(replicates.shape[0])
        assert np.all(np.abs(replicates.mean(axis=0) - exact) <= Z * se), (momentum, replicates.mean(axis=0), exact)
    # a wrong exact value (the commuting formula with Sigma's diagonal) is detected
    h = np.diag(H)
    commuting_guess = eta * np.diag(Sigma) * (1 + beta) / (h * (2 * (1 + beta) - eta * h * (1 - beta)))
    se = moments[1].std(axis=0, ddof=1) / math.sqrt(moments.shape[1])
    assert np.any(np.abs(moments[1].mean(axis=0) - commuting_guess) > Z * se)


def test_ratio_of_means_interval() -> None:
    rng = np.random.default_rng(3)
    b = rng.exponential(size=500)
    exact = ratio_of_means_interval(2 * b, b)  # perfectly correlated: no uncertainty in the ratio
    assert isinstance(exact, RatioEstimate)
    assert exact.ratio == pytest.approx(2.0) and exact.half_width < 1e-12 and exact.se < 1e-12
    a = rng.exponential(size=500)
    estimate = ratio_of_means_interval(a, b, level=0.9)
    ratio, covariance = a.mean() / b.mean(), np.cov(a, b)
    variance = (covariance[0, 0] - 2 * ratio * covariance[0, 1] + ratio**2 * covariance[1, 1]) / (500 * b.mean() ** 2)
    assert estimate.ratio == pytest.approx(ratio, rel=1e-14)
    assert estimate.se == pytest.approx(math.sqrt(variance), rel=1e-12)
    assert estimate.half_width == pytest.approx(stats.t.ppf(0.95, 499) * math.sqrt(variance), rel=1e-10)
    assert (estimate.n, estimate.level) == (500, 0.9)
    assert estimate.ci_low < estimate.ratio < estimate.ci_high


def test_ratio_interval_covers_the_exact_ratio_of_stationary_moments() -> None:
    """SGD/SGDM on common random numbers: the paired interval covers the exact ratio (regime_loss_ratio's value)."""
    eta_h, beta = 1.5, 0.9
    problem = noisy_quadratic(1.0, 1.0)
    methods = [SGD(problem, eta_h, sigma=1.0), SGDM(problem, eta_h, beta=beta, sigma=1.0)]
    moments = stationary_second_moments(methods, [0.0], 300, 1200, 2000, 11)
    estimate = ratio_of_means_interval(moments[0, :, 0], moments[1, :, 0])
    exact = (2 * (1 + beta) - eta_h * (1 - beta)) / ((1 + beta) * (2 - eta_h))
    assert abs(estimate.ratio - exact) <= Z * estimate.se
    assert estimate.se < 0.02 * exact  # the pairing makes the ratio precise


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ratio_of_means_interval([1.0, 2.0], [1.0]), "equal length"),
        (lambda: ratio_of_means_interval([1.0], [1.0]), "equal length >= 2"),
        (lambda: ratio_of_means_interval([1.0, np.nan], [1.0, 2.0]), "finite"),
        (lambda: ratio_of_means_interval([1.0, 2.0], [1.0, 2.0], level=1.0), r"level must lie in \(0, 1\)"),
        (lambda: ratio_of_means_interval([1.0, 2.0], [-1.0, -2.0]), "denominator's mean must be > 0"),
    ],
)
def test_ratio_of_means_interval_rejects_bad_samples(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_second_moment_inputs_are_checked() -> None:
    sgd, _ = _unit_quadratic_methods(0.5, 0.9)
    with pytest.raises(ValueError, match="burn_in must be an integer >= 0"):
        stationary_second_moment(sgd, 10, 0, burn_in=-1)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        stationary_second_moments([sgd], [0.0], 10, 0, 10, 0)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        stationary_second_moments([sgd], [0.0], 10, True, 10, 0)
    with pytest.raises(ValueError, match="n_paths must be an integer >= 2"):
        stationary_second_moment(sgd, 1, 0)
    with pytest.raises(ValueError, match="one-dimensional"):
        stationary_second_moment(SGD(noisy_quadratic(np.eye(2)), 0.5, sigma=1.0), 10, 0)
    with pytest.raises(ValueError, match=r"must be a theory\.simulate\.Method"):
        stationary_second_moment("sgd", 10, 0)
