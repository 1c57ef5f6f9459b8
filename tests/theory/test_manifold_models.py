"""Models with a manifold of minimisers and their slow SDEs (THEORY.md 7.3-7.4, oracle 22; Theorem 4.5)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from theory.manifold import (
    check_manifold_point,
    gradient_flow_projection,
    integrate_slow_sde,
    manifold_functional,
    noise_decomposition,
    sample_gradient_noise,
    slow_sde_coefficients,
    tangent_projection,
)
from theory.manifold_models import (
    diagonal_network_data,
    diagonal_network_model,
    diagonal_network_projection,
    isotropic_noise_toy_model,
    label_noise_toy_model,
    toy_coordinate,
    toy_label_noise_flow,
    toy_manifold_point,
    toy_projection,
)

#: Oracle 22 (THEORY.md 10), quoted to 7 decimals: s(2) from s_0 = 1.
ORACLE_22_S2 = 0.2365029
#: Monte Carlo tolerance in standard errors.
N_SE = 4.0

u_sym, v_sym = sp.symbols("u v", real=True)
TOY_LOSS = (u_sym * v_sym - 1) ** 2 / 2


def _flow_derivative(expr: sp.Expr, loss: sp.Expr, variables) -> sp.Expr:
    """d/dt expr along gradient flow x' = -grad L."""
    return sp.simplify(-sum(sp.diff(expr, x) * sp.diff(loss, x) for x in variables))


# --- the toy: derivations ---------------------------------------------------------------------------------------


def test_toy_conservation_law_and_separatrix() -> None:
    """Gradient flow conserves u^2 - v^2; u + v obeys (u+v)' = -(uv-1)(u+v), so u + v = 0 is invariant and the sign
    of u + v is kept; the origin is a saddle (eigenvalues -1, 1). Hence the closed-form Phi of toy_projection.
    """
    assert _flow_derivative(u_sym**2 - v_sym**2, TOY_LOSS, (u_sym, v_sym)) == 0
    assert (
        sp.simplify(_flow_derivative(u_sym + v_sym, TOY_LOSS, (u_sym, v_sym)) + (u_sym * v_sym - 1) * (u_sym + v_sym))
        == 0
    )
    origin_hessian = sp.hessian(TOY_LOSS, (u_sym, v_sym)).subs({u_sym: 0, v_sym: 0})
    assert sorted(origin_hessian.eigenvals()) == [-1, 1]
    # On Gamma_+, u = e^s: u^2 - v^2 = 2 sinh(2 s).
    s = sp.Symbol("s", real=True)
    assert sp.simplify((sp.exp(2 * s) - sp.exp(-2 * s) - 2 * sp.sinh(2 * s)).rewrite(sp.exp)) == 0


def test_toy_label_noise_covariance_is_the_hessian_on_gamma() -> None:
    """g = (uv - y)(v, u), y = 1 + eps, eps = +-1: Sigma = (v, u)(v, u)' equals H on uv = 1 (c = 1, THEORY.md 7.4)."""
    model = label_noise_toy_model()
    sigma = model.symbolic.noise_cov
    hessian = sp.hessian(TOY_LOSS, (u_sym, v_sym))
    assert sp.simplify((sigma - hessian).subs(v_sym, 1 / u_sym)) == sp.zeros(2, 2)
    assert sp.simplify(sigma - hessian) != sp.zeros(2, 2)  # not off Gamma


