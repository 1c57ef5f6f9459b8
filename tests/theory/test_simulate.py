"""Discrete simulators, common random numbers and divergence detection (issue 4, items 3 and 6).

Quadratic oracles are computed here from first principles (exact second-moment recursions and
``scipy.linalg.solve_discrete_lyapunov`` on the (x, m) transition of paper eq. (3)); the comparison with
``theory.quadratic`` lives in ``test_simulate_vs_quadratic.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from tests.theory.monte_carlo import covariance_z_scores, mean_z_scores, recorded_normals, sgdm_transition
from theory.integrators import EulerMaruyama
from theory.problems import log_cosh_well, noisy_quadratic, quartic_well
from theory.sde import sgd_sde
from theory.simulate import SGD, SGDM, SVAG, DivergenceError, run_lockstep, simulate


def test_sgdm_matches_a_plain_loop_on_the_same_normals_with_schedules() -> None:
    problem = log_cosh_well(noise_modulation=0.5)
    etas = 0.05 * (1 + 0.5 * np.sin(np.arange(40)))
    betas = np.linspace(0.0, 0.9, 40)
    method = SGDM(problem, etas, betas, sigma=2.0)
    xs, z = recorded_normals(method, 40, 6, seed=3)
    x, m = np.full((6, 1), 0.5), np.zeros((6, 1))
    for k in range(40):
        g = np.tanh(x) + 2.0 * np.sqrt(1 + 0.5 * np.tanh(x) ** 2) * z[k]
        m = betas[k] * m + (1 - betas[k]) * g
        x = x - etas[k] * m
        np.testing.assert_allclose(xs[k + 1], x, rtol=1e-12, atol=1e-14)


def test_sgd_with_canonical_noise_is_euler_maruyama_of_its_sde_pathwise() -> None:
    """With sigma = eta^(-1/2), SGD is exactly EM for dX = -grad L dt - B dW at dt = eta (same Brownian path)."""
    problem = log_cosh_well()
    sgd = SGD(problem, 0.02)
    em = EulerMaruyama(sgd_sde(problem, 0.02), 0.02)
    for _, _, (a, b) in run_lockstep([sgd, em], [1.0], 50, 100, seed=7):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_coarse_method_gets_the_aggregated_brownian_increment() -> None:
    problem = noisy_quadratic(1.5)
    sde = sgd_sde(problem, 0.1, sigma_value=1.0)
    method = EulerMaruyama(sde, 0.1)
    xs, z = recorded_normals(method, 30, 5, seed=11, ratio=2)
    x = np.full((5, 1), 0.5)
    g = math.sqrt(0.1)  # diffusion -sqrt(eta) sigma Sigma^{1/2}
    for k in range(30):
        x = x - 1.5 * x * 0.1 - g * math.sqrt(0.1) * z[k]
        np.testing.assert_allclose(xs[k + 1], x, rtol=1e-12)
    assert abs(np.std(z) - 1) < 0.2  # normalised: still standard normal


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (lambda p: SGDM(p, 0.05, 0.0), lambda p: SGD(p, 0.05)),
        (lambda p: SVAG(p, 0.05, ell=1.0), lambda p: SGD(p, 0.05)),
        (lambda p: SGDM(p, np.full(20, 0.05), np.full(20, 0.7)), lambda p: SGDM(p, 0.05, 0.7)),
    ],
)
def test_special_cases_coincide(a, b) -> None:
    problem = log_cosh_well()
    for _, _, (x, y) in run_lockstep([a(problem), b(problem)], [1.0], 20, 50, seed=5):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_observation_grid_and_seed_types_do_not_change_the_draws() -> None:
    method = SGDM(log_cosh_well(), 0.05, 0.9)
    coarse = simulate(method, [1.0], 60, 30, seed=4)
    fine = simulate(method, [1.0], 60, 30, seed=4, observe_every=3)
    np.testing.assert_array_equal(coarse.values[-1], fine.values[-1])
    np.testing.assert_allclose(fine.times, 0.05 * np.arange(0, 61, 3))
    again = simulate(method, [1.0], 60, 30, seed=np.random.SeedSequence(4))
    np.testing.assert_array_equal(coarse.values[-1], again.values[-1])
    other = simulate(method, [1.0], 60, 30, seed=np.random.default_rng(4))
    assert other.values.shape == (2, 30, 1) and not np.array_equal(other.values[-1], coarse.values[-1])


def test_svag_step_is_unbiased_with_covariance_ell_sigma_squared() -> None:
    """THEORY.md 6.2: one SVAG step moves by -(eta/ell)(grad L + noise of variance ell sigma^2 Sigma)."""
    problem = log_cosh_well()
    eta, ell, sigma, n = 0.2, 4.0, 1.5, 400_000
    x1 = simulate(SVAG(problem, eta, ell=ell, sigma=sigma), [0.8], 1, n, seed=2).values[-1, :, 0]
    g = (0.8 - x1) * ell / eta
    mean_se = g.std() / math.sqrt(n)
    assert abs(g.mean() - math.tanh(0.8)) < 4 * mean_se
    expected_var = ell * sigma**2 * (1 + 0.5 * math.tanh(0.8) ** 2)
    assert abs(g.var(ddof=1) - expected_var) < 4 * expected_var * math.sqrt(2 / (n - 1))


# --- quadratic oracles from first principles ---------------------------------------------------------------


def test_sgd_and_sgdm_stationary_variance_1d_match_exact_formulas() -> None:
    """THEORY.md 5.4 (oracle 6, 9): SGD eta s^2/(h(2-eta h)); normalized SGDM eta s^2 (1+b)/(h(2(1+b)-eta h(1-b)))."""
    h, s, eta, beta, n = 1.0, 1.0, 0.5, 0.5, 40_000
    problem = noisy_quadratic(h, s**2)
    sgd = simulate(SGD(problem, eta, sigma=1.0), [0.0], 100, n, seed=21).values[-1, :, 0]
    sgdm = simulate(SGDM(problem, eta, beta, sigma=1.0), [0.0], 200, n, seed=22).values[-1, :, 0]
    exact_sgd = eta * s**2 / (h * (2 - eta * h))
    exact_sgdm = eta * s**2 * (1 + beta) / (h * (2 * (1 + beta) - eta * h * (1 - beta)))
    for sample, exact in ((sgd, exact_sgd), (sgdm, exact_sgdm)):
        se = exact * math.sqrt(2 / (n - 1))  # the stationary law is Gaussian
        assert abs(sample.var(ddof=1) - exact) < 4 * se
    # the same check rejects the first-order SME value eta s^2 / (2h) (THEORY.md 4.3): it is 8+ SE away
    assert abs(sgdm.var(ddof=1) - eta * s**2 / (2 * h)) > 4 * exact_sgdm * math.sqrt(2 / (n - 1))


def test_sgdm_2d_transient_and_stationary_covariance_match_lyapunov() -> None:
    hessian = np.array([[2.0, 0.5], [0.5, 0.5]])
    noise_cov = np.array([[1.0, -0.3], [-0.3, 0.4]])
    eta, beta, n = 0.5, 0.6, 30_000
    transition, kick = sgdm_transition(hessian, noise_cov, eta, beta)
    problem = noisy_quadratic(hessian, noise_cov)
    x0 = np.array([1.0, -1.0])
    result = simulate(SGDM(problem, eta, beta, sigma=1.0), x0, 300, n, seed=9, observe_every=5)
    mean, cov = np.concatenate([x0, np.zeros(2)]), np.zeros((4, 4))
    for k in range(1, 301):
        mean, cov = transition @ mean, transition @ cov @ transition.T + kick
        if k in (5, 20, 300):
            x = result.values[k // 5]
            mean_z = mean_z_scores(x, mean[:2])
            assert np.all(np.abs(mean_z) < 4), (k, mean_z)
            assert np.all(np.abs(covariance_z_scores(x, cov[:2, :2])) < 4), k
    stationary = scipy.linalg.solve_discrete_lyapunov(transition, kick)[:2, :2]
    np.testing.assert_allclose(cov[:2, :2], stationary, atol=1e-10)  # 300 steps reach the stationary law
    sgd_stationary = scipy.linalg.solve_discrete_lyapunov(*sgdm_transition(hessian, noise_cov, eta, 0.0))[:2, :2]
    assert np.max(np.abs(covariance_z_scores(result.values[-1], sgd_stationary))) > 4  # SGD's law is rejected


# --- divergence ------------------------------------------------------------------------------------------


def first_bad_step_by_hand(eta: float, x0: float, z: np.ndarray, bound: float) -> int:
    x = np.full(z.shape[1], x0)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(z.shape[0]):
            x = x - eta * (x**3 + 0.5 * x + 3.0 * z[k, :, 0])
            if not np.all(np.abs(x) <= bound):
                return k
    raise AssertionError("did not diverge")


def test_divergence_is_reported_with_step_path_and_parameters() -> None:
    problem = quartic_well(curvature=0.5)
    method = SGD(problem, 0.3, sigma=3.0)
    with pytest.raises(DivergenceError) as info:
        simulate(method, [2.2], 200, 8, seed=1, observe_every=200)
    error = info.value
    assert isinstance(error, ValueError)
    _, z = recorded_normals(SGD(problem, 0.3, sigma=3.0), error.step + 1, 8, seed=1, x0=(0.0,))
    assert error.step == first_bad_step_by_hand(0.3, 2.2, z, 1e12) > 0
    assert "eta=0.3" in str(error) and f"step {error.step}" in str(error)
    assert error.time == pytest.approx(0.3 * (error.step + 1))
    assert error.bound == 1e12 and not (abs(error.value) <= 1e12)


def test_exploding_linear_iteration_is_caught_by_the_bound_before_overflow() -> None:
    method = SGD(noisy_quadratic(1.0), 2.5, sigma=0.0)  # |1 - eta h| = 1.5 > 1: grows geometrically
    with pytest.raises(DivergenceError, match="step 28 ") as info:
        simulate(method, [1.0], 1000, 4, seed=0, divergence_bound=1e5)
    assert 1e5 < info.value.value < 1e6  # 1.5^29 = 1.27e5: the first step past the bound


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: SGD(log_cosh_well(), 0.0), r"eta .* \(0, inf\)"),
        (lambda: SGDM(log_cosh_well(), 0.1, 1.0), r"beta must lie in \[0, 1\)"),
        (lambda: SGDM(log_cosh_well(), [0.1, -0.1], 0.5), r"eta .*\[1\] must be a finite number in \(0, inf\)"),
        (lambda: SGDM(log_cosh_well(), 0.1, 0.5, m0=[1.0, 2.0]), "m0 must be a finite vector of length 1"),
        (lambda: SVAG(log_cosh_well(), 0.1, ell=0.5), r"ell .* in \[1, inf\)"),
        (lambda: SGD(log_cosh_well(), 0.1, sigma=-2.0), r"sigma .* in \[0, inf\)"),
        (lambda: SGD("quadratic", 0.1), "Problem"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [1.0, 2.0], 10, 5, seed=0), r"x0 must have shape \(1,\)"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [np.nan], 10, 5, seed=0), "x0 must be finite"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), ["one"], 10, 5, seed=0), "x0 must be an array of real numbers"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [1j], 10, 5, seed=0), "x0 must be real"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [1.0], 10.0, 5, seed=0), "n_steps must be an integer"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [1.0], 10, 0, seed=0), "n_paths must be an integer >= 1"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [1.0], 10, 5, seed=-1), "seed must be"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [1.0], 10, 5, seed=0, observe_every=3), "multiple"),
        (lambda: simulate(SGD(log_cosh_well(), [0.1] * 5), [1.0], 10, 5, seed=0), "schedule has 5 steps"),
        (lambda: simulate(SGD(log_cosh_well(), 0.1), [1.0], 10, 5, seed=0, divergence_bound=0), "divergence_bound"),
        (
            lambda: list(run_lockstep([SGD(log_cosh_well(), 0.1), SGD(log_cosh_well(), 0.15)], [1.0], 2, 3, 0)),
            "integer multiples",
        ),
        (
            lambda: list(
                run_lockstep([SGD(log_cosh_well(), 0.1), SGD(noisy_quadratic(np.eye(2)), 0.1)], [1.0], 2, 3, 0)
            ),
            "dimensions",
        ),
        (lambda: list(run_lockstep([], [1.0], 2, 3, 0)), "non-empty"),
    ],
)
def test_bad_input_is_rejected(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
