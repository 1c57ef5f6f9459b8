"""Numeric linear theory of SGD/SGDM on noisy quadratics (THEORY.md 5; oracles 13-15): closed forms vs solvers,
Hypothesis properties, Monte Carlo, bad input."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from theory import quadratic_symbolic as qs
from theory.quadratic import (
    FORM_STABILITY,
    check_quadratic,
    discrete_stationary_covariance,
    is_stable,
    rotate_to_eigenbasis,
    sde_stationary_covariance,
    spectral_radius,
    stability_threshold,
    stationary_covariance,
    stationary_moments,
    stationary_pair_factors,
    transition_matrix,
)

CLOSED_VS_SOLVER = 1e-10  # relative, max-norm: the bar for closed form vs generic Lyapunov solve


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else float(np.max(np.abs(a)))


# --- strategies ---------------------------------------------------------------------------------------------------


# Zero or at least 1e-3 in magnitude: products of tinier entries underflow to subnormal covariances, where no
# float64 algorithm keeps 1e-10 relative accuracy.
NOISE_FACTOR_ENTRIES = st.one_of(st.just(0.0), st.floats(1e-3, 2.0), st.floats(-2.0, -1e-3))


@st.composite
def quadratics(draw: st.DrawFn, max_dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Random SPD H (eigenvalues in [0.1, 10], random rotation) and PSD Sigma of random rank (non-commuting)."""
    d = draw(st.integers(1, max_dim))
    eigenvalues = draw(arrays(np.float64, d, elements=st.floats(0.1, 10.0)))
    raw = draw(arrays(np.float64, (d, d), elements=st.floats(-1.0, 1.0)))
    rotation, _ = np.linalg.qr(raw + 2.0 * np.eye(d))
    H = rotation @ np.diag(eigenvalues) @ rotation.T
    rank = draw(st.integers(1, d))
    factor = draw(arrays(np.float64, (d, rank), elements=NOISE_FACTOR_ENTRIES))
    ridge = draw(st.sampled_from([0.0, 1e-3]))  # 0: Sigma may be singular (rotation without a Cholesky factor)
    return (H + H.T) / 2, factor @ factor.T + ridge * np.eye(d)