def test_toy_slow_flow_closed_form_derivation() -> None:
    """In the chart zeta = (e^s, e^-s), -(sigma^2/4) P_T grad tr H gives s' = -(sigma^2/2) tanh 2s, solved by
    sinh 2s(t) = sinh 2s_0 e^{-sigma^2 t} (THEORY.md 7.4, oracle 22).
    """
    s, t, s0, sigma = sp.symbols("s t s0 sigma", positive=True)
    tangent = sp.Matrix([sp.exp(s), -sp.exp(-s)])
    grad_trace = sp.Matrix([2 * sp.exp(s), 2 * sp.exp(-s)])  # tr H = u^2 + v^2
    s_dot = -(sigma**2) / 4 * (grad_trace.T * tangent)[0] / (tangent.T * tangent)[0]
    assert sp.simplify((s_dot + sigma**2 / 2 * sp.tanh(2 * s)).rewrite(sp.exp)) == 0
    solution = sp.asinh(sp.sinh(2 * s0) * sp.exp(-(sigma**2) * t)) / 2
    residual = sp.diff(solution, t) + sigma**2 / 2 * sp.tanh(2 * solution)
    assert sp.simplify(residual.rewrite(sp.exp)) == 0


def test_oracle_22_closed_form_value() -> None:
    assert abs(float(toy_label_noise_flow(1.0, 2.0)) - ORACLE_22_S2) <= 5e-8


# --- the toy: Phi -----------------------------------------------------------------------------------------------


@given(
    u=st.floats(-3.0, 3.0),
    v=st.floats(-3.0, 3.0),
)
def test_toy_projection_lands_on_gamma_and_is_idempotent(u: float, v: float) -> None:
    assume(abs(u + v) > 1e-3)
    x = np.array([u, v])
    zeta = toy_projection(x)
    assert abs(zeta[0] * zeta[1] - 1.0) <= 1e-14
    assert np.sign(zeta[0]) == np.sign(u + v)
    np.testing.assert_allclose(toy_projection(zeta), zeta, rtol=1e-14)
    assert toy_coordinate(x) == pytest.approx(toy_coordinate(zeta), abs=1e-13)


@pytest.mark.parametrize("x0", [[2.0, 0.3], [-0.2, -1.9], [0.5, 0.6], [-3.0, 2.5]])
def test_toy_closed_form_projection_matches_numeric_gradient_flow(x0: list[float]) -> None:
    model = label_noise_toy_model()
    x0 = np.array(x0)
    np.testing.assert_allclose(gradient_flow_projection(model, x0, method="numeric"), toy_projection(x0), atol=1e-9)


# --- oracle 22: the label-noise slow flow -----------------------------------------------------------------------


def test_oracle_22_ode_integrator_matches_the_closed_form() -> None:
    """integrate_slow_sde (solve_ivp on the generic drift) reproduces sinh 2s(t) = sinh 2s_0 e^{-t} to 1e-8."""
    path = integrate_slow_sde(label_noise_toy_model(), toy_manifold_point(np.array(1.0)), 2.0, n_steps=40)
    assert path.method == "ode"
    assert path.states.shape == (1, 41, 2)
    s = toy_coordinate(path.states[0])
    assert np.max(np.abs(s - toy_label_noise_flow(1.0, path.times))) <= 1e-8
    assert abs(s[-1] - ORACLE_22_S2) <= 5e-8
    assert np.max(np.abs(path.states[0, :, 0] * path.states[0, :, 1] - 1.0)) <= 1e-9  # on Gamma
    # Negative control: a 0.1% change of sigma moves the path by far more than the 1e-8 tolerance.
    other = integrate_slow_sde(label_noise_toy_model(), path.zeta0, 2.0, n_steps=40, sigma=1.001)
    assert np.max(np.abs(toy_coordinate(other.states[0]) - toy_label_noise_flow(1.0, path.times))) > 1e-5


def test_oracle_22_from_an_off_manifold_start_and_other_branch() -> None:
    """zeta_0 = Phi(x_0): starting at any x_0 with the same u^2 - v^2 gives the same s(t); the branch u, v < 0 too."""
    s0 = 1.0
    q = 2 * math.sinh(2 * s0)
    x0 = np.array([-math.sqrt(q + 0.25), -0.5])  # u^2 - v^2 = q, u + v < 0
    path = integrate_slow_sde(label_noise_toy_model(), x0, 2.0, n_steps=4)
    assert np.all(path.states[0, :, 0] < 0)
    assert abs(toy_coordinate(path.states[0, -1]) - ORACLE_22_S2) <= 5e-8


