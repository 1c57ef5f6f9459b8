"""SymPy derivations on noisy quadratics (THEORY.md 3.5, 4.3, 5.2-5.5; oracles 6-18), in exact arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from theory import quadratic_symbolic as qs
from theory.quadratic import (
    sde_stationary_covariance,
    stability_threshold,
    stationary_covariance,
    stationary_moments,
    stationary_pair_factors,
    transition_matrix,
    underdamped_sde_stationary_moments,
)
from theory.svag import svag_coefficients

beta, eta, gamma, h, s = qs.beta, qs.eta, qs.gamma, qs.h, qs.s
R = sp.Rational
REL = 1e-13  # float64 evaluation of a closed form with a handful of operations


def _same(a: sp.Expr, b: sp.Expr) -> bool:
    return sp.simplify(a - b) == 0


def _in_gamma(expr: sp.Expr) -> sp.Expr:
    """Rewrite an expression in eta (effective) as one in PyTorch's gamma = eta (1 - beta)."""
    return sp.simplify(expr.subs(eta, gamma / (1 - beta)))


# --- transition matrices, characteristic polynomials, stability (oracles 15-17) ---------------------------------


@pytest.mark.parametrize("form", qs.FORMS)
def test_symbolic_transition_matches_numeric(form: str) -> None:
    A, b = qs.transition_matrix_symbolic(form)
    values = {h: R(7, 5), eta: R(3, 10), beta: R(4, 5)}
    numeric = transition_matrix([[1.4]], 0.3, 0.8, form)
    assert np.allclose(np.array(A.subs(values), dtype=float), numeric.transition, rtol=REL, atol=0)
    assert np.allclose(np.array(b.subs(values), dtype=float), numeric.noise_input, rtol=REL, atol=0)


def test_characteristic_polynomials_in_pytorch_lr() -> None:
    """Oracle 16: heavy ball r^2-(1+b-g l)r+b; Nesterov r^2-(1+b)(1-g l)r+b(1-g l), for every form."""
    lam, r = sp.Symbol("lambda", positive=True), qs.r
    heavy_ball = r**2 - (1 + beta - gamma * lam) * r + beta
    nesterov = r**2 - (1 + beta) * (1 - gamma * lam) * r + beta * (1 - gamma * lam)
    expected = {"normalized": heavy_ball, "pytorch": heavy_ball, "polyak": heavy_ball}
    expected |= {"nesterov": nesterov, "pytorch_nesterov": nesterov}
    in_gamma = {
        form: qs.characteristic_polynomial_symbolic(form).subs(qs.eta_h, gamma * lam / (1 - beta)) for form in expected
    }
    for form, polynomial in expected.items():
        assert _same(in_gamma[form], polynomial), form
    assert not _same(in_gamma["nesterov"], heavy_ball)


def test_stability_thresholds_from_jury() -> None:
    """Oracle 15 and THEORY.md 5.3, derived (not copied) from the Jury conditions."""
    expected = {
        "sgd": sp.Integer(2),
        "heavy_ball": 2 * (1 + beta) / (1 - beta),
        "nesterov": 2 * (1 + beta) / ((1 - beta) * (1 + 2 * beta)),
    }
    for method, threshold in expected.items():
        derivation = qs.derive_stability(method)
        assert _same(derivation.threshold, threshold), method
        assert derivation.lower == 0
    at_09 = {method: qs.stability_threshold_symbolic(method).subs(beta, R(9, 10)) for method in expected}
    assert at_09 == {"sgd": 2, "heavy_ball": 38, "nesterov": R(95, 7)}  # eta*lambda < 38; 13.57
    assert qs.derive_stability("heavy_ball").threshold_pytorch.subs(beta, R(9, 10)) == R(19, 5)  # gamma*lambda < 3.8
    assert qs.derive_stability("nesterov").threshold_pytorch.subs(beta, R(9, 10)) == R(19, 14)
    assert qs.derive_stability("sgd").threshold_pytorch == 2


