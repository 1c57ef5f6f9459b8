"""SDE limits derived from one-step moments match THEORY.md 3.3-3.6, 4.1-4.2 and 6.2 (issue 4, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from theory.problems import Problem, linear_regression, log_cosh_well, noisy_quadratic
from theory.sde import (
    SDE,
    IncrementModel,
    derive_coupled_limit,
    derive_limit_sde,
    derive_sme,
    linear_sde,
    sgd_increment,
    sgd_sde,
    sgdm_increment,
    sgdm_sde,
    svag_increment,
    svag_sde,
)

eta, sigma, c, ell = sp.symbols("eta sigma c ell", positive=True)


def generic_problem(dim: int) -> Problem:
    """A loss and a noise factor that are arbitrary smooth functions: the forms then hold for every problem."""
    xs = tuple(sp.symbols(f"x0:{dim}", real=True))
    factor = sp.ImmutableMatrix(dim, dim, lambda i, j: sp.Function(f"b{i}{j}")(*xs))
    return Problem(f"generic{dim}", xs, sp.Function("L")(*xs), factor)


def vanishes(matrix) -> bool:
    return all(sp.simplify(entry) == 0 for entry in sp.Matrix(matrix))


@pytest.mark.parametrize("dim", [1, 2])
def test_first_order_sme_of_sgd(dim: int) -> None:
    """THEORY.md 4.1: dX = -grad L dt + sqrt(eta) sigma Sigma^{1/2} dW, i.e. D = eta sigma^2 B B^T."""
    problem = generic_problem(dim)
    derived = derive_sme(sgd_increment(problem), order=1)
    assert vanishes(derived.drift + problem.gradient_expr)
    assert vanishes(derived.diffusion_covariance - eta * sigma**2 * problem.noise_factor * problem.noise_factor.T)


@pytest.mark.parametrize("dim", [1, 2])
def test_second_order_sme_of_sgd(dim: int) -> None:
    """THEORY.md 4.1: drift -grad(L + eta/4 |grad L|^2), diffusion unchanged."""
    problem = generic_problem(dim)
    derived = derive_sme(sgd_increment(problem), order=2)
    grad = problem.gradient_expr
    modified = problem.loss + eta / 4 * (grad.T * grad)[0, 0]
    target = -sp.Matrix([sp.diff(modified, s) for s in problem.symbols])
    assert vanishes(derived.drift - target)
    assert vanishes(derived.diffusion_covariance - derive_sme(sgd_increment(problem), 1).diffusion_covariance)


def test_second_order_sme_on_the_li_tai_e_quadratic() -> None:
    """THEORY.md 4.2: SME2 of L = x^T H x / 2 is dW = -(H + eta/2 H^2) W dt + ..."""
    hessian = np.array([[2.0, 0.5], [0.5, 1.0]])
    problem = noisy_quadratic(hessian)
    drift = derive_sme(sgd_increment(problem), order=2).drift.subs(eta, 0.1)
    jacobian = np.array(drift.jacobian(sp.Matrix(problem.symbols)).tolist(), dtype=float)
    np.testing.assert_allclose(jacobian, -(hessian + 0.05 * hessian @ hessian), rtol=1e-13)


def test_sgdm_alpha_one_gives_the_underdamped_sde() -> None:
    """THEORY.md 3.5: dX = -M dt, dM = c(grad L - M) dt + c sqrt(eta) sigma Sigma^{1/2} dW."""
    problem = generic_problem(2)
    derived = derive_limit_sde(sgdm_increment(problem, 1))
    m = sp.Matrix(derived.state[2:])
    assert vanishes(derived.drift - (-m).col_join(c * (problem.gradient_expr - m)))
    sigma_total = problem.noise_factor * problem.noise_factor.T
    expected = (
        sp.zeros(2, 2).row_join(sp.zeros(2, 2)).col_join(sp.zeros(2, 2).row_join(c**2 * eta * sigma**2 * sigma_total))
    )
    assert vanishes(derived.diffusion_covariance - expected)


@pytest.mark.parametrize("alpha", [sp.Rational(5, 4), sp.Rational(3, 2), 2])
def test_sgdm_alpha_above_one_freezes_the_momentum(alpha) -> None:
    """THEORY.md 3.6: over O(1/eta) steps the momentum does not move: dX = -M dt, dM = 0."""
    problem = generic_problem(1)
    derived = derive_limit_sde(sgdm_increment(problem, alpha))
    assert vanishes(derived.drift - sp.Matrix([-derived.state[1], 0]))
    assert vanishes(derived.diffusion_covariance)


@pytest.mark.parametrize("alpha", [0, sp.Rational(1, 4), sp.Rational(1, 2), sp.Rational(3, 4)])
def test_sgdm_alpha_below_one_has_the_sgd_limit_through_the_coupling(alpha) -> None:
    """Theorem 3.5 / THEORY.md 3.3, 8: momentum is fast, y = x - kappa m steps like SGD, gap ~ eta^((1-alpha)/2)."""
    problem = generic_problem(1)
    with pytest.raises(ValueError, match="no SDE limit"):
        derive_limit_sde(sgdm_increment(problem, alpha))
    coupled = derive_coupled_limit(problem, alpha)
    assert vanishes(coupled.coupled_step_residual)
    beta = 1 - c * eta**alpha
    assert sp.simplify(coupled.momentum_variance_factor - (1 - beta) / (1 + beta)) == 0
    assert coupled.gap_exponent == (1 - sp.nsimplify(alpha)) / 2
    sgd = derive_limit_sde(sgd_increment(problem))
    assert vanishes(coupled.sde.drift - sgd.drift) and vanishes(coupled.sde.drift + problem.gradient_expr)


def test_svag_limit_is_the_sgd_sde_for_every_ell() -> None:
    """THEORY.md 6.2: drift -grad L and covariance eta sigma^2 Sigma, independent of ell (Lemma: r1^2 + r2^2 = ell)."""
    problem = generic_problem(2)
    model = svag_increment(problem)
    mean, second = model.moments
    h = model.time_step
    assert vanishes(mean / h + problem.gradient_expr)
    per_time = (second - mean * mean.T) / h
    assert vanishes(per_time - eta * sigma**2 * problem.noise_factor * problem.noise_factor.T)
    derived = derive_limit_sde(model, variable=ell, at_infinity=True)
    assert vanishes(derived.drift + problem.gradient_expr)


def test_derivation_detects_a_wrong_update_rule() -> None:
    """PyTorch's un-normalized buffer m' = beta m + g read as eq. (3) has no alpha = 1 limit, and a
    noise scaled by sqrt(2) gives a diffusion different from THEORY.md 4.1: the checks above would fail."""
    problem = generic_problem(1)
    x, m, z = problem.symbols[0], sp.Symbol("m0", real=True), sp.Symbol("z0", real=True)
    g = problem.gradient_expr[0] + sigma * problem.noise_factor[0, 0] * z
    dm = g - c * eta * m  # forgot the (1 - beta) on the gradient
    wrong = IncrementModel("wrong SGDM", (x, m), sp.ImmutableMatrix([-eta * (m + dm), dm]), (z,), eta)
    with pytest.raises(ValueError, match="no SDE limit"):
        derive_limit_sde(wrong)
    loud = IncrementModel(
        "loud SGD", (x,), sp.ImmutableMatrix([-eta * (g.subs(z, sp.sqrt(2) * z))]), (z,), eta
    )  # noise sqrt(2) too large
    derived = derive_sme(loud)
    assert not vanishes(derived.diffusion_covariance - eta * sigma**2 * problem.noise_factor * problem.noise_factor.T)


def test_moments_require_an_affine_noise() -> None:
    x, z = sp.symbols("x z", real=True)
    with pytest.raises(ValueError, match="affine"):
        IncrementModel("bad", (x,), sp.ImmutableMatrix([-eta * z**2]), (z,), eta).moments  # noqa: B018


# --- numerical SDE objects -------------------------------------------------------------------------------


def test_numeric_sgd_sde_has_the_derived_coefficients() -> None:
    problem = log_cosh_well(scale=1.5, noise=0.8)
    sde = sgd_sde(problem, 0.04, sigma_value=3.0)
    y = np.linspace(-2, 2, 7)[:, None]
    np.testing.assert_allclose(sde.drift_at(y), -problem.gradient(y), rtol=1e-13)
    z = np.random.default_rng(0).standard_normal((7, 1))
    np.testing.assert_allclose(sde.apply_diffusion(y, z), -0.2 * 3.0 * problem.apply_noise_factor(y, z), rtol=1e-13)
    assert sde.linear_coefficients is None
    canonical = sgd_sde(problem, 0.04)
    assert canonical.parameters["sigma"] == pytest.approx(5.0)


def test_numeric_second_order_sme_and_linear_detection() -> None:
    hessian = np.array([[2.0, 0.5], [0.5, 1.0]])
    sde = sgd_sde(noisy_quadratic(hessian, np.diag([1.0, 0.5])), 0.1, sigma_value=1.0, order=2)
    a_mat, offset, g_mat = sde.linear_coefficients
    np.testing.assert_allclose(a_mat, -(hessian + 0.05 * hessian @ hessian), rtol=1e-13)
    assert not np.any(offset)
    np.testing.assert_allclose(g_mat @ g_mat.T, 0.1 * np.diag([1.0, 0.5]), rtol=1e-12)


def test_numeric_underdamped_sde() -> None:
    problem = log_cosh_well()
    sde = sgdm_sde(problem, 0.01, alpha=1.0, c=2.0)
    assert sde.dim == 2 and sde.observed_dim == 1
    y = np.array([[0.5, 0.1], [-1.0, 0.3]])
    expected = np.stack([-y[:, 1], 2.0 * (np.tanh(y[:, 0]) - y[:, 1])], axis=1)
    np.testing.assert_allclose(sde.drift_at(y), expected, rtol=1e-13)
    g = sde.diffusion_at(y)
    # c sqrt(eta) sigma B with sigma = eta^(-1/2): c B(x) on the momentum row, nothing on x
    np.testing.assert_allclose(g[:, 1, 0], 2.0 * np.sqrt(1 + 0.5 * np.tanh(y[:, 0]) ** 2), rtol=1e-13)
    assert np.all(g[:, 0, :] == 0)
    assert sgdm_sde(problem, 0.01, alpha=0.5).dim == 1  # SGD SDE below alpha = 1
    frozen = sgdm_sde(problem, 0.01, alpha=1.5)
    np.testing.assert_allclose(frozen.drift_at(y), np.stack([-y[:, 1], 0 * y[:, 1]], axis=1))


def test_svag_sde_equals_sgd_sde() -> None:
    problem = linear_regression(np.array([[1.0, 0.3], [0.3, 2.0]]), [1.0, -1.0], 0.5)
    a, b = svag_sde(problem, 0.1, ell_value=4.0), sgd_sde(problem, 0.1)
    y = np.random.default_rng(1).normal(size=(5, 2))
    np.testing.assert_allclose(a.drift_at(y), b.drift_at(y), rtol=1e-14)
    np.testing.assert_allclose(a.diffusion_at(y), b.diffusion_at(y), rtol=1e-14)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sgd_sde(log_cosh_well(), 0.0), r"eta .* \(0, inf\)"),
        (lambda: sgd_sde(log_cosh_well(), 0.1, sigma_value=-1.0), r"sigma .* in \[0, inf\)"),
        (lambda: sgd_sde(log_cosh_well(), 0.1, order=3), "order must be 1 or 2"),
        (lambda: sgdm_sde(log_cosh_well(), 0.1, alpha=-1.0), r"alpha .* must be a finite number in \[0, inf\)"),
        (lambda: sgdm_sde(log_cosh_well(), 0.1, alpha=1.0, c=0.0), r"c .* \(0, inf\)"),
        (lambda: svag_sde(log_cosh_well(), 0.1, ell_value=0.5), r"ell .* in \[1, inf\)"),
        (lambda: derive_coupled_limit(log_cosh_well(), 1.0), r"alpha must lie in \[0, 1\)"),
        (lambda: linear_sde(np.ones((2, 3)), 1.0), "square"),
        (lambda: linear_sde(-np.eye(2), np.ones((3, 1))), r"diffusion must be a finite \(2, r\)"),
        (lambda: linear_sde(-np.eye(2), 1.0, offset=[1.0]), "offset .* length 2"),
        (
            lambda: SDE("bad", (sp.Symbol("y"),), sp.ImmutableMatrix([[sp.Symbol("k")]]), sp.ImmutableMatrix([[1]])),
            "unsubstituted parameters",
        ),
    ],
)
def test_bad_parameters_are_rejected(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