def test_learning_rate_profile_scales_the_drift_by_u_squared() -> None:
    """THEORY.md 7.3 ([D by scaling]): eta_k = eta u(k eta^2) gives sinh 2s(t) = sinh 2s_0 exp(-int_0^t u^2)."""

    def profile(t: float) -> float:
        return 1.0 / (1.0 + t)

    path = integrate_slow_sde(
        label_noise_toy_model(), toy_manifold_point(np.array(0.8)), 3.0, n_steps=30, lr_profile=profile
    )
    expected = 0.5 * np.arcsinh(math.sinh(1.6) * np.exp(-path.times / (1.0 + path.times)))
    assert np.max(np.abs(toy_coordinate(path.states[0]) - expected)) <= 1e-8


def test_ode_method_needs_label_noise() -> None:
    with pytest.raises(ValueError, match=r"method='ode' needs label noise"):
        integrate_slow_sde(isotropic_noise_toy_model(), toy_manifold_point(np.array(0.3)), 1.0, method="ode")


# --- diagonal linear network ------------------------------------------------------------------------------------


def _diagonal_start(seed: int, p: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0.5, 1.5, p) * rng.choice([-1.0, 1.0], p), rng.uniform(-0.4, 0.4, p)])


def test_diagonal_network_conservation_and_mirror_map() -> None:
    """Gradient flow conserves q = u_j^2 - w_j^2, and d/dt (1/2) arsinh(2 u w / |q|) = -g_j (the hyperbolic mirror map
    behind diagonal_network_projection), with u' = -w g, w' = -u g; on both sides of q = 0.
    """
    model = diagonal_network_model()
    p = model.dim // 2
    xs = model.symbolic.variables
    for j in range(p):
        assert _flow_derivative(xs[j] ** 2 - xs[p + j] ** 2, model.symbolic.loss, xs) == 0
    u, w, g = sp.symbols("u w g", real=True)
    for sign in (1, -1):  # |q| = sign * q on each side
        mirror = sp.asinh(2 * u * w / (sign * (u**2 - w**2))) / 2
        rate = sp.simplify(sp.diff(mirror, u) * (-w * g) + sp.diff(mirror, w) * (-u * g))
        values = {u: 1.3, w: 0.4, g: 0.7} if sign == 1 else {u: -0.2, w: 0.9, g: -1.1}
        assert float(rate.subs(values)) == pytest.approx(-float(values[g]), rel=1e-13)
        # and the wrong sign convention (q instead of |q|) fails where q < 0:
        if sign == -1:
            wrong = sp.diff(-mirror, u) * (-w * g) + sp.diff(-mirror, w) * (-u * g)
            assert float(wrong.subs(values)) == pytest.approx(float(values[g]), rel=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diagonal_network_closed_form_projection_matches_numeric_gradient_flow(seed: int) -> None:
    model = diagonal_network_model()
    x0 = _diagonal_start(seed, model.dim // 2)
    closed = gradient_flow_projection(model, x0)
    np.testing.assert_allclose(gradient_flow_projection(model, x0, method="numeric"), closed, atol=1e-8)
    check_manifold_point(model, closed)


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000))
def test_diagonal_network_projection_is_idempotent_and_batched(seed: int) -> None:
    design, targets = diagonal_network_data(3, 5, 0)
    x = np.stack([_diagonal_start(seed + k, 5) for k in range(4)])
    zeta = diagonal_network_projection(x, design, targets)
    np.testing.assert_allclose((zeta[:, :5] * zeta[:, 5:]) @ design.T, np.broadcast_to(targets, (4, 3)), atol=1e-10)
    np.testing.assert_allclose(diagonal_network_projection(zeta, design, targets), zeta, atol=1e-10)
    np.testing.assert_allclose(zeta[:, :5] ** 2 - zeta[:, 5:] ** 2, x[:, :5] ** 2 - x[:, 5:] ** 2, atol=1e-10)
    np.testing.assert_allclose(zeta[1], diagonal_network_projection(x[1], design, targets), atol=1e-12)


