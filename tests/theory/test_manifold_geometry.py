"""Geometry near a manifold of minimisers (THEORY.md 7.1-7.3, oracle 21): projections, d2Phi, noise split, Ito form."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.manifold import (
    ManifoldModel,
    SymbolicManifoldModel,
    check_manifold_point,
    gradient_flow_jacobian,
    gradient_flow_projection,
    hessian_pseudo_inverse,
    ito_projection,
    lambdify_model,
    lyapunov_weighted,
    newton_retraction,
    noise_decomposition,
    normal_projection,
    projection_hessian,
    slow_sde_coefficients,
    tangent_projection,
    third_derivative_contraction,
)
from theory.manifold_models import (
    diagonal_network_data,
    diagonal_network_model,
    isotropic_noise_toy_model,
    label_noise_toy_model,
    toy_manifold_point,
    toy_projection,
)

#: Relative accuracy of the finite-difference d2Phi: O(h^2) truncation with h = 1e-4 plus the variational ODE's
#: error (settle tolerance 1e-11) divided by 2h; measured 1e-9 on the toy, 1e-8 on the diagonal network.
FD_RTOL = 1e-6


def _random_manifold_matrices(seed: int, d: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A PSD Hessian with an m-dimensional kernel, its eigenvectors, and a random PSD covariance."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eigenvalues = np.concatenate([np.zeros(m), rng.uniform(0.1, 10.0, d - m)])
    hessian = (basis * eigenvalues) @ basis.T
    a = rng.standard_normal((d, d))
    return hessian, basis, a @ a.T


def _diagonal_network_point(model_args: tuple[int, int, int], seed: int) -> np.ndarray:
    """A point of Gamma = {X (u * w) = y}: random u, then w moved onto the affine set by least-norm correction."""
    design, targets = diagonal_network_data(*model_args)
    p = design.shape[1]
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.5, 1.5, p) * rng.choice([-1.0, 1.0], p)
    w = rng.uniform(-1.0, 1.0, p)
    a = design * u
    w = w - np.linalg.pinv(a) @ (a @ w - targets)
    return np.concatenate([u, w])


def _toy_point(seed: int) -> np.ndarray:
    """A point (+-)(e^s, e^-s) of the toy's Gamma, s uniform in [-1.5, 1.5], either branch."""
    rng = np.random.default_rng(seed)
    return toy_manifold_point(np.array(rng.uniform(-1.5, 1.5)), int(rng.choice([-1, 1])))


MODELS_ON_GAMMA = {
    "label_noise_toy": (label_noise_toy_model, _toy_point),
    "isotropic_noise_toy": (isotropic_noise_toy_model, _toy_point),
    "diagonal_network": (diagonal_network_model, lambda seed: _diagonal_network_point((3, 5, 0), seed)),
}


# --- pure matrix identities (oracle 21) -------------------------------------------------------------------------


@given(seed=st.integers(0, 10_000), d=st.integers(2, 6), data=st.data())
def test_sigma_diamond_hat_solves_its_lyapunov_equation(seed: int, d: int, data) -> None:
    """Oracle 21: H S + S H = Sigma_diamond, tangent-tangent block 0, and Sigma or Sigma_diamond give the same S."""
    m = data.draw(st.integers(0, d - 1))
    hessian, basis, cov = _random_manifold_matrices(seed, d, m)
    split = noise_decomposition(cov, hessian, m)
    hat = split.diamond_hat
    scale = np.linalg.norm(cov)
    np.testing.assert_allclose(hessian @ hat + hat @ hessian, split.diamond, atol=1e-10 * scale)
    kernel = basis[:, :m]
    np.testing.assert_allclose(kernel.T @ hat @ kernel, 0.0, atol=1e-12 * scale)
    np.testing.assert_allclose(lyapunov_weighted(cov, hessian, m), hat, atol=1e-12 * scale)
    np.testing.assert_allclose(split.parallel + split.diamond, cov, atol=1e-12 * scale)
    tangent = kernel @ kernel.T
    np.testing.assert_allclose(split.parallel, tangent @ cov @ tangent, atol=1e-12 * scale)