def test_numeric_threshold_equals_symbolic() -> None:
    for method in ("sgd", "heavy_ball", "nesterov"):
        threshold = sp.lambdify(beta, qs.stability_threshold_symbolic(method))
        grid = np.linspace(0.0, 0.99, 34)
        assert np.allclose(stability_threshold(grid, method), threshold(grid) + 0 * grid, rtol=REL, atol=0)


def test_sign_proof_rejects_a_sign_change() -> None:
    """The Sturm-sequence step that makes the derivation valid for all beta detects a sign change."""
    assert qs._sign_on_unit_interval((1 + beta) / (1 - beta)) == 1
    with pytest.raises(ValueError, match="changes sign"):
        qs._sign_on_unit_interval(beta - R(1, 3))


def test_critical_damping() -> None:
    """Oracle 17: the heavy-ball discriminant vanishes at gamma*h = (1 -+ sqrt(beta))^2."""
    low, high = qs.critical_damping_symbolic()
    assert _same(low, (1 - sp.sqrt(beta)) ** 2)
    assert _same(high, (1 + sp.sqrt(beta)) ** 2)


# --- stationary moments (oracles 6-14) ----------------------------------------------------------------------------


def test_pair_formula_matches_hand_written_closed_form() -> None:
    """The NumPy closed form, fed SymPy symbols, equals the solved 2x2 Stein equation exactly."""
    pair = qs.stationary_pair_symbolic("normalized")
    f_xx, f_xm, f_mm = stationary_pair_factors(qs.h_i, qs.h_j, eta, beta)
    assert _same(pair[0, 0], f_xx)
    assert _same(pair[0, 1], f_xm)
    assert _same(pair[1, 0], f_xm.subs({qs.h_i: qs.h_j, qs.h_j: qs.h_i}, simultaneous=True))
    assert _same(pair[1, 1], f_mm)
    sgd_pair = qs.stationary_pair_symbolic("sgd")[0, 0]
    assert _same(sgd_pair, eta / (qs.h_i + qs.h_j - eta * qs.h_i * qs.h_j))
    assert _same(sgd_pair, f_xx.subs(beta, 0))


def test_pair_comparison_detects_a_wrong_closed_form() -> None:
    pair = qs.stationary_pair_symbolic("normalized")
    f_xx, _, _ = stationary_pair_factors(qs.h_i, qs.h_j, eta, beta)
    # Plausible slip: (h_i - beta h_j)^2 for (h_i - beta h_j)(h_j - beta h_i); agrees on the diagonal only.
    wrong = eta * (1 - beta**2) / ((1 - beta**2) * (qs.h_i + qs.h_j) - eta * (qs.h_i - beta * qs.h_j) ** 2)
    assert _same(wrong.subs(qs.h_j, qs.h_i), f_xx.subs(qs.h_j, qs.h_i))
    assert not _same(pair[0, 0], wrong)


def test_one_dimensional_variances() -> None:
    """THEORY.md 5.4, 4.3: SGD, normalized SGDM and the SMEs."""
    assert _same(qs.stationary_variance_symbolic("sgd"), eta * s**2 / (h * (2 - eta * h)))
    assert _same(
        qs.stationary_variance_symbolic("sgdm"), eta * s**2 * (1 + beta) / (h * (2 * (1 + beta) - eta * h * (1 - beta)))
    )
    assert _same(qs.stationary_variance_symbolic("sme1"), eta * s**2 / (2 * h))
    assert _same(qs.stationary_variance_symbolic("sme2"), eta * s**2 / (h * (2 + eta * h)))


def test_oracle_6_sgd_unit_variance() -> None:
    assert qs.stationary_variance_symbolic("sgd").subs({eta: 1, h: 1, s: 1}) == 1
    assert stationary_covariance([[1.0]], [[1.0]], 1.0)[0, 0] == pytest.approx(1.0, rel=REL)


