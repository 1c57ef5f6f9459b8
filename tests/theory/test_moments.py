"""Exact transient moments and loss curves of SGD, SGDM and the SDE (THEORY.md 4.2, 5.2, 5.6; oracles 19, 23)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from theory.moments import (
    discrete_moments,
    expected_loss_curve,
    linear_sde_moments,
    sde_expected_loss_curve,
    sde_moments,
)
from theory.quadratic import (
    sde_stationary_covariance,
    spectral_radius,
    stability_threshold,
    stationary_moments,
    underdamped_sde_stationary_moments,
)

EXACT = 1e-12  # relative: two exact recursions / closed forms in float64
ODE = 1e-8  # relative: solve_ivp at rtol 1e-10, atol 1e-12 (global error: some 100 x rtol)
ODE_FLOOR = 1e-10  # absolute: 100 x the solver's atol, for quantities that decay to ~0


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(b)))
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else float(np.max(np.abs(a)))


@st.composite
def problems(draw: st.DrawFn, max_dim: int = 4, max_fraction: float = 0.9) -> tuple:
    """SPD H (eigenvalues in [0.2, 5]), non-commuting PSD Sigma, stable (eta, beta), start x0."""
    d = draw(st.integers(1, max_dim))
    eigenvalues = draw(arrays(np.float64, d, elements=st.floats(0.2, 5.0)))
    raw = draw(arrays(np.float64, (d, d), elements=st.floats(-1.0, 1.0)))
    rotation, _ = np.linalg.qr(raw + 2.0 * np.eye(d))
    H = rotation @ np.diag(eigenvalues) @ rotation.T
    factor = draw(arrays(np.float64, (d, d), elements=st.floats(-1.0, 1.0)))
    beta = draw(st.floats(0.0, 0.9))
    fraction = draw(st.floats(0.1, max_fraction))
    eta = fraction * stability_threshold(beta, "sgd" if beta == 0.0 else "heavy_ball") / eigenvalues.max()
    x0 = draw(arrays(np.float64, d, elements=st.floats(-3.0, 3.0)))
    return (H + H.T) / 2, factor @ factor.T + 0.1 * np.eye(d), eta, beta, x0


def _example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    H = rotation @ np.diag([0.5, 1.5, 4.0]) @ rotation.T
    Sigma = np.array([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.8]])
    return (H + H.T) / 2, Sigma, np.array([1.0, -2.0, 0.5])


# --- discrete recursions ------------------------------------------------------------------------------------------


@settings(max_examples=15)
@given(problem=problems(), m0_scale=st.floats(0.0, 1.0))
def test_eigenbasis_recursion_equals_dense_recursion(problem: tuple, m0_scale: float) -> None:
    H, Sigma, eta, beta, x0 = problem
    m0 = m0_scale * x0[::-1]
    eigen = discrete_moments(H, Sigma, eta, beta, x0=x0, m0=m0, steps=30)
    dense = discrete_moments(H, Sigma, eta, beta, x0=x0, m0=m0, steps=30, method="dense")
    for name in ("mean_x", "mean_m", "cov_x", "cov_m", "cov_xm", "loss"):
        assert _relative_gap(getattr(eigen, name), getattr(dense, name)) < 1e-10, name
    light = expected_loss_curve(H, Sigma, eta, beta, x0=x0, m0=m0, steps=30)
    assert _relative_gap(light, dense.loss) < 1e-10


def test_recursion_comparison_detects_a_wrong_momentum() -> None:
    H, Sigma, x0 = _example()
    eigen = discrete_moments(H, Sigma, 0.3, 0.6, x0=x0, steps=20).cov_x
    dense = discrete_moments(H, Sigma, 0.3, 0.6, x0=x0, steps=20, method="dense").cov_x
    wrong = discrete_moments(H, Sigma, 0.3, 0.61, x0=x0, steps=20, method="dense").cov_x
    assert _relative_gap(dense, eigen) < 1e-12
    assert _relative_gap(wrong, eigen) > 1e-3


@settings(max_examples=15)
@given(problem=problems(max_fraction=0.7))
def test_transient_converges_to_the_stationary_moments(problem: tuple) -> None:
    """After K steps with radius^K <= 1e-13 the recursion equals stationary_moments (to 1e-9 relative)."""
    H, Sigma, eta, beta, x0 = problem
    method = "sgd" if beta == 0.0 else "heavy_ball"
    radius = max(float(np.max(spectral_radius(eta * np.linalg.eigvalsh(H), beta, method))), 1e-6)  # 0: dead-beat
    steps = int(np.ceil(np.log(1e-13) / np.log(radius)))
    assert steps <= 5000  # the strategy keeps rates away from the edges
    final = expected_loss_curve(H, Sigma, eta, beta, x0=x0, steps=steps)
    moments = discrete_moments(H, Sigma, eta, beta, x0=x0, steps=min(steps, 400))
    stationary = stationary_moments(H, Sigma, eta, beta)
    assert final[-1] == pytest.approx(0.5 * np.sum(H * stationary.cov_x), rel=1e-9)
    if steps <= 400:
        assert _relative_gap(moments.cov_x[-1], stationary.cov_x) < 1e-9
        assert _relative_gap(moments.cov_m[-1], stationary.cov_m) < 1e-9
        assert _relative_gap(moments.cov_xm[-1], stationary.cov_xm) < 1e-9
        assert np.max(np.abs(moments.mean_x[-1])) <= 1e-9 * max(1.0, np.max(np.abs(x0)))


def test_oracle_19_nqm_sgd_transient_risk() -> None:
    """THEORY.md 5.6: E L_i(t) = (1 - eta h_i)^(2t) L_i(0) + eta c_i / (2B(2 - eta h_i)) (1 - (1 - eta h_i)^(2t)).

    Exact in rational arithmetic (NQM code's per-dimension recursion) and to float64 precision for the numeric
    loss curve on a diagonal H with C = H (the NQM's choice), batch B.
    """
    eta_f, batch, steps = Fraction(1, 4), 8, 60
    h_values = [Fraction(1, i) for i in range(1, 6)]  # NQM: h_i = 1/i
    x0 = [Fraction(1)] * len(h_values)
    second = [x * x for x in x0]
    exact_losses = []
    for _ in range(steps + 1):
        exact_losses.append(sum(h * s / 2 for h, s in zip(h_values, second, strict=True)))
        second = [(1 - eta_f * h) ** 2 * s + eta_f**2 * h / batch for h, s in zip(h_values, second, strict=True)]
    for t, exact in enumerate(exact_losses):
        formula = sum(
            (1 - eta_f * h) ** (2 * t) * (h * x * x / 2)
            + eta_f * h / (2 * batch * (2 - eta_f * h)) * (1 - (1 - eta_f * h) ** (2 * t))
            for h, x in zip(h_values, x0, strict=True)
        )
        assert formula == exact
    H = np.diag([float(h) for h in h_values])
    curve = expected_loss_curve(H, H / batch, float(eta_f), x0=np.ones(len(h_values)), steps=steps)
    assert np.allclose(curve, [float(v) for v in exact_losses], rtol=EXACT, atol=0)
    dense = discrete_moments(H, H / batch, float(eta_f), x0=np.ones(len(h_values)), steps=steps, method="dense")
    assert np.allclose(dense.loss, [float(v) for v in exact_losses], rtol=EXACT, atol=0)


def test_sgd_and_sgdm_loss_curves_differ_at_finite_eta_but_share_the_stationary_leading_order() -> None:
    H, Sigma, x0 = _example()
    sgd = expected_loss_curve(H, Sigma, 0.3, 0.0, x0=x0, steps=400)
    sgdm = expected_loss_curve(H, Sigma, 0.3, 0.6, x0=x0, steps=400)
    assert sgd[0] == sgdm[0] == pytest.approx(0.5 * x0 @ H @ x0, rel=EXACT)
    assert sgd[-1] > sgdm[-1]  # SGDM's O(eta) correction is smaller by (1-beta)/(1+beta) (THEORY.md 5.4)
    sde = 0.5 * np.sum(H * sde_stationary_covariance(H, Sigma, 0.3))
    assert abs(sgdm[-1] - sde) < abs(sgd[-1] - sde)


# --- SDE ------------------------------------------------------------------------------------------------------------


@settings(max_examples=10)
@given(problem=problems(max_dim=3), order=st.sampled_from([1, 2]))
def test_sde_closed_form_equals_solve_ivp(problem: tuple, order: int) -> None:
    H, Sigma, eta, _, x0 = problem
    times = np.linspace(0.0, 3.0, 7)
    closed = sde_moments(H, Sigma, eta, x0=x0, times=times, order=order)
    integrated = sde_moments(H, Sigma, eta, x0=x0, times=times, order=order, method="solve_ivp")
    for name in ("mean", "cov", "loss"):
        a, b = getattr(integrated, name), getattr(closed, name)
        assert np.max(np.abs(a - b)) <= ODE * np.max(np.abs(b)) + ODE_FLOOR, name
    light = sde_expected_loss_curve(H, Sigma, eta, x0=x0, times=times, order=order)
    assert _relative_gap(light, closed.loss) < EXACT


def test_sde_moments_tend_to_the_stationary_covariance() -> None:
    H, Sigma, x0 = _example()
    late = sde_moments(H, Sigma, 0.2, x0=x0, times=[40.0])  # e^{-2 * 0.5 * 40} ~ 4e-18
    assert _relative_gap(late.cov[0], sde_stationary_covariance(H, Sigma, 0.2)) < EXACT
    assert np.max(np.abs(late.mean)) < 1e-8


def test_li_tai_e_sme1_loss_formula() -> None:
    """THEORY.md 4.2 (oracle 23): Sigma = H^2, E f(W_t) = x0'He^{-2tH}x0/2 + eta/4 sum lambda^2 (1 - e^{-2t lambda})."""
    H, _, x0 = _example()
    eta, times = 0.1, np.array([0.0, 0.3, 1.0, 5.0])
    values, vectors = np.linalg.eigh(H)
    coordinates = vectors.T @ x0
    expected = [
        0.5 * np.sum(values * coordinates**2 * np.exp(-2 * t * values))
        + eta / 4 * np.sum(values**2 * (1 - np.exp(-2 * t * values)))
        for t in times
    ]
    assert np.allclose(sde_expected_loss_curve(H, H @ H, eta, x0=x0, times=times), expected, rtol=EXACT, atol=0)


def test_linear_sde_moments_ornstein_uhlenbeck_with_offset_and_initial_covariance() -> None:
    """dX = (aX + b) dt + g dW: mean -b/a + e^{at}(mu0 + b/a), var e^{2at} P0 + g^2 (e^{2at} - 1)/(2a)."""
    a, b, g, mu0, p0 = -0.7, 0.4, 0.9, 2.0, 0.3
    times = np.array([0.0, 0.5, 2.0, 6.0])
    result = linear_sde_moments([[a]], [[g]], [mu0], times, cov0=[[p0]], offset=[b])
    growth = np.exp(a * times)
    assert np.allclose(result.mean[:, 0], -b / a + growth * (mu0 + b / a), rtol=ODE, atol=0)
    assert np.allclose(result.cov[:, 0, 0], growth**2 * p0 + g**2 * (growth**2 - 1) / (2 * a), rtol=ODE, atol=0)
    wrong = linear_sde_moments([[a]], [[g]], [mu0], times, cov0=[[p0]])  # offset dropped: detectably different
    assert not np.allclose(wrong.mean[:, 0], result.mean[:, 0], rtol=1e-3)


def test_linear_sde_moments_underdamped_momentum_sde_reaches_its_stationary_law() -> None:
    """Oracle 12 through the generic ODE: dX = -M dt, dM = c(HX - M) dt + c sqrt(eta) Sigma^{1/2} dW."""
    H, Sigma, _ = _example()
    eta, c, d = 0.1, 2.0, 3
    drift = np.block([[np.zeros((d, d)), -np.eye(d)], [c * H, -c * np.eye(d)]])
    diffusion = np.vstack([np.zeros((d, d)), c * np.sqrt(eta) * np.linalg.cholesky(Sigma)])
    result = linear_sde_moments(drift, diffusion, np.zeros(2 * d), [60.0])
    stationary = underdamped_sde_stationary_moments(H, Sigma, eta, c)
    assert _relative_gap(result.cov[0, :d, :d], stationary.cov_x) < ODE
    assert _relative_gap(result.cov[0, d:, d:], stationary.cov_m) < ODE
    assert _relative_gap(result.cov[0, :d, d:], stationary.cov_xm) < 1e-7


# --- bad input ------------------------------------------------------------------------------------------------------


def test_bad_arguments_rejected() -> None:
    H, Sigma, x0 = _example()
    with pytest.raises(ValueError, match=r"x0 must have shape \(3,\)"):
        discrete_moments(H, Sigma, 0.1, x0=[1.0, 2.0], steps=3)
    with pytest.raises(ValueError, match="x0 must be finite"):
        expected_loss_curve(H, Sigma, 0.1, x0=[1.0, np.nan, 0.0], steps=3)
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        discrete_moments(H, Sigma, 0.1, x0=x0, steps=-1)
    with pytest.raises(ValueError, match="method must be 'eigenbasis' or 'dense'"):
        discrete_moments(H, Sigma, 0.1, x0=x0, steps=1, method="fast")
    with pytest.raises(ValueError, match="times must be finite, >= 0 and non-decreasing"):
        sde_moments(H, Sigma, 0.1, x0=x0, times=[1.0, 0.5])
    with pytest.raises(ValueError, match="Sigma must be positive semi-definite"):
        sde_moments(H, -Sigma, 0.1, x0=x0, times=[1.0])
    with pytest.raises(ValueError, match="positive definite"):
        sde_expected_loss_curve(-H, Sigma, 0.1, x0=x0, times=[1.0])
    with pytest.raises(ValueError, match=r"diffusion must have shape"):
        linear_sde_moments(H, np.ones((2, 2)), x0, [1.0])
    with pytest.raises(ValueError, match="drift must be finite"):
        linear_sde_moments(H * np.nan, Sigma, x0, [1.0])