def test_a_wrong_lyapunov_weighting_is_detected() -> None:
    """Negative control: weights 1/(2 lambda_i) instead of 1/(lambda_i + lambda_j) break H S + S H = Sigma_diamond."""
    hessian, basis, cov = _random_manifold_matrices(3, 4, 1)
    eigenvalues = np.linalg.eigvalsh(hessian)
    in_basis = basis.T @ cov @ basis
    wrong = np.zeros_like(in_basis)
    wrong[1:, 1:] = in_basis[1:, 1:] / (2 * eigenvalues[1:, None])
    wrong = basis @ wrong @ basis.T
    diamond = noise_decomposition(cov, hessian, 1).diamond
    assert np.linalg.norm(hessian @ wrong + wrong @ hessian - diamond) > 1e-2 * np.linalg.norm(cov)


@given(seed=st.integers(0, 10_000), d=st.integers(2, 6), c=st.floats(0.1, 5.0), data=st.data())
def test_label_noise_identities(seed: int, d: int, c: float, data) -> None:
    """Oracle 21: Sigma = c H gives Sigma_parallel = 0 and hat Sigma_diamond = c/2 P_perp."""
    m = data.draw(st.integers(1, d - 1))
    hessian, _, _ = _random_manifold_matrices(seed, d, m)
    split = noise_decomposition(c * hessian, hessian, m)
    np.testing.assert_allclose(split.parallel, 0.0, atol=1e-12 * c * np.linalg.norm(hessian))
    np.testing.assert_allclose(split.diamond_hat, c / 2 * normal_projection(hessian, m), atol=1e-12 * c)


@given(seed=st.integers(0, 10_000), d=st.integers(2, 6), data=st.data())
def test_projections_and_pseudo_inverse(seed: int, d: int, data) -> None:
    m = data.draw(st.integers(0, d - 1))
    hessian, basis, _ = _random_manifold_matrices(seed, d, m)
    tangent, pinv = tangent_projection(hessian, m), hessian_pseudo_inverse(hessian, m)
    np.testing.assert_allclose(tangent, basis[:, :m] @ basis[:, :m].T, atol=1e-12)
    np.testing.assert_allclose(pinv, np.linalg.pinv(hessian, rtol=1e-8), atol=1e-9)
    np.testing.assert_allclose(pinv @ hessian, normal_projection(hessian, m), atol=1e-10)


def test_third_derivative_contraction_is_the_gradient_of_the_frozen_inner_product() -> None:
    """nabla^3 L[M] = grad_x <nabla^2 L(x), M> (THEORY.md 7.2), against SymPy on the isotropic toy."""
    model = isotropic_noise_toy_model()
    u, v = model.symbolic.variables
    matrix = np.array([[0.7, -0.2], [-0.2, 1.3]])
    inner = sum(matrix[i, j] * sp.hessian(model.symbolic.loss, (u, v))[i, j] for i in range(2) for j in range(2))
    x = np.array([0.8, -1.7])
    expected = [float(sp.diff(inner, var).subs({u: x[0], v: x[1]})) for var in (u, v)]
    np.testing.assert_allclose(third_derivative_contraction(model.third(x), matrix), expected, rtol=1e-13)


# --- dPhi and d2Phi on Gamma ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS_ON_GAMMA))
@settings(max_examples=8)
@given(seed=st.integers(0, 10_000))
def test_dphi_on_gamma_is_the_orthogonal_tangent_projection(name: str, seed: int) -> None:
    """THEORY.md 7.1: dPhi = P_T on Gamma: symmetric, idempotent, rank dim Gamma, kills the range of H."""
    model_fn, point = MODELS_ON_GAMMA[name]
    model = model_fn()
    zeta = check_manifold_point(model, point(seed))
    hessian = model.hessian(zeta)
    tangent = tangent_projection(hessian, model.dim_manifold)
    np.testing.assert_allclose(tangent, tangent.T, atol=1e-12)
    np.testing.assert_allclose(tangent @ tangent, tangent, atol=1e-12)
    assert np.linalg.matrix_rank(tangent, tol=1e-8) == model.dim_manifold
    np.testing.assert_allclose(tangent @ hessian, 0.0, atol=1e-10 * np.linalg.norm(hessian))