HEAVY_BALL_CASES = [  # (gamma, h, beta, s) -> E x^2, oracle 7
    ((R(1, 10), 1, R(9, 10), 1), R(19, 37)),
    ((R(1, 2), 1, R(1, 2), 1), R(3, 5)),
    ((R(1, 20), 2, R(19, 20), R(1, 2)), R(39, 608)),
]


@pytest.mark.parametrize(("params", "expected"), HEAVY_BALL_CASES)
def test_oracle_7_heavy_ball_variance(params: tuple, expected: sp.Rational) -> None:
    gamma_v, h_v, beta_v, s_v = params
    pytorch = _in_gamma(qs.stationary_moments_1d_symbolic("pytorch")[0, 0])
    assert pytorch.subs({gamma: gamma_v, h: h_v, beta: beta_v, s: s_v}) == expected
    eta_v = float(gamma_v / (1 - beta_v))
    numeric = stationary_covariance([[float(h_v)]], [[float(s_v) ** 2]], eta_v, float(beta_v))
    assert numeric[0, 0] == pytest.approx(float(expected), rel=REL)


def test_oracle_8_heavy_ball_velocity_moments() -> None:
    """Polyak state (x_k, x_{k-1}), v = x_k - x_{k-1}: E v^2 = 2 E[x v], formulas of THEORY.md 5.4."""
    P = qs.stationary_moments_1d_symbolic("polyak")
    e_xx, e_vv, e_xv = P[0, 0], P[0, 0] - 2 * P[0, 1] + P[1, 1], P[0, 0] - P[0, 1]
    denominator = (1 - beta) * (2 * (1 + beta) - gamma * h)
    assert _same(_in_gamma(e_vv), 2 * gamma**2 * s**2 / denominator)
    assert _same(_in_gamma(e_xv), gamma**2 * s**2 / denominator)
    assert _same(e_vv, 2 * e_xv)
    assert _same(_in_gamma(e_xx), gamma * s**2 * (1 + beta) / (h * denominator))


def test_oracle_9_normalized_equals_heavy_ball_variance() -> None:
    """Same x-variance for eq. (3), PyTorch and Polyak under gamma = eta (1 - beta); buffers map m = (1-beta) b."""
    normalized = qs.stationary_moments_1d_symbolic("normalized")
    pytorch = qs.stationary_moments_1d_symbolic("pytorch")
    assert _same(normalized[0, 0], pytorch[0, 0])
    assert _same(normalized[0, 0], qs.stationary_moments_1d_symbolic("polyak")[0, 0])
    assert _same(normalized[1, 1], (1 - beta) ** 2 * pytorch[1, 1])
    assert not _same(normalized[0, 0], qs.stationary_moments_1d_symbolic("nesterov")[0, 0])


@pytest.mark.parametrize(("ell", "expected"), [(1, R(1, 3)), (4, R(4, 15)), (16, R(16, 63))])
def test_oracle_10_svag_variance(ell: int, expected: sp.Rational) -> None:
    """SVAG(ell) is SGD with rate eta/ell and noise variance (r1^2 + r2^2) s^2 = ell s^2 (THEORY.md 6.4)."""
    r1, r2 = svag_coefficients(ell)
    noise = R(round(r1**2 + r2**2))  # = ell up to rounding of the square root
    variance = qs.stationary_variance_symbolic("sgd").subs({eta: R(1, 2) / ell, h: 1, s: sp.sqrt(noise)})
    assert variance == expected
    assert stationary_covariance(1.0, r1**2 + r2**2, 0.5 / ell)[0, 0] == pytest.approx(float(expected), rel=1e-12)


