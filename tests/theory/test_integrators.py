"""SDE integrators: weak orders on Ornstein-Uhlenbeck, exact linear sampling (issue 4, item 4).

Weak errors are measured against exact OU sampling on the same Brownian path (common random numbers), so
the Monte Carlo error of the difference is far below the weak error itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate

from tests.theory.monte_carlo import recorded_normals
from theory.integrators import EulerMaruyama, ExactLinear, WeakOrder2, linear_transition
from theory.problems import linear_regression, log_cosh_well
from theory.sde import linear_sde, sgd_sde, sgdm_sde
from theory.simulate import simulate
from theory.weak_error import fit_weak_order, weak_error

THETA, S, X0, T = 1.0, 1.0, 1.0, 1.6
OU = linear_sde(-THETA * np.eye(1), S)
OBSERVABLES = (lambda x: x[:, 0], lambda x: x[:, 0] ** 2)  # mean and second moment (variance = m2 - m1^2)
ORDER_TOLERANCE = 0.2  # |fitted order - theoretical order|, with 4 step sizes per halving and CRN


def fitted_orders(scheme, dts, n_paths: int, seed: int):
    results = [weak_error(scheme(OU, dt), ExactLinear(OU, dt), OBSERVABLES, [X0], T, n_paths, seed) for dt in dts]
    return [fit_weak_order(dts, [r[j] for r in results]) for j in range(len(OBSERVABLES))]


def test_euler_maruyama_has_weak_order_one_on_ou() -> None:
    fits = fitted_orders(EulerMaruyama, [0.2, 0.1, 0.05, 0.025], 20_000, seed=3)
    for fit in fits:
        print(f"EM fitted weak order {fit.order:.3f}, 95% CI [{fit.ci_low:.3f}, {fit.ci_high:.3f}]")
        assert abs(fit.order - 1.0) < ORDER_TOLERANCE
        assert fit.ci_low < 1.0 + ORDER_TOLERANCE and fit.ci_high > 1.0 - ORDER_TOLERANCE


def test_weak_order_two_scheme_has_order_two_on_ou() -> None:
    fits = fitted_orders(WeakOrder2, [0.4, 0.2, 0.1, 0.05], 100_000, seed=4)
    for fit in fits:
        print(f"order-2 scheme fitted weak order {fit.order:.3f}, 95% CI [{fit.ci_low:.3f}, {fit.ci_high:.3f}]")
        assert abs(fit.order - 2.0) < ORDER_TOLERANCE


def test_order_two_check_rejects_euler_maruyama() -> None:
    """The order-2 assertion above is not vacuous: Euler-Maruyama measured the same way fails it."""
    fits = fitted_orders(EulerMaruyama, [0.4, 0.2, 0.1, 0.05], 20_000, seed=4)
    assert all(abs(fit.order - 2.0) > 3 * ORDER_TOLERANCE for fit in fits)


@pytest.mark.slow
def test_weak_orders_on_ou_tight() -> None:
    for scheme, dts, order in (
        (EulerMaruyama, [0.1, 0.05, 0.025, 0.0125, 0.00625], 1.0),
        (WeakOrder2, [0.2, 0.1, 0.05, 0.025], 2.0),
    ):
        for fit in fitted_orders(scheme, dts, 400_000, seed=5):
            print(f"{scheme.__name__}: {fit.order:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}]")
            assert abs(fit.order - order) < 0.1


def test_linear_transition_matches_closed_form_ou_and_quadrature() -> None:
    dt = 0.3
    one_d = linear_transition(linear_sde(-1.3 * np.eye(1), 0.7, offset=[0.4]), dt)
    assert one_d.propagator[0, 0] == pytest.approx(math.exp(-1.3 * dt), rel=1e-14)
    assert one_d.offset[0] == pytest.approx(0.4 / 1.3 * (1 - math.exp(-1.3 * dt)), rel=1e-13)
    assert one_d.covariance[0, 0] == pytest.approx(0.49 / 2.6 * (1 - math.exp(-2.6 * dt)), rel=1e-13)
    # underdamped (X, M) system with noise on M only: Van Loan against direct quadrature of the integrals
    a_mat, g_mat = np.array([[0.0, -1.0], [2.0, -2.0]]), np.array([[0.0], [1.5]])
    transition = linear_transition(linear_sde(a_mat, g_mat), dt)
    expm = scipy.linalg.expm
    q, _ = scipy.integrate.quad_vec(
        lambda s: expm(a_mat * s) @ g_mat @ g_mat.T @ expm(a_mat.T * s), 0, dt, epsabs=1e-14
    )
    k, _ = scipy.integrate.quad_vec(lambda s: expm(a_mat * (dt - s)) @ g_mat, 0, dt, epsabs=1e-14)
    np.testing.assert_allclose(transition.covariance, q, atol=1e-13)
    np.testing.assert_allclose(transition.brownian_cross, k, atol=1e-13)
    np.testing.assert_allclose(transition.propagator, expm(a_mat * dt), atol=1e-14)


def test_exact_sampler_has_exact_moments_at_a_coarse_step() -> None:
    """ExactLinear at dt = 0.5 (where EM is far off) matches the OU law within 4 standard errors."""
    sde = linear_sde(-1.3 * np.eye(1), 0.7, offset=[0.4])
    n = 200_000
    x = simulate(ExactLinear(sde, 0.5), [2.0], 4, n, seed=8).values[-1, :, 0]
    t = 2.0
    mean = 0.4 / 1.3 + (2.0 - 0.4 / 1.3) * math.exp(-1.3 * t)
    var = 0.49 / 2.6 * (1 - math.exp(-2.6 * t))
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / n)
    assert abs(x.var(ddof=1) - var) < 4 * var * math.sqrt(2 / (n - 1))
    em = simulate(EulerMaruyama(sde, 0.5), [2.0], 4, n, seed=8).values[-1, :, 0]
    assert abs(em.var(ddof=1) - var) > 10 * var * math.sqrt(2 / (n - 1))  # the check can fail


def test_em_generic_path_equals_linear_fast_path() -> None:
    """The quadratic's SGD SDE (linear, fast path) and a hand-built non-linear twin agree on the same draws."""
    problem = log_cosh_well(scale=1e-3, noise=0.5, noise_modulation=0.0)  # log cosh(a x)/a^2 ~ x^2/2 for tiny a
    generic = EulerMaruyama(sgd_sde(problem, 0.05), 0.05)
    linear = EulerMaruyama(linear_sde(-np.eye(1), -0.5), 0.05)
    assert generic.sde.linear_coefficients is None and linear.sde.linear_coefficients is not None
    a = simulate(generic, [1.0], 40, 50, seed=2).values[-1]
    b = simulate(linear, [1.0], 40, 50, seed=2).values[-1]
    np.testing.assert_allclose(a, b, atol=1e-6)  # differs only by the O(a^2 x^3) = 1e-6 cubic term