@pytest.mark.parametrize("name", ["isotropic_noise_toy", "diagonal_network"])
def test_variational_jacobian_on_gamma_is_p_t(name: str) -> None:
    """gradient_flow_jacobian (an independent ODE route to dPhi) returns P_T at a point of Gamma."""
    model_fn, point = MODELS_ON_GAMMA[name]
    model = model_fn() if name != "diagonal_network" else diagonal_network_model(2, 3, 0)
    zeta = point(4) if name != "diagonal_network" else _diagonal_network_point((2, 3, 0), 4)
    expected = tangent_projection(model.hessian(zeta), model.dim_manifold)
    np.testing.assert_allclose(gradient_flow_jacobian(model, zeta), expected, atol=1e-9)


def _d2phi_tensor_by_finite_differences(model: ManifoldModel, zeta: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """D[k, :, j] = d2Phi[e_k, e_j], central differences of dPhi (variational ODE) at zeta +- h e_k."""
    d = model.dim
    tensor = np.zeros((d, d, d))
    for k in range(d):
        step = np.zeros(d)
        step[k] = h
        tensor[k] = (gradient_flow_jacobian(model, zeta + step) - gradient_flow_jacobian(model, zeta - step)) / (2 * h)
    return tensor


def _d2phi_tensor(model: ManifoldModel, zeta: np.ndarray, formula=projection_hessian) -> np.ndarray:
    """The same tensor from the closed formula applied to the symmetrised unit matrices (e_k e_j' + e_j e_k')/2."""
    d = model.dim
    hessian, third = model.hessian(zeta), model.third(zeta)
    units = np.zeros((d, d, d, d))
    for k in range(d):
        for j in range(d):
            units[k, j, k, j] += 0.5
            units[k, j, j, k] += 0.5
    return np.moveaxis(formula(hessian, third, units, model.dim_manifold), -1, 1)


def _d2phi_without_normal_term(hessian, third, matrix, m):
    """Deliberately wrong: drops -H^+ nabla^3 L[P_T M P_T] (the term that keeps zeta on Gamma)."""
    tangent = tangent_projection(hessian, m)
    return -(tangent @ third_derivative_contraction(third, lyapunov_weighted(matrix, hessian, m))[..., None])[..., 0]


def _d2phi_with_sigma_instead_of_hat(hessian, third, matrix, m):
    """Deliberately wrong: P_T nabla^3 L[M] in place of P_T nabla^3 L[hat M]."""
    tangent, pinv = tangent_projection(hessian, m), hessian_pseudo_inverse(hessian, m)
    parallel = tangent @ matrix @ tangent
    normal = (pinv @ third_derivative_contraction(third, parallel)[..., None])[..., 0]
    return -normal - (tangent @ third_derivative_contraction(third, matrix)[..., None])[..., 0]


@pytest.mark.parametrize(
    ("model_fn", "zeta_fn"),
    [
        (isotropic_noise_toy_model, lambda: toy_manifold_point(np.array(0.7))),
        (lambda: diagonal_network_model(2, 3, 0), lambda: _diagonal_network_point((2, 3, 0), 11)),
    ],
    ids=["toy", "diagonal_network_n2_p3"],
)
def test_d2phi_formula_matches_finite_differences_of_dphi(model_fn, zeta_fn) -> None:
    """THEORY.md 7.3: d2Phi[M] = -H^+ nabla^3 L[P_T M P_T] - P_T nabla^3 L[hat M], against FD of the variational dPhi;
    the two deliberately wrong formulas are rejected by the same comparison.
    """
    model = model_fn()
    zeta = check_manifold_point(model, zeta_fn())
    by_fd = _d2phi_tensor_by_finite_differences(model, zeta)
    scale = np.max(np.abs(by_fd))
    assert scale > 0.1  # the manifold is curved: the check is not vacuous
    np.testing.assert_allclose(_d2phi_tensor(model, zeta), by_fd, atol=FD_RTOL * scale)
    for wrong in (_d2phi_without_normal_term, _d2phi_with_sigma_instead_of_hat):
        assert np.max(np.abs(_d2phi_tensor(model, zeta, wrong) - by_fd)) > 1e3 * FD_RTOL * scale


@settings(max_examples=10)
@given(s=st.floats(-1.5, 1.5), branch=st.sampled_from([1, -1]))
def test_d2phi_matches_second_differences_of_the_closed_form_toy_projection(s: float, branch: int) -> None:
    model = label_noise_toy_model()
    zeta = toy_manifold_point(np.array(s), branch)
    h = 1e-4
    steps = h * np.eye(2)
    by_fd = np.zeros((2, 2, 2))
    for k in range(2):
        for j in range(2):
            by_fd[k, :, j] = (
                toy_projection(zeta + steps[k] + steps[j])
                - toy_projection(zeta + steps[k] - steps[j])
                - toy_projection(zeta - steps[k] + steps[j])
                + toy_projection(zeta - steps[k] - steps[j])
            ) / (4 * h * h)
    np.testing.assert_allclose(_d2phi_tensor(model, zeta), by_fd, atol=1e-5 * max(1.0, np.max(np.abs(by_fd))))


# --- the slow SDE in its three forms ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS_ON_GAMMA))
@settings(max_examples=8)
@given(seed=st.integers(0, 10_000), sigma=st.floats(0.1, 3.0))
def test_explicit_slow_sde_equals_ito_projected_and_katzenberger_forms(name: str, seed: int, sigma: float) -> None:
    """THEORY.md 7.3: explicit drift = P_zeta(sigma Sigma_par^1/2 dW - sigma^2/2 nabla^3 L[hat Sigma] dt) with the Ito
    term = Katzenberger's dPhi sigma Sigma^1/2 dW + sigma^2/2 d2Phi[Sigma] dt; diffusions agree in law (A A').
    """
    model_fn, point = MODELS_ON_GAMMA[name]
    model = model_fn()
    zeta = point(seed)
    hessian, third, cov = model.hessian(zeta), model.third(zeta), model.noise_cov(zeta)
    m = model.dim_manifold
    coefficients = slow_sde_coefficients(model, zeta, sigma)
    split = noise_decomposition(cov, hessian, m)
    gu_diffusion, gu_drift = ito_projection(
        hessian,
        third,
        coefficients.diffusion,
        -(sigma**2) / 2 * third_derivative_contraction(third, split.diamond_hat),
        m,
    )
    kz_diffusion, kz_drift = ito_projection(hessian, third, sigma * _sqrt(cov), np.zeros(model.dim), m)
    scale = sigma**2 * (1.0 + np.max(np.abs(coefficients.drift)))
    np.testing.assert_allclose(gu_drift, coefficients.drift, atol=1e-10 * scale)
    np.testing.assert_allclose(kz_drift, coefficients.drift, atol=1e-10 * scale)
    law = coefficients.diffusion @ coefficients.diffusion.T
    np.testing.assert_allclose(gu_diffusion @ gu_diffusion.T, law, atol=1e-10 * sigma**2 * np.linalg.norm(cov))
    np.testing.assert_allclose(kz_diffusion @ kz_diffusion.T, law, atol=1e-10 * sigma**2 * np.linalg.norm(cov))


def _sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def test_plain_projection_without_ito_term_loses_the_normal_drift() -> None:
    """THEORY.md 11: reading P_zeta as dPhi alone drops -sigma^2/2 H^+ nabla^3 L[Sigma_par]; with isotropic noise on
    the curved toy manifold that term is not small, so the check above would catch the mistake.
    """
    model = isotropic_noise_toy_model()
    zeta = toy_manifold_point(np.array(0.4))
    coefficients = slow_sde_coefficients(model, zeta, 1.0)
    tangent = tangent_projection(model.hessian(zeta), 1)
    split = noise_decomposition(model.noise_cov(zeta), model.hessian(zeta), 1)
    plain = -0.5 * tangent @ third_derivative_contraction(model.third(zeta), split.diamond_hat)
    assert np.linalg.norm(plain - coefficients.drift) > 0.1 * np.linalg.norm(coefficients.drift)
    np.testing.assert_allclose(coefficients.drift - plain, coefficients.normal_drift, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS_ON_GAMMA))