def test_oracle_11_sme_gaps() -> None:
    gap1, gap2 = (gap.removeO() for gap in qs.sme_gap_series(4))
    assert _same(gap1.coeff(eta, 2), s**2 / 4)
    assert _same(gap1.coeff(eta, 3), h * s**2 / 8)
    assert gap1.coeff(eta, 1) == 0
    assert _same(gap2.coeff(eta, 2), s**2 / 2)
    assert gap2.coeff(eta, 3) == 0  # exact - SME2 = eta^2 s^2 / 2 + O(eta^4)
    assert gap2.coeff(eta, 4) != 0
    numeric_sme1 = sde_stationary_covariance([[2.0]], [[3.0]], 0.1)[0, 0]
    numeric_sme2 = sde_stationary_covariance([[2.0]], [[3.0]], 0.1, order=2)[0, 0]
    assert numeric_sme1 == pytest.approx(0.1 * 3 / 4, rel=REL)
    assert numeric_sme2 == pytest.approx(0.1 * 3 / (2 * 2.2), rel=REL)


def test_oracle_12_underdamped_sde() -> None:
    nu, a, q = sp.symbols("nu a q", positive=True)
    P = qs.underdamped_stationary_symbolic()
    assert _same(P[0, 0], q / (2 * a * nu))
    assert _same(P[1, 1], q / (2 * nu))
    assert P[0, 1] == 0
    assert _same(qs.stationary_variance_symbolic("underdamped"), eta * s**2 / (2 * h))  # independent of c
    for c in (0.5, 2.0, 50.0):
        moments = underdamped_sde_stationary_moments([[2.0, 0.0], [0.0, 0.5]], [[3.0, 0.0], [0.0, 0.4]], 0.1, c)
        assert np.allclose(moments.cov_x, np.diag([0.1 * 3 / 4, 0.1 * 0.4 / 1.0]), rtol=1e-12, atol=0)
        assert np.allclose(moments.cov_m, c * 0.1 * np.diag([3.0, 0.4]) / 2, rtol=1e-12, atol=0)
        scale = np.sqrt(np.max(moments.cov_x) * np.max(moments.cov_m))  # Cauchy-Schwarz bound on |Cov(X, M)|
        assert np.max(np.abs(moments.cov_xm)) <= 1e-13 * scale


def test_oracle_13_commuting_heavy_ball() -> None:
    H, C = sp.diag(2, R(1, 2)), sp.diag(1, R(2, 5))
    exact = qs.stationary_covariance_symbolic(H, C, 1, R(4, 5))  # gamma = .2, beta = .8 -> eta = 1
    assert exact == sp.diag(R(9, 32), R(72, 175))
    for method in ("closed_form", "lyapunov"):
        numeric = stationary_covariance(np.diag([2.0, 0.5]), np.diag([1.0, 0.4]), 1.0, 0.8, method=method)
        assert np.allclose(numeric, np.diag([9 / 32, 72 / 175]), rtol=1e-12, atol=1e-15)


def test_oracle_14_non_commuting_heavy_ball() -> None:
    H = sp.Matrix([[2, R(1, 2)], [R(1, 2), R(1, 2)]])
    C = sp.Matrix([[1, R(-3, 10)], [R(-3, 10), R(2, 5)]])
    exact = qs.stationary_covariance_symbolic(H, C, 1, R(4, 5))
    assert exact == sp.Matrix([[R(187072, 647155), R(-148054, 647155)], [R(-148054, 647155), R(530524, 647155)]])
    stated = np.array([[0.28907, -0.22878], [-0.22878, 0.81978]])  # THEORY.md oracle 14, five decimals
    exact_float = np.array(exact, dtype=float)
    assert np.max(np.abs(exact_float - stated)) <= 5e-6
    for method in ("closed_form", "lyapunov"):
        numeric = stationary_covariance(np.array(H, dtype=float), np.array(C, dtype=float), 1.0, 0.8, method=method)
        assert np.allclose(numeric, exact_float, rtol=1e-12, atol=0)