@st.composite
def stable_problems(draw: st.DrawFn, max_dim: int = 6) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Quadratic plus (eta, beta) with eta * h_max between 5% and 90% of the heavy-ball threshold."""
    H, Sigma = draw(quadratics(max_dim))
    beta = draw(st.floats(0.0, 0.95))
    fraction = draw(st.floats(0.05, 0.9))
    h_max = float(np.max(np.linalg.eigvalsh(H)))
    method = "sgd" if beta == 0.0 else "heavy_ball"
    return H, Sigma, fraction * stability_threshold(beta, method) / h_max, beta


def _example_3d() -> tuple[np.ndarray, np.ndarray]:
    """Fixed 3-D non-commuting case: H with eigenvalues (0.5, 1.5, 4) in a rotated basis, correlated noise."""
    rng = np.random.default_rng(20240715)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    H = rotation @ np.diag([0.5, 1.5, 4.0]) @ rotation.T
    Sigma = np.array([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.8]])
    return (H + H.T) / 2, Sigma


# --- stability ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sgd", "heavy_ball", "nesterov"])
def test_stable_region_equals_spectral_radius_below_one(method: str) -> None:
    eta_h, beta = np.meshgrid(np.linspace(-1.0, 45.0, 461), np.linspace(0.0, 0.98, 50))
    radius = spectral_radius(eta_h, beta, method)
    threshold = stability_threshold(beta, method)
    away = (np.abs(eta_h - threshold) > 1e-6) & (np.abs(eta_h) > 1e-6)  # root modulus is rounding-exact off the edge
    assert np.array_equal(is_stable(eta_h, beta, method)[away], (radius < 1.0)[away])
    assert is_stable(eta_h, beta, method).any() and not is_stable(eta_h, beta, method).all()


def test_thresholds_at_beta_09() -> None:
    """Oracle 15 (numeric): heavy ball eta*lambda < 38, Nesterov < 95/7, GD < 2."""
    assert stability_threshold(0.9) == pytest.approx(38.0, rel=1e-14)
    assert stability_threshold(0.9, "nesterov") == pytest.approx(95 / 7, rel=1e-14)
    assert stability_threshold(0.9, "sgd") == 2.0
    assert spectral_radius(38.0 - 1e-9, 0.9) < 1.0 < spectral_radius(38.0 + 1e-6, 0.9)


@pytest.mark.parametrize("form", ["sgd", "normalized", "pytorch", "polyak", "nesterov", "pytorch_nesterov"])
def test_spectral_radius_is_that_of_the_transition_matrix(form: str) -> None:
    H, _ = _example_3d()
    eta, beta = 0.3, 0.0 if form == "sgd" else 0.7
    method = FORM_STABILITY[form]
    transition = transition_matrix(H, eta, beta, form).transition
    expected = np.max(spectral_radius(eta * np.linalg.eigvalsh(H), beta, method))
    assert np.max(np.abs(np.linalg.eigvals(transition))) == pytest.approx(expected, rel=1e-10)


def test_forms_share_the_stationary_x_covariance() -> None:
    """Eq. (3), PyTorch and Polyak are one method (oracle 9): same Cov x from the generic Stein solve."""
    H, Sigma = _example_3d()
    covariances = []
    for form in ("normalized", "pytorch", "polyak"):
        system = transition_matrix(H, 0.4, 0.6, form)
        covariances.append(discrete_stationary_covariance(system.transition, system.noise_input, Sigma)[:3, :3])
    assert _relative_gap(covariances[1], covariances[0]) < 1e-12
    assert _relative_gap(covariances[2], covariances[0]) < 1e-12
    nesterov = transition_matrix(H, 0.4, 0.6, "nesterov")
    other = discrete_stationary_covariance(nesterov.transition, nesterov.noise_input, Sigma)[:3, :3]
    assert _relative_gap(other, covariances[0]) > 1e-3  # Nesterov is a different method


# --- closed form vs solvers ------------------------------------------------------------------------------------------


@given(problem=stable_problems())
def test_closed_form_equals_lyapunov(problem: tuple) -> None:
    H, Sigma, eta, beta = problem
    closed = stationary_moments(H, Sigma, eta, beta)
    solved = stationary_moments(H, Sigma, eta, beta, method="lyapunov")
    for name in ("cov_x", "cov_m", "cov_xm"):
        assert _relative_gap(getattr(closed, name), getattr(solved, name)) < CLOSED_VS_SOLVER, name
    assert np.array_equal(stationary_covariance(H, Sigma, eta, beta), closed.cov_x)


@given(problem=stable_problems())
def test_stationary_covariance_is_a_symmetric_psd_fixed_point(problem: tuple) -> None:
    """Independent of any solver: P = A P A^T + B Sigma B^T holds, and the joint (x, m) covariance is PSD."""
    H, Sigma, eta, beta = problem
    moments = stationary_moments(H, Sigma, eta, beta)
    joint = np.block([[moments.cov_x, moments.cov_xm], [moments.cov_xm.T, moments.cov_m]])
    system = transition_matrix(H, eta, beta, "normalized")
    image = system.transition @ joint @ system.transition.T + system.noise_input @ Sigma @ system.noise_input.T
    assert _relative_gap(image, joint) < CLOSED_VS_SOLVER
    assert np.array_equal(moments.cov_x, moments.cov_x.T)
    scale = float(np.max(np.abs(joint)))
    assert np.min(np.linalg.eigvalsh(joint)) >= -1e-12 * scale


@given(problem=quadratics(), eta=st.floats(0.01, 2.0), order=st.sampled_from([1, 2]))
def test_sde_closed_form_equals_continuous_lyapunov(problem: tuple, eta: float, order: int) -> None:
    H, Sigma = problem
    closed = sde_stationary_covariance(H, Sigma, eta, order=order)
    solved = sde_stationary_covariance(H, Sigma, eta, order=order, method="lyapunov")
    assert _relative_gap(closed, solved) < CLOSED_VS_SOLVER
    drift = H if order == 1 else H + eta * H @ H / 2
    assert _relative_gap(drift @ closed + closed @ drift, eta * Sigma) < CLOSED_VS_SOLVER


def _commuting_approximation(H: np.ndarray, Sigma: np.ndarray, eta: float, beta: float) -> np.ndarray:
    """A plausible wrong closed form: the commuting formula with Sigma replaced by its eigenbasis diagonal."""
    basis = rotate_to_eigenbasis(H, Sigma)
    h = basis.eigenvalues
    diagonal = eta * (1 + beta) * np.diag(basis.rotated_noise) / (h * (2 * (1 + beta) - eta * h * (1 - beta)))
    return basis.to_original(np.diag(diagonal))


def test_solver_comparison_detects_a_wrong_closed_form() -> None:
    H, Sigma = _example_3d()
    solved = stationary_covariance(H, Sigma, 0.3, 0.6, method="lyapunov")
    assert _relative_gap(stationary_covariance(H, Sigma, 0.3, 0.6), solved) < CLOSED_VS_SOLVER
    assert _relative_gap(_commuting_approximation(H, Sigma, 0.3, 0.6), solved) > 1e-2
    commuting_sigma = rotate_to_eigenbasis(H, Sigma).to_original(np.diag([1.0, 0.5, 0.8]))
    exact_when_commuting = stationary_covariance(H, commuting_sigma, 0.3, 0.6, method="lyapunov")
    assert _relative_gap(_commuting_approximation(H, commuting_sigma, 0.3, 0.6), exact_when_commuting) < 1e-12


# --- small eta: SGDM / SGD ratio --------------------------------------------------------------------------------------


@cache
def _ratio_coefficients():
    series = qs.covariance_ratio_series(3).removeO()
    return tuple(sp.lambdify((qs.h_i, qs.h_j, qs.beta), series.coeff(qs.eta, n)) for n in (1, 2, 3))


@settings(max_examples=15)
@given(problem=quadratics(), beta=st.floats(0.0, 0.95), epsilon=st.sampled_from([1e-3, 1e-4]))
def test_sgdm_to_sgd_ratio_tends_to_one_with_the_derived_slope(problem: tuple, beta: float, epsilon: float) -> None:
    """In the eigenbasis, E_SGDM[x_i x_j] / E_SGD[x_i x_j] = 1 + c1 eta + c2 eta^2 + O(eta^3) (c_n derived)."""
    H, Sigma = problem
    basis = rotate_to_eigenbasis(H, Sigma)
    h = basis.eigenvalues
    eta = epsilon / float(np.max(h))
    V = basis.eigenvectors
    sgdm = V.T @ stationary_covariance(H, Sigma, eta, beta) @ V
    sgd = V.T @ stationary_covariance(H, Sigma, eta, 0.0) @ V
    S = basis.rotated_noise
    keep = np.abs(S) > 1e-2 * np.max(np.abs(S))  # ratios of tiny entries carry rotation rounding only
    c1, c2, c3 = (np.broadcast_to(f(h[:, None], h[None, :], beta), S.shape) for f in _ratio_coefficients())
    remainder = (sgdm / np.where(keep, sgd, 1.0) - 1.0 - c1 * eta)[keep]
    bound = 2.0 * (np.abs(c2) * eta**2 + np.abs(c3) * eta**3)[keep] + 1e-10
    assert np.all(np.abs(remainder) <= bound)


def test_ratio_check_detects_a_wrong_slope() -> None:
    """Using the 1-D slope -beta h_i / (1 + beta) for every pair leaves an O(eta) remainder off the diagonal."""
    H, Sigma = _example_3d()
    basis = rotate_to_eigenbasis(H, Sigma)
    h, V, beta = basis.eigenvalues, basis.eigenvectors, 0.6
    eta = 1e-3 / h.max()
    ratio = (V.T @ stationary_covariance(H, Sigma, eta, beta) @ V) / (V.T @ stationary_covariance(H, Sigma, eta) @ V)
    c1, c2, c3 = (f(h[:, None], h[None, :], beta) for f in _ratio_coefficients())
    bound = 2.0 * (np.abs(c2) * eta**2 + np.abs(c3) * eta**3) + 1e-10
    assert np.all(np.abs(ratio - 1 - c1 * eta) <= bound)
    wrong_c1 = -beta * h[:, None] / (1 + beta) + 0 * h[None, :]
    assert np.any(np.abs(ratio - 1 - wrong_c1 * eta) > 10 * bound)


# --- Monte Carlo ------------------------------------------------------------------------------------------------------

MC_Z = 4.5  # tolerance in standard errors; 6 entries, P(max |N(0,1)| > 4.5) ~ 4e-5 (fixed seed anyway)
MC_ETA, MC_BETA = 0.3, 0.6


def _simulate_sgdm_second_moment(
    H: np.ndarray, Sigma: np.ndarray, eta: float, beta: float, paths: int, steps: int, seed: int, chunk: int = 200_000
) -> np.ndarray:
    """E[x_K x_K^T] over independent eq. (3) paths from x_0 = m_0 = 0 (vectorised over paths)."""
    rng = np.random.default_rng(seed)
    noise_factor = np.linalg.cholesky(Sigma).T
    total = np.zeros_like(H)
    for start in range(0, paths, chunk):
        n = min(chunk, paths - start)
        x = np.zeros((n, H.shape[0]))
        m = np.zeros_like(x)
        for _ in range(steps):
            # einsum, not BLAS: a (n, 3) @ (3, 3) product gains nothing from threads and suffers from contention
            gradient = np.einsum("ni,ij->nj", x, H) + np.einsum("ni,ij->nj", rng.standard_normal(x.shape), noise_factor)
            m = beta * m + (1.0 - beta) * gradient
            x = x - eta * m
        total += x.T @ x
    return total / paths


def _z_scores(estimate: np.ndarray, predicted: np.ndarray, paths: int) -> np.ndarray:
    """(estimate - predicted) / SE per entry; Gaussian x: Var(x_i x_j) = C_ii C_jj + C_ij^2."""
    variance = np.outer(np.diag(predicted), np.diag(predicted)) + predicted**2
    return np.triu((estimate - predicted) / np.sqrt(variance / paths))


def _monte_carlo_check(paths: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    H, Sigma = _example_3d()
    predicted = stationary_covariance(H, Sigma, MC_ETA, MC_BETA)
    radius = float(np.max(spectral_radius(MC_ETA * np.linalg.eigvalsh(H), MC_BETA)))
    steps = int(np.ceil(np.log(1e-9) / np.log(radius)))  # transient bias ~ radius^(2K) << 1 SE
    estimate = _simulate_sgdm_second_moment(H, Sigma, MC_ETA, MC_BETA, paths, steps, seed)
    return estimate, predicted


def test_monte_carlo_sgdm_matches_stationary_covariance() -> None:
    """3-D non-commuting SGDM, 300k paths: every entry within 4.5 SE; wrong predictions are rejected."""
    paths = 300_000
    estimate, predicted = _monte_carlo_check(paths, seed=7)
    assert np.max(np.abs(_z_scores(estimate, predicted, paths))) < MC_Z
    H, Sigma = _example_3d()
    for wrong in (
        sde_stationary_covariance(H, Sigma, MC_ETA),  # the SDE: right at O(eta) only
        stationary_covariance(H, Sigma, MC_ETA, 0.0),  # SGD at the same eta
        _commuting_approximation(H, Sigma, MC_ETA, MC_BETA),  # ignores the off-diagonal rotated noise
    ):
        assert np.max(np.abs(_z_scores(estimate, wrong, paths))) > 3 * MC_Z


@pytest.mark.slow
def test_monte_carlo_sgdm_matches_stationary_covariance_tight() -> None:
    """Same check with 4M paths: SE 3.7x smaller, so the absolute tolerance is 3.7x tighter."""
    paths = 4_000_000
    estimate, predicted = _monte_carlo_check(paths, seed=11)
    assert np.max(np.abs(_z_scores(estimate, predicted, paths))) < MC_Z


# --- bad input ------------------------------------------------------------------------------------------------------


GOOD_H, GOOD_SIGMA = np.diag([1.0, 2.0]), np.eye(2)


@pytest.mark.parametrize(
    ("H", "Sigma", "message"),
    [
        ([[1.0, 0.5], [0.0, 1.0]], GOOD_SIGMA, r"H must be symmetric"),
        (GOOD_H, [[1.0, 0.0], [0.5, 1.0]], r"Sigma must be symmetric"),
        (GOOD_H, [[1.0, 2.0], [2.0, 1.0]], r"Sigma must be positive semi-definite .* smallest eigenvalue is -1"),
        ([[np.nan, 0.0], [0.0, 1.0]], GOOD_SIGMA, r"H must be finite"),
        (GOOD_H, [[1.0, 0.0], [0.0, np.inf]], r"Sigma must be finite"),
        # found by tests/test_fuzz.py: (Sigma + Sigma^T) / 2 overflowed to inf with a RuntimeWarning
        (GOOD_H, [[8.98846567431158e307]], r"Sigma has an entry of magnitude 8.99e\+307; entries must be at most"),
        ([[1.0, -1e300], [1e300, 1.0]], GOOD_SIGMA, r"H has an entry of magnitude 1e\+300"),
        ([[1e150, -1e150], [1e150, 1.0]], GOOD_SIGMA, r"H must be symmetric; max \|H - H\^T\| = 2 x max"),
        (GOOD_H, np.eye(3), r"same shape"),
        (np.ones(3), np.eye(3), r"H must be a square \(d, d\) matrix"),
        (np.ones((2, 3)), np.eye(2), r"H must be a square"),
        (np.zeros((0, 0)), np.zeros((0, 0)), r"d >= 1"),
    ],
)
def test_bad_matrices_rejected(H: object, Sigma: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_quadratic(H, Sigma)
    with pytest.raises(ValueError, match=message):
        stationary_covariance(H, Sigma, 0.1, 0.5)
    with pytest.raises(ValueError, match=message):
        sde_stationary_covariance(H, Sigma, 0.1)


def test_unstable_learning_rate_names_threshold_and_eigenvalue() -> None:
    with pytest.raises(ValueError, match=r"eta\*h = 2\.4 for eigenvalue h = 12 exceeds the SGD stability threshold 2"):
        stationary_covariance([[12.0]], [[1.0]], 0.2)
    with pytest.raises(ValueError, match=r"eigenvalue h = 4 exceeds the heavy-ball SGDM stability threshold 6 "):
        stationary_covariance(np.diag([1.0, 4.0]), np.eye(2), 1.6, 0.5)  # eta*h = 6.4 > 2(1+b)/(1-b) = 6
    stationary_covariance(np.diag([1.0, 4.0]), np.eye(2), 1.4, 0.5)  # 5.6 < 6: fine
    with pytest.raises(ValueError, match=r"positive definite .* eigenvalue h = -1"):
        stationary_covariance(np.diag([-1.0, 4.0]), np.eye(2), 0.1, 0.5)
    with pytest.raises(ValueError, match=r"positive definite .* eigenvalue h = 0"):
        sde_stationary_covariance(np.diag([0.0, 4.0]), np.eye(2), 0.1)


@pytest.mark.parametrize(
    ("eta", "beta", "message"),
    [(0.0, 0.5, r"eta \(effective learning rate\)"), (np.nan, 0.5, "eta"), (0.1, 1.0, r"beta must lie in \[0, 1\)")],
)
def test_bad_hyper_parameters_rejected(eta: float, beta: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stationary_covariance(GOOD_H, GOOD_SIGMA, eta, beta)


def test_bad_options_rejected() -> None:
    with pytest.raises(ValueError, match="method must be"):
        stationary_covariance(GOOD_H, GOOD_SIGMA, 0.1, method="bartels")
    with pytest.raises(ValueError, match="order must be 1"):
        sde_stationary_covariance(GOOD_H, GOOD_SIGMA, 0.1, order=3)
    with pytest.raises(ValueError, match="method must be one of"):
        stability_threshold(0.5, "adam")
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\)"):
        stability_threshold(np.array([0.5, 1.2]))
    with pytest.raises(ValueError, match="form must be one of"):
        transition_matrix(GOOD_H, 0.1, 0.5, "adam")


def test_rotation_with_and_without_the_cholesky_factor_agree() -> None:
    H, Sigma = _example_3d()
    with_factor = rotate_to_eigenbasis(H, Sigma, np.linalg.cholesky(Sigma)).rotated_noise
    general = rotate_to_eigenbasis(H, Sigma).rotated_noise
    assert _relative_gap(with_factor, general) < 1e-14
    assert np.array_equal(with_factor, with_factor.T)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_fast_closed_form_is_the_pair_formula(beta: float) -> None:
    """The public function's expanded denominator a_i + a_j - c h_i h_j is stationary_pair_factors' f_xx (whose
    symbolic check is in test_quadratic_symbolic): on a diagonal H the rotation is the identity up to signs."""
    h = np.array([0.3, 1.0, 2.5, 4.0])
    raw = np.random.default_rng(1).normal(size=(4, 4))
    Sigma = raw @ raw.T
    eta = 0.9 * float(stability_threshold(beta, "sgd" if beta == 0 else "heavy_ball")) / h.max()
    f_xx, _, _ = stationary_pair_factors(h[:, None], h[None, :], eta, beta)
    np.testing.assert_allclose(stationary_covariance(np.diag(h), Sigma, eta, beta), Sigma * f_xx, rtol=1e-13)


def test_scalars_are_one_by_one_and_tiny_asymmetry_is_tolerated() -> None:
    assert stationary_covariance(2.0, 3.0, 0.1).shape == (1, 1)
    H = np.array([[2.0, 0.5], [0.5 + 1e-13, 1.0]])
    symmetrised = stationary_covariance((H + H.T) / 2, GOOD_SIGMA, 0.1)
    assert np.array_equal(stationary_covariance(H, GOOD_SIGMA, 0.1), symmetrised)
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])  # PSD, rank 1: accepted, no Cholesky factor
    closed = stationary_covariance(GOOD_H, singular, 0.1, 0.5)
    assert _relative_gap(closed, stationary_covariance(GOOD_H, singular, 0.1, 0.5, method="lyapunov")) < 1e-12