@settings(max_examples=8)
@given(seed=st.integers(0, 10_000), sigma=st.floats(0.1, 3.0))
def test_slow_sde_leaves_gamma_invariant(name: str, seed: int, sigma: float) -> None:
    """Ito's formula on the constraints grad L = 0: H b + (1/2) nabla^3 L[A A'] = 0 on Gamma, so the generator keeps
    the SDE on Gamma; this is what the normal drift term is for.
    """
    model_fn, point = MODELS_ON_GAMMA[name]
    model = model_fn()
    zeta = point(seed)
    c = slow_sde_coefficients(model, zeta, sigma)
    generator = model.hessian(zeta) @ c.drift + 0.5 * third_derivative_contraction(
        model.third(zeta), c.diffusion @ c.diffusion.T
    )
    np.testing.assert_allclose(generator, 0.0, atol=1e-10 * sigma**2 * (1.0 + np.linalg.norm(model.third(zeta))))


@pytest.mark.parametrize("name", sorted(MODELS_ON_GAMMA))
def test_tangent_third_derivative_of_tangent_pairs_vanishes(name: str) -> None:
    """THEORY.md 7.4: P_T nabla^3 L[P_T] = 0 on Gamma (used by the label-noise reduction)."""
    model_fn, point = MODELS_ON_GAMMA[name]
    model = model_fn()
    zeta = point(5)
    tangent = tangent_projection(model.hessian(zeta), model.dim_manifold)
    value = tangent @ third_derivative_contraction(model.third(zeta), tangent)
    np.testing.assert_allclose(value, 0.0, atol=1e-10 * np.linalg.norm(model.third(zeta)))