def test_exact_matrix_solution_agrees_with_pair_formula_for_momentum_and_cross() -> None:
    H = np.array([[2.0, 0.5], [0.5, 0.5]])
    C = np.array([[1.0, -0.3], [-0.3, 0.4]])
    moments = stationary_moments(H, C, 1.0, 0.8)
    exact = np.array(qs.stationary_covariance_symbolic(H, C, 1, 0.8), dtype=float)
    assert np.allclose(moments.cov_x, exact, rtol=1e-12, atol=0)
    exact_sde = np.array(qs.sde_stationary_covariance_symbolic(H, C, R(1, 10)), dtype=float)
    assert np.allclose(sde_stationary_covariance(H, C, 0.1), exact_sde, rtol=1e-12, atol=0)
    exact_sme2 = np.array(qs.sde_stationary_covariance_symbolic(H, C, R(1, 10), order=2), dtype=float)
    assert np.allclose(sde_stationary_covariance(H, C, 0.1, order=2), exact_sme2, rtol=1e-12, atol=0)


def test_sde_pair_formulas() -> None:
    assert _same(qs.sde_stationary_pair_symbolic(1), eta / (qs.h_i + qs.h_j))
    rate = lambda c: c + eta * c**2 / 2  # noqa: E731
    assert _same(qs.sde_stationary_pair_symbolic(2), eta / (rate(qs.h_i) + rate(qs.h_j)))


# --- series (oracles 11, 18; THEORY.md 5.5) -------------------------------------------------------------------------


def test_oracle_18_sgd_minus_sgdm() -> None:
    series = qs.sgd_minus_sgdm_series(4).removeO()
    assert series.coeff(eta, 1) == 0  # O(eta) agreement
    assert _same(series.coeff(eta, 2), beta * s**2 / (2 * (1 + beta)))
    relative = sp.series(
        (qs.stationary_variance_symbolic("sgd") - qs.stationary_variance_symbolic("sgdm"))
        / qs.stationary_variance_symbolic("sgd"),
        eta,
        0,
        2,
    ).removeO()
    assert _same(relative, beta / (1 + beta) * eta * h)


def test_leading_order_agreement_for_every_pair() -> None:
    """SGD, SGDM, SME1 and SME2 share the eigenbasis entry eta S_ij / (h_i + h_j) at O(eta) (claim 4)."""
    leading = {model: qs.series_coefficients(model, 2, pair=True) for model in ("sgd", "sgdm", "sme1", "sme2")}
    for model, (first, _) in leading.items():
        assert _same(first, 1 / (qs.h_i + qs.h_j)), model
    assert not _same(leading["sgd"][1], leading["sgdm"][1])
    assert _same(leading["sgd"][1], qs.h_i * qs.h_j / (qs.h_i + qs.h_j) ** 2)


@pytest.mark.parametrize("order", [1, 3, 5])
def test_series_table(order: int) -> None:
    """THEORY.md 5.5: coefficient of eta^(n+1) is s^2 h^(n-1) q^n / 2^(n+1), q = 1, r, -1 (SGD, SGDM, SME2)."""
    ratio = (1 - beta) / (1 + beta)
    for model, q in (("sgd", 1), ("sgdm", ratio), ("sme2", -1)):
        coefficients = qs.series_coefficients(model, order)
        for n, coefficient in enumerate(coefficients):
            assert _same(coefficient, s**2 * h ** (n - 1) * q**n / 2 ** (n + 1)), (model, n)
    assert qs.series_coefficients("sme1", order)[0] == s**2 / (2 * h)
    assert all(c == 0 for c in qs.series_coefficients("sme1", order)[1:])
    ell = sp.Symbol("ell", positive=True)  # SVAG(ell): SGD at eta/ell with noise ell s^2
    svag = qs.stationary_variance_symbolic("sgd").subs({eta: eta / ell, s: sp.sqrt(ell) * s}, simultaneous=True)
    svag_series = sp.series(svag, eta, 0, order + 1).removeO()
    for n in range(order):
        assert _same(svag_series.coeff(eta, n + 1), s**2 / (2 * h) * (h / (2 * ell)) ** n)