def test_diagonal_network_projection_through_balanced_coordinates() -> None:
    """q_j = 0 (|u_j| = |w_j|, where the label-noise slow flow goes) is handled by the continuous form and agrees with
    numeric gradient flow; a frozen coordinate u_j = w_j = 0 is rejected with a clear error.
    """
    model = diagonal_network_model()
    x = np.concatenate([np.array([1.0, 0.5, -0.7, 0.9, 0.3]), np.array([1.0, 0.2, 0.7, -0.9, 0.1])])
    closed = gradient_flow_projection(model, x)
    np.testing.assert_allclose(gradient_flow_projection(model, x, method="numeric"), closed, atol=1e-8)
    design, targets = diagonal_network_data(3, 5, 0)
    frozen = x.copy()
    frozen[[1, 6]] = 0.0
    with pytest.raises(ValueError, match=r"\(u_j, w_j\) != \(0, 0\)"):
        diagonal_network_projection(frozen, design, targets)


def test_diagonal_network_slow_flow_decreases_the_hessian_trace_on_gamma() -> None:
    """Label noise: the slow SDE is the flow zeta' = -(sigma^2/4) P_T grad tr H (THEORY.md 7.4); tr H decreases
    strictly and zeta stays on Gamma = {X (u * w) = y}, dim Gamma = 2p - n = 7.
    """
    model = diagonal_network_model()
    design, targets = diagonal_network_data(3, 5, 0)
    assert model.dim_manifold == 7
    path = integrate_slow_sde(model, _diagonal_start(0, 5), 20.0, n_steps=40)
    assert path.method == "ode"
    states = path.states[0]
    np.testing.assert_allclose((states[:, :5] * states[:, 5:]) @ design.T, np.broadcast_to(targets, (41, 3)), atol=1e-9)
    trace = manifold_functional(model, states)
    assert np.all(np.diff(trace) < 0)
    assert trace[-1] < 0.9 * trace[0]