# --- the numeric path -------------------------------------------------------------------------------------------


def _numeric_isotropic_toy(third: bool) -> ManifoldModel:
    """The isotropic toy written directly in NumPy (no SymPy), optionally without the third derivative."""

    def gradient(x):
        u, v = x[..., 0], x[..., 1]
        return ((u * v - 1.0)[..., None]) * np.stack([v, u], axis=-1)

    def hessian(x):
        u, v = x[..., 0], x[..., 1]
        off = 2 * u * v - 1.0
        return np.stack([np.stack([v * v, off], -1), np.stack([off, u * u], -1)], -2)

    def third_derivative(x):
        u, v = x[..., 0], x[..., 1]
        tensor = np.zeros((*x.shape[:-1], 2, 2, 2))
        tensor[..., 0, 0, 1] = tensor[..., 0, 1, 0] = tensor[..., 1, 0, 0] = 2 * v
        tensor[..., 1, 1, 0] = tensor[..., 1, 0, 1] = tensor[..., 0, 1, 1] = 2 * u
        return tensor

    return ManifoldModel(
        name="numeric_isotropic_toy",
        dim=2,
        dim_manifold=1,
        gradient=gradient,
        hessian=hessian,
        third_derivative=third_derivative if third else None,
        noise_cov=lambda x: np.broadcast_to(np.eye(2), (*np.shape(x)[:-1], 2, 2)),
    )


@pytest.mark.parametrize(("third", "rtol"), [(True, 1e-12), (False, 1e-8)], ids=["exact_third", "fd_third"])
def test_numeric_model_matches_the_symbolic_one(third: bool, rtol: float) -> None:
    """A model given only as NumPy callables (with or without nabla^3 L) gives the SymPy model's coefficients."""
    numeric, symbolic = _numeric_isotropic_toy(third), isotropic_noise_toy_model()
    zeta = toy_manifold_point(np.linspace(-1.2, 1.2, 7))
    a, b = slow_sde_coefficients(numeric, zeta, 0.7), slow_sde_coefficients(symbolic, zeta, 0.7)
    np.testing.assert_allclose(a.drift, b.drift, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a.diffusion, b.diffusion, rtol=rtol, atol=rtol)
    x0 = np.array([1.7, 0.2])
    np.testing.assert_allclose(gradient_flow_projection(numeric, x0), toy_projection(x0), atol=1e-9)