def test_series_equals_exact_at_small_eta() -> None:
    """Truncation error of the order-3 series is O(eta^4): check at eta = 1e-2 in exact rationals."""
    values = {h: R(3, 2), s: 1, beta: R(1, 2), eta: R(1, 100)}
    exact = qs.stationary_variance_symbolic("sgdm").subs(values)
    truncated = qs.stationary_series("sgdm", 3).removeO().subs(values)
    fourth = ((1 - beta) / (1 + beta)) ** 3 * h**2 * s**2 / 16 * eta**4
    assert abs(exact - truncated - fourth.subs(values)) < R(1, 10**12)


def test_ratio_series_coefficient() -> None:
    ratio = qs.covariance_ratio_series(2).removeO()
    assert ratio.coeff(eta, 0) == 1
    h_i, h_j = qs.h_i, qs.h_j
    c1 = -beta * (h_i**2 + h_j**2 - 2 * beta * h_i * h_j) / ((1 - beta**2) * (h_i + h_j))
    assert _same(ratio.coeff(eta, 1), c1)
    assert _same(c1.subs({h_i: h, h_j: h}), -beta * h / (1 + beta))


def test_order_is_validated() -> None:
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        qs.stationary_series("sgd", 0)
    with pytest.raises(ValueError, match="model must be one of"):
        qs.stationary_variance_symbolic("adam")


# --- transient (oracle 19), caching, text -------------------------------------------------------------------------


def test_oracle_19_sgd_transient_risk_equals_iterated_recursion() -> None:
    risk, residual = qs.sgd_transient_risk_symbolic()
    assert residual == 0
    sigma2, loss0, t = sp.Symbol("sigma2", positive=True), sp.Symbol("L0", positive=True), qs.t
    assert _same(risk.subs(t, 0), loss0)
    # Exact rational iteration of s_{t+1} = (1 - eta h)^2 s_t + eta^2 sigma^2, loss h s / 2.
    eta_v, h_v, sigma2_v, x0 = Fraction(3, 10), Fraction(5, 2), Fraction(2, 7), Fraction(3, 2)
    values = {eta: R(3, 10), h: R(5, 2), sigma2: R(2, 7), loss0: R(5, 2) * R(3, 2) ** 2 / 2}
    at_values = risk.subs(values)
    wrong = risk.subs(t, t + 1).subs(values)  # off-by-one exponent: must be caught
    second = x0 * x0
    for step in range(40):
        iterated = h_v * second / 2
        assert at_values.subs(t, step) == R(iterated.numerator, iterated.denominator)
        assert step == 0 or wrong.subs(t, step) != R(iterated.numerator, iterated.denominator)
        second = (1 - eta_v * h_v) ** 2 * second + eta_v**2 * sigma2_v


def test_derivations_are_cached() -> None:
    """A repeated derivation is a cache hit returning the same object (no timing assertion: counts are exact)."""
    first = qs.stationary_series("sgdm", 4)
    hits = qs.stationary_series.cache_info().hits
    assert qs.stationary_series("sgdm", 4) is first
    assert qs.stationary_series.cache_info().hits == hits + 1
    assert qs.derive_stability("nesterov") is qs.derive_stability("nesterov")
    assert qs.stationary_pair_symbolic("normalized") is qs.stationary_pair_symbolic("normalized")


def test_format_functions() -> None:
    assert "0 < eta*h < 2" in qs.format_stability()
    assert r"\gamma h<2 \left(\beta + 1\right)" in qs.format_stability(latex=True)
    assert "polyak" in qs.format_transition() and "det(rI - A)" in qs.format_transition()
    assert qs.format_transition(form="sgd").count("\n") == 1
    assert "sgdm: Var x = " in qs.format_stationary()
    text = qs.format_series(order=2)
    assert "SGD - SGDM = beta*eta**2*s**2/(2*(beta + 1)) + O(eta**3)" in text
    assert r"\frac{\eta s^{2}}{2 h}" in qs.format_series(latex=True, order=1)
