"""Analytic test problems: derived derivatives, noise covariances, validation (issue 4, item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from tests.theory.monte_carlo import covariance_z_scores, mean_z_scores
from theory.problems import (
    Problem,
    double_well_2d,
    linear_regression,
    log_cosh_well,
    noisy_quadratic,
    quartic_well,
)

STEP = 1e-4  # central differences: error ~ STEP**2 * (third derivative) ~ 1e-8
FD_TOL = 1e-6


def _central(f, x: np.ndarray) -> np.ndarray:
    """Central finite differences of f: (N, d) -> (N, *s) along each coordinate; returns (N, *s, d)."""
    columns = []
    for i in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, i] = STEP
        columns.append((f(x + e) - f(x - e)) / (2 * STEP))
    return np.stack(columns, axis=-1)


def derivative_mismatch(f, df, x: np.ndarray) -> float:
    """Largest |df - FD(f)| relative to max(1, |df|): the check every problem's derivatives must pass."""
    exact = df(x)
    return float(np.max(np.abs(exact - _central(f, x)) / np.maximum(1.0, np.abs(exact))))


PROBLEMS = {
    "quadratic": lambda: noisy_quadratic(np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, 0.2], [0.2, 0.5]])),
    "log_cosh": lambda: log_cosh_well(scale=1.5, noise=0.8, noise_modulation=0.5),
    "quartic": lambda: quartic_well(curvature=0.5),
    "double_well": lambda: double_well_2d(coupling=2.0),
    "regression": lambda: linear_regression(np.array([[1.0, 0.3], [0.3, 2.0]]), [1.0, -1.0], 0.5),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
@given(seed=st.integers(0, 2**32 - 1))
def test_derived_derivatives_match_finite_differences(name: str, seed: int) -> None:
    problem = PROBLEMS[name]()
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, size=(7, problem.dim))
    assert derivative_mismatch(problem.value, problem.gradient, x) < FD_TOL
    assert derivative_mismatch(problem.gradient, problem.hessian, x) < FD_TOL
    assert derivative_mismatch(problem.hessian, problem.third_derivative, x) < FD_TOL


def test_finite_difference_check_detects_a_hand_typed_wrong_gradient() -> None:
    problem = log_cosh_well()
    x = np.linspace(-2, 2, 9)[:, None]
    wrong = lambda y: np.tanh(1.1 * y)  # noqa: E731 - a plausible typo of d/dx log cosh(x) = tanh(x)
    assert derivative_mismatch(problem.value, wrong, x) > 100 * FD_TOL
    assert derivative_mismatch(problem.value, problem.gradient, x) < FD_TOL


def test_quadratic_fast_path_equals_symbolic_gradient() -> None:
    problem = PROBLEMS["quadratic"]()
    assert problem.has_constant_hessian and problem.has_constant_noise
    x = np.random.default_rng(0).normal(size=(5, 2))
    symbolic = np.array(
        [[float(e.subs(dict(zip(problem.symbols, row, strict=True)))) for e in problem.gradient_expr] for row in x]
    )
    np.testing.assert_allclose(problem.gradient(x), symbolic, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(problem.hessian(x)[0], [[2.0, 0.5], [0.5, 1.0]], rtol=1e-15)
    np.testing.assert_allclose(problem.noise_covariance(x)[0], [[1.0, 0.2], [0.2, 0.5]], rtol=1e-12)
    assert np.all(problem.third_derivative(x) == 0)


def test_noise_factor_reproduces_covariance_and_gradient_samples_have_it() -> None:
    problem = PROBLEMS["log_cosh"]()
    x = np.full((200_000, 1), 0.7)
    z = np.random.default_rng(1).standard_normal((x.shape[0], 1))
    g = problem.stochastic_gradient(x, z, sigma=2.0)
    mean_se = g.std() / np.sqrt(g.size)
    assert abs(g.mean() - np.tanh(1.5 * 0.7) / 1.5) < 4 * mean_se
    expected_var = 4.0 * problem.noise_covariance(x[:1])[0, 0, 0]
    var_se = expected_var * np.sqrt(2.0 / (g.size - 1))  # Gaussian sample variance
    assert abs(g.var(ddof=1) - expected_var) < 4 * var_se


def _sample_example_gradients(a_cov, w_star, s, w, n, rng):
    """Single-example least-squares gradients a(a^T w - y), y = a^T w* + eps: the model the problem claims."""
    a = rng.multivariate_normal(np.zeros(len(w)), a_cov, size=n)
    y = a @ w_star + s * rng.standard_normal(n)
    return a * (a @ w - y)[:, None]


def test_linear_regression_noise_covariance_matches_sampled_examples() -> None:
    a_cov, w_star, s = np.array([[1.0, 0.3], [0.3, 2.0]]), np.array([1.0, -1.0]), 0.5
    problem = linear_regression(a_cov, w_star, s)
    w = np.array([0.2, 0.4])
    samples = _sample_example_gradients(a_cov, w_star, s, w, 400_000, np.random.default_rng(2))
    mean_z = mean_z_scores(samples, problem.gradient(w[None])[0])
    assert np.all(np.abs(mean_z) < 4)
    claimed = problem.noise_covariance(w[None])[0]
    assert np.all(np.abs(covariance_z_scores(samples, claimed)) < 4)
    # the same check rejects the covariance without the Isserlis term A u u^T A
    u = w - w_star
    wrong = claimed - np.outer(a_cov @ u, a_cov @ u)
    assert np.max(np.abs(covariance_z_scores(samples, wrong))) > 10


def test_linear_regression_loss_is_population_risk() -> None:
    problem = linear_regression(np.array([[1.0, 0.3], [0.3, 2.0]]), [1.0, -1.0], 0.5)
    assert problem.value(np.array([[1.0, -1.0]]))[0] == pytest.approx(0.125, rel=1e-14)  # s^2 / 2 at w*
    assert problem.noise_dim == 3 and not problem.has_constant_noise


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: noisy_quadratic(np.array([[1.0, 2.0], [0.0, 1.0]])), "hessian .* symmetric"),
        (lambda: noisy_quadratic(np.eye(2), np.eye(3)), r"noise_covariance .* \(2, 2\)"),
        (lambda: noisy_quadratic(np.eye(2), -np.eye(2)), "positive semi-definite"),
        (lambda: noisy_quadratic(np.array([[np.nan]])), "finite"),
        (lambda: log_cosh_well(scale=0.0), r"scale .* \(0, inf\)"),
        (lambda: log_cosh_well(noise=-1.0), r"noise .* \[0, inf\)"),
        (lambda: double_well_2d(correlation=1.0), r"correlation .* \(-1, 1\)"),
        (lambda: linear_regression(np.eye(2), [1.0, 2.0, 3.0]), "w_star .* length 2"),
        (
            lambda: Problem("bad", (sp.Symbol("x"),), sp.Symbol("x") * sp.Symbol("k"), sp.ImmutableMatrix([[1]])),
            "depend only",
        ),
        (lambda: Problem("bad", (sp.Symbol("x"),), sp.Symbol("x") ** 2, sp.ImmutableMatrix([[1], [1]])), "1 rows"),
        (lambda: quartic_well().gradient(np.zeros(3)), r"shape \(n_paths, 1\)"),
        (lambda: quartic_well().stochastic_gradient(np.zeros((3, 1)), np.zeros((2, 1)), 1.0), r"z must have shape"),
    ],
)
def test_bad_input_is_rejected_with_a_named_parameter(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