def test_newton_retraction_lands_on_gamma_with_derivative_p_t() -> None:
    model = diagonal_network_model()
    zeta = _diagonal_network_point((3, 5, 0), 2)
    rng = np.random.default_rng(0)
    near = zeta + 1e-3 * rng.standard_normal((16, model.dim))
    retracted = newton_retraction(model, near)
    assert np.max(np.linalg.norm(model.gradient(retracted), axis=-1)) <= 1e-12
    h = 1e-6
    jac = np.stack(
        [
            (newton_retraction(model, zeta + h * e) - newton_retraction(model, zeta - h * e)) / (2 * h)
            for e in np.eye(10)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(jac, tangent_projection(model.hessian(zeta), model.dim_manifold), atol=1e-7)


# --- bad input --------------------------------------------------------------------------------------------------


def _degenerate_model() -> ManifoldModel:
    """L = (uv - 1)^4 / 4: Gamma = {uv = 1} is still the set of minimisers, but H = 0 there (rank 0, not 1)."""
    u, v = sp.symbols("u v", real=True)
    return lambdify_model(
        SymbolicManifoldModel(
            name="degenerate_quartic", variables=(u, v), loss=(u * v - 1) ** 4 / 4, noise_cov=sp.eye(2), dim_manifold=1
        )
    )


def test_wrong_hessian_rank_on_gamma_is_rejected() -> None:
    zeta = toy_manifold_point(np.array(0.2))
    with pytest.raises(ValueError, match=r"Hessian rank at zeta is 0 .* needs rank H = d - dim Gamma = 1"):
        check_manifold_point(_degenerate_model(), zeta)
    wrong_dim = dataclasses.replace(isotropic_noise_toy_model(), dim_manifold=0)
    with pytest.raises(ValueError, match=r"Hessian rank at zeta is 1 .* needs rank H = d - dim Gamma = 2"):
        check_manifold_point(wrong_dim, zeta)
    from theory.manifold import integrate_slow_sde

    with pytest.raises(ValueError, match=r"Hessian rank at Phi\(x0\) is 0"):
        integrate_slow_sde(dataclasses.replace(_degenerate_model(), projection=toy_projection), zeta, 1.0, rng=0)


def test_points_off_gamma_and_saddles_are_rejected() -> None:
    model = isotropic_noise_toy_model()
    with pytest.raises(ValueError, match=r"not on Gamma .* \|grad L\|"):
        check_manifold_point(model, np.array([1.0, 1.1]))
    with pytest.raises(ValueError, match="not a minimiser"):
        check_manifold_point(model, np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        check_manifold_point(model, np.ones(3))


@pytest.mark.parametrize("method", ["closed_form", "numeric"])
def test_start_on_the_separatrix_is_outside_the_basin(method: str) -> None:
    """On u + v = 0 gradient flow runs into the saddle (0, 0), not to Gamma: clear error from both routes."""
    with pytest.raises(ValueError, match="outside the basin of attraction"):
        gradient_flow_projection(label_noise_toy_model(), np.array([1.5, -1.5]), method=method)


def test_gradient_flow_that_does_not_converge_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"did not reach \|grad L\| <= .* by t_max"):
        gradient_flow_projection(label_noise_toy_model(), np.array([3.0, 0.01]), method="numeric", t_max=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim_manifold": 2}, r"dim_manifold must be an integer in \[0, d - 1\]"),
        ({"noise_kind": "uniform"}, "noise_kind must be one of"),
        ({"label_noise_constant": -1.0}, "label_noise_constant must be None or a finite number"),
        ({"noise_cov": sp.eye(3)}, "noise_cov must be a 2x2 matrix"),
        ({"noise_factor": sp.Matrix([[1], [0]])}, "B B\\^T = noise_cov"),
    ],
)
def test_bad_symbolic_model(kwargs: dict, match: str) -> None:
    u, v = sp.symbols("u v", real=True)
    base = {"name": "bad", "variables": (u, v), "loss": (u * v - 1) ** 2 / 2, "noise_cov": sp.eye(2), "dim_manifold": 1}
    with pytest.raises(ValueError, match=match):
        SymbolicManifoldModel(**{**base, **kwargs})
