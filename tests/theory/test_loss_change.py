"""Lemma 2.4 terms (THEORY.md 2.3) against exact one-step expectations on a quadratic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.loss_change import derive_one_step_expansion, lemma_2_4_terms, svag_lemma_2_4_terms


def _spd(seed: int, d: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


@given(seed=st.integers(0, 10_000), d=st.integers(1, 5), eta=st.floats(1e-3, 1.0))
def test_expansion_is_exact_on_a_quadratic(seed: int, d: int, eta: float) -> None:
    """On L = x'Hx/2 the expansion has no remainder: E L(x - eta g) - L(x) equals the three terms."""
    rng = np.random.default_rng(seed)
    h, cov, x = _spd(seed, d), _spd(seed + 1, d), rng.normal(size=d)
    grad = h @ x
    # E[(x - eta g)' H (x - eta g)]/2 with E g = Hx, Cov g = cov, in closed form:
    mean = x - eta * grad
    exact_change = 0.5 * (mean @ h @ mean + eta**2 * np.trace(h @ cov)) - 0.5 * x @ h @ x
    assert lemma_2_4_terms(grad, h, cov, eta).total == pytest.approx(exact_change, rel=1e-10, abs=1e-12)


@given(eta=st.floats(1e-3, 1.0), ell=st.integers(1, 64))
def test_svag_divides_curvature_by_ell_keeps_noise(eta: float, ell: int) -> None:
    grad, h, cov = np.array([1.0, -2.0]), np.array([[2.0, 0.3], [0.3, 1.0]]), np.array([[0.5, 0.1], [0.1, 0.7]])
    base, svag = lemma_2_4_terms(grad, h, cov, eta), svag_lemma_2_4_terms(grad, h, cov, eta, ell)
    assert svag.descent == pytest.approx(base.descent, rel=1e-12)
    assert svag.noise == pytest.approx(base.noise, rel=1e-12)
    assert svag.curvature == pytest.approx(base.curvature / ell, rel=1e-12)


def test_third_order_coefficient_in_one_dimension() -> None:
    import sympy as sp

    terms = derive_one_step_expansion(1)
    x1 = sp.Symbol("x1", real=True)
    eta, sigma, s11 = (
        sp.Symbol("eta", positive=True),
        sp.Symbol("sigma", positive=True),
        sp.Symbol("Sigma11", real=True),
    )
    d1, d3 = sp.diff(sp.Function("L")(x1), x1), sp.diff(sp.Function("L")(x1), x1, 3)
    # E[-(eta^3/6) L''' g^3] with g = L' + sigma v, E v^2 = Sigma11, E v^3 = 0.
    expected = -(eta**3) / 6 * d3 * (d1**3 + 3 * d1 * sigma**2 * s11)
    assert sp.simplify(terms["order3"] - expected) == 0


def test_regime_indicator() -> None:
    terms = lemma_2_4_terms([1.0], [[2.0]], [[0.5]], 0.1)
    assert terms.curvature_to_noise == pytest.approx((1.0 * 2.0 * 1.0) / (2.0 * 0.5))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, 2.0], [[1.0]], [[1.0]], 0.1), "need grad"),
        (([np.nan], [[1.0]], [[1.0]], 0.1), "grad must be finite"),
        (([1.0], [[1.0]], [[1.0]], -0.1), r"eta .* \(0, inf\)"),
    ],
)
def test_bad_input(args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lemma_2_4_terms(*args)