@pytest.mark.parametrize("model_fn", [label_noise_toy_model, diagonal_network_model], ids=["toy", "diagonal_network"])
@settings(max_examples=6)
@given(seed=st.integers(0, 10_000), sigma=st.floats(0.2, 2.0))
def test_label_noise_drift_is_the_riemannian_gradient_of_the_hessian_trace(model_fn, seed: int, sigma: float) -> None:
    """THEORY.md 7.4: Sigma = c H on Gamma gives Sigma_par = 0, hat Sigma_diamond = c/2 P_perp and drift
    -(c sigma^2/4) P_T grad tr H, with grad tr H from SymPy independently of nabla^3 L.
    """
    model = model_fn()
    if model.dim == 2:
        rng = np.random.default_rng(seed)
        x0 = np.array([rng.uniform(0.3, 3.0), rng.uniform(-0.2, 2.0)])
    else:
        x0 = _diagonal_start(seed, model.dim // 2)
    zeta = gradient_flow_projection(model, x0)
    hessian = model.hessian(zeta)
    np.testing.assert_allclose(model.noise_cov(zeta), hessian, atol=1e-10)
    split = noise_decomposition(model.noise_cov(zeta), hessian, model.dim_manifold)
    np.testing.assert_allclose(split.parallel, 0.0, atol=1e-10)
    xs = model.symbolic.variables
    trace = sum(sp.diff(model.symbolic.loss, x, 2) for x in xs)
    grad_trace = np.array([float(sp.diff(trace, x).subs(dict(zip(xs, zeta, strict=True)))) for x in xs])
    expected = -(sigma**2) / 4 * tangent_projection(hessian, model.dim_manifold) @ grad_trace
    coefficients = slow_sde_coefficients(model, zeta, sigma)
    np.testing.assert_allclose(coefficients.drift, expected, atol=1e-9 * sigma**2 * (1 + np.linalg.norm(grad_trace)))
    assert np.max(np.abs(coefficients.diffusion)) <= 1e-7 * sigma  # a square root of a rounding-size Sigma_par


# --- isotropic noise: diffusion along Gamma ---------------------------------------------------------------------

S = sp.Symbol("s", real=True)
#: Coordinate of Phi(x), constant along gradient flow: s = arsinh((u^2 - v^2)/2)/2.
F_EXPR = sp.asinh((u_sym**2 - v_sym**2) / 2) / 2


def _on_chart(expr: sp.Expr, s: float) -> float:
    return float(expr.subs({u_sym: math.exp(s), v_sym: math.exp(-s)}))


@settings(max_examples=10)
@given(s=st.floats(-1.5, 1.5), sigma=st.floats(0.2, 2.0))
def test_isotropic_slow_sde_in_the_chart(s: float, sigma: float) -> None:
    """Ito's formula for f = s(Phi(x)) (f o Phi = f, so grad f is tangent and f(zeta_t) obeys Katzenberger's
    generator): ds = sigma |grad f| dB + (sigma^2/2) Laplacian(f) dt, i.e. diffusion^2 = sigma^2/(2 cosh 2s) and
    drift = -(sigma^2/2) sinh 2s / cosh^2 2s. The generic coefficients must reproduce both.
    """
    model = isotropic_noise_toy_model()
    zeta = toy_manifold_point(np.array(s))
    c = slow_sde_coefficients(model, zeta, sigma)
    grad_f = np.array([_on_chart(sp.diff(F_EXPR, x), s) for x in (u_sym, v_sym)])
    hess_f = np.array([[_on_chart(sp.diff(F_EXPR, a, b), s) for b in (u_sym, v_sym)] for a in (u_sym, v_sym)])
    laplacian = _on_chart(sp.diff(F_EXPR, u_sym, 2) + sp.diff(F_EXPR, v_sym, 2), s)
    assert laplacian == pytest.approx(-math.sinh(2 * s) / math.cosh(2 * s) ** 2, rel=1e-12, abs=1e-14)
    chart_drift = grad_f @ c.drift + 0.5 * np.sum(hess_f * (c.diffusion @ c.diffusion.T))
    chart_variance = grad_f @ c.diffusion @ c.diffusion.T @ grad_f
    assert chart_drift == pytest.approx(sigma**2 / 2 * laplacian, abs=1e-12 * sigma**2)
    assert chart_variance == pytest.approx(sigma**2 / (2 * math.cosh(2 * s)), rel=1e-12)
    assert np.linalg.norm(noise_decomposition(np.eye(2), model.hessian(zeta), 1).parallel) == pytest.approx(1.0)


def test_isotropic_slow_sde_paths_stay_on_gamma_and_sinh_2s_is_a_martingale() -> None:
    """Euler-Maruyama with re-projection: paths stay on uv = 1, and E sinh 2s(T) = sinh 2s_0 (sinh 2s = (u^2-v^2)/2 is
    harmonic and flow-invariant, so a martingale of the slow SDE), within 4 standard errors. EM bias measured at
    4e4 paths: |E - sinh 2s_0| <= 0.007 for 25-100 steps, below 1 SE here (SE ~ 0.03).
    A model with nabla^3 L zeroed (no regularisation drift; the re-projection still supplies the normal part)
    drifts by ~0.28, about 9 SE, and fails the same check.
    """
    model = isotropic_noise_toy_model()
    zeta0 = toy_manifold_point(np.array(0.5))
    path = integrate_slow_sde(model, zeta0, 1.0, n_steps=50, n_paths=4000, rng=np.random.default_rng(7))
    assert path.method == "euler_maruyama"
    assert path.states.shape == (4000, 51, 2)
    assert np.max(np.abs(path.states[..., 0] * path.states[..., 1] - 1.0)) <= 1e-12
    spread = np.std(toy_coordinate(path.states[:, -1]))
    assert spread > 0.3  # it diffuses along Gamma

    def martingale_defect(states: np.ndarray) -> tuple[float, float]:
        values = np.sinh(2 * toy_coordinate(states[:, -1]))
        return float(values.mean() - math.sinh(1.0)), float(values.std(ddof=1) / math.sqrt(values.size))

    defect, se = martingale_defect(path.states)
    assert abs(defect) <= N_SE * se
    no_drift = dataclasses.replace(model, third_derivative=lambda x: np.zeros((*np.shape(x)[:-1], 2, 2, 2)))
    wrong = integrate_slow_sde(no_drift, zeta0, 1.0, n_steps=50, n_paths=4000, rng=np.random.default_rng(7))
    defect, se = martingale_defect(wrong.states)
    assert abs(defect) > N_SE * se


def test_euler_maruyama_is_reproducible_and_saves_on_request() -> None:
    model = isotropic_noise_toy_model()
    zeta0 = toy_manifold_point(np.array(0.2))
    a = integrate_slow_sde(model, zeta0, 0.5, n_steps=20, save_every=5, n_paths=3, rng=11)
    b = integrate_slow_sde(model, zeta0, 0.5, n_steps=20, save_every=5, n_paths=3, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_allclose(a.times, [0.0, 0.125, 0.25, 0.375, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, r"sigma \(noise scale\) must be a finite number in \(0, inf\)"),
        ({"n_steps": 0}, "n_steps must be an integer >= 1"),
        ({"save_every": 3}, "save_every must be an integer in"),
        ({"n_paths": 0}, "n_paths must be an integer >= 1"),
        ({"rng": None}, "rng must be a numpy.random.Generator or an int seed"),
        ({"method": "milstein"}, "method must be"),
        ({"t_final": -1.0}, r"t_final must be a finite number in \(0, inf\)"),
    ],
)
def test_integrate_slow_sde_bad_input(kwargs: dict, match: str) -> None:
    args = {"t_final": 1.0, "n_steps": 10, "rng": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        integrate_slow_sde(isotropic_noise_toy_model(), toy_manifold_point(np.array(0.1)), **args)


def test_integrate_slow_sde_rejects_a_start_outside_the_basin() -> None:
    with pytest.raises(ValueError, match="separatrix"):
        integrate_slow_sde(label_noise_toy_model(), np.array([0.7, -0.7]), 1.0)


# --- functionals, noise sampling, figure data -------------------------------------------------------------------


def test_manifold_functionals() -> None:
    model = label_noise_toy_model()
    x = np.array([[2.0, 0.3], [-0.4, -1.0]])
    s = manifold_functional(model, x, "coordinate")
    np.testing.assert_allclose(s, toy_coordinate(toy_projection(x)), rtol=1e-13)
    np.testing.assert_allclose(manifold_functional(model, x), 2 * np.cosh(2 * s), rtol=1e-12)  # tr H on Gamma
    diag = diagonal_network_model()
    with pytest.raises(ValueError, match="no manifold_coordinate"):
        manifold_functional(diag, _diagonal_start(0, 5), "coordinate")
    with pytest.raises(ValueError, match="kind must be"):
        manifold_functional(model, x, "loss")


@pytest.mark.parametrize(
    ("model_fn", "x"),
    [
        (label_noise_toy_model, np.array([1.3, 0.4])),
        (isotropic_noise_toy_model, np.array([0.3, -2.0])),
        (diagonal_network_model, _diagonal_start(3, 5)),
    ],
    ids=["toy_label", "toy_isotropic", "diagonal_network"],
)
def test_sampled_gradient_noise_has_mean_zero_and_covariance_sigma(model_fn, x: np.ndarray) -> None:
    """NGOS noise per step (THEORY.md 2.1): E v = 0 and Cov v = Sigma(x), each entry within 4 SE (200k draws)."""
    model = model_fn()
    n = 200_000
    draws = sample_gradient_noise(model, np.broadcast_to(x, (n, model.dim)), np.random.default_rng(3))
    assert np.all(np.abs(draws.mean(axis=0)) <= N_SE * draws.std(axis=0) / math.sqrt(n) + 1e-15)
    products = draws[:, :, None] * draws[:, None, :]
    se = products.std(axis=0) / math.sqrt(n)
    rounding = 1e-10 * np.max(np.abs(model.noise_cov(x)))  # Rademacher products are exact: SE ~ 0
    assert np.all(np.abs(products.mean(axis=0) - model.noise_cov(x)) <= N_SE * se + rounding)
    if model.noise_kind == "rademacher":  # label noise: v = B xi with xi in {-1, 1}^r takes at most 2^r values
        assert np.unique(np.round(draws, 10), axis=0).shape[0] <= 2 ** model.noise_factor(x).shape[-1]


def _chart_expectation(s0: float, t_final: float, sigma: float, payoff, half_width: float = 5.0, n_grid: int = 801):
    """E payoff(s_T) for ds = sigma (2 cosh 2s)^-1/2 dB - (sigma^2/2) sinh 2s / cosh^2 2s dt, by the backward
    Kolmogorov equation w_t = (a^2/2) w_ss + b w_s, w(0, s) = payoff(s), solved by the method of lines (BDF). The
    coefficients vanish like e^{-2|s|}, so the edges +-half_width hardly move: Dirichlet w = payoff there.
    """
    from scipy.integrate import solve_ivp
    from scipy.sparse import diags

    grid = np.linspace(-half_width, half_width, n_grid)
    h = grid[1] - grid[0]
    half_a2 = sigma**2 / (4 * np.cosh(2 * grid))
    b = -(sigma**2) / 2 * np.sinh(2 * grid) / np.cosh(2 * grid) ** 2
    lower, upper = half_a2 / h**2 - b / (2 * h), half_a2 / h**2 + b / (2 * h)
    generator = diags([lower[1:], -2 * half_a2 / h**2, upper[:-1]], [-1, 0, 1], format="csr").tolil()
    generator[0, :] = 0.0
    generator[-1, :] = 0.0
    generator = generator.tocsr()
    sol = solve_ivp(
        lambda _t, w: generator @ w, (0.0, t_final), payoff(grid), method="BDF", jac=generator, rtol=1e-10, atol=1e-12
    )
    return float(np.interp(s0, grid, sol.y[:, -1]))


@pytest.mark.slow
def test_isotropic_euler_maruyama_matches_the_kolmogorov_equation_of_the_chart_sde() -> None:
    """E s(T) and E s(T)^2 of the 2-D Euler-Maruyama slow SDE (re-projected) against the 1-D chart SDE solved by its
    backward Kolmogorov PDE (deterministic; grid-converged to 1e-5), within 4 SE (4e4 paths, SE 0.0026). EM bias
    measured with 2e5 paths at 50, 100, 200 steps: |E s - reference| <= 0.0018 with SE 0.0012, i.e. not resolved.
    """
    s0, t_final, sigma = 0.5, 1.0, 1.0
    path = integrate_slow_sde(
        isotropic_noise_toy_model(),
        toy_manifold_point(np.array(s0)),
        t_final,
        sigma=sigma,
        n_steps=100,
        save_every=100,
        n_paths=40_000,
        rng=np.random.default_rng(2024),
    )
    s = toy_coordinate(path.states[:, -1])
    for payoff in (lambda z: z, lambda z: z**2):
        reference = _chart_expectation(s0, t_final, sigma, payoff)
        values = payoff(s)
        se = values.std(ddof=1) / math.sqrt(values.size)
        assert abs(values.mean() - reference) <= N_SE * se