@pytest.mark.parametrize("offset", [None, [0.3, -0.2]])
def test_linear_fast_paths_are_euler_maruyama_on_the_recorded_normals(offset) -> None:
    """Full drift and diffusion matrices: noise coordinates (no offset) and block kicks (offset) are both EM."""
    a_mat = np.array([[-1.0, 0.4], [-0.2, -0.5]])
    g_mat = np.array([[0.6, 0.1], [-0.3, 0.8]])
    method = EulerMaruyama(linear_sde(a_mat, g_mat, offset=offset), 0.05)
    xs, z = recorded_normals(method, 25, 6, seed=4, x0=(1.0, -0.5))
    y = np.tile([1.0, -0.5], (6, 1))
    shift = np.zeros(2) if offset is None else np.asarray(offset)
    for k in range(25):
        y = y + 0.05 * (y @ a_mat.T + shift) + math.sqrt(0.05) * z[k] @ g_mat.T
        np.testing.assert_allclose(xs[k + 1], y, rtol=1e-12, atol=1e-13)


def test_underdamped_sde_integrates_with_zero_initial_momentum() -> None:
    sde = sgdm_sde(log_cosh_well(), 0.01, alpha=1.0, c=2.0)
    result = simulate(WeakOrder2(sde, 0.05), [1.0], 20, 10, seed=0)
    assert result.values.shape == (2, 10, 1) and np.all(np.isfinite(result.values))


def test_weak_order_two_rejects_non_commutative_noise() -> None:
    sde = sgd_sde(linear_regression(np.array([[1.0, 0.3], [0.3, 2.0]]), [1.0, -1.0], 0.5), 0.1)
    with pytest.raises(ValueError, match="commutative noise"):
        WeakOrder2(sde, 0.1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: EulerMaruyama(OU, 0.0), r"dt .* \(0, inf\)"),
        (lambda: EulerMaruyama("ou", 0.1), "theory.sde.SDE"),
        (lambda: ExactLinear(sgd_sde(log_cosh_well(), 0.1), 0.1), "not linear"),
        (lambda: linear_transition(OU, -1.0), r"dt .* \(0, inf\)"),
    ],
)
def test_bad_input_is_rejected(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
