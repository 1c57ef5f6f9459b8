"""Where momentum matters (THEORY.md 2.4, 5.3-5.4; Lemma 2.4, claim 8): the regime loss ratio, its symbolic
identity, and the measured stability edge of update rules against the derived thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from theory import quadratic_symbolic as qs
from theory.forms import normalized_nesterov_step, normalized_step, sgd_step
from theory.quadratic import (
    EDGE_WINDOW,
    measured_stability_edge,
    regime_loss_ratio,
    spectral_radius,
    stability_threshold,
    stationary_covariance,
)

# --- regime_loss_ratio and its identity ---------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("eta_h", [1e-3, 0.05, 0.5, 1.0, 1.5, 1.9, 1.999])
def test_regime_ratio_is_the_exact_stationary_loss_ratio(eta_h: float, beta: float) -> None:
    ratio, lemma_ratio = regime_loss_ratio(eta_h, beta)
    exact = stationary_covariance([[1.0]], [[1.0]], eta_h)[0, 0] / stationary_covariance([[1.0]], [[1.0]], eta_h, beta)
    assert ratio == pytest.approx(float(exact[0, 0]), rel=1e-12)
    # R is Lemma 2.4's curvature / noise term h^2 E x^2 / s^2 at SGD's stationary law (h = s = 1)
    assert lemma_ratio == pytest.approx(float(stationary_covariance([[1.0]], [[1.0]], eta_h)[0, 0]), rel=1e-12)


def test_regime_ratio_values() -> None:
    assert regime_loss_ratio(0.5, 0.9) == pytest.approx((1 + 1.8 / 1.9 / 3, 1 / 3), rel=1e-15)
    assert regime_loss_ratio(1.0, 0.0) == (1.0, 1.0)  # SGD against itself
    ratio, lemma_ratio = regime_loss_ratio(1.9, 0.9)
    assert lemma_ratio == pytest.approx(19.0) and ratio > 18  # curvature-dominated: momentum matters


@pytest.mark.parametrize(
    ("eta_h", "beta", "message"),
    [
        (0.0, 0.5, r"stability threshold eta\*h = 2"),
        (2.0, 0.5, r"must lie in \(0, 2\)"),
        (2.5, 0.5, r"stability threshold eta\*h = 2"),
        (-0.1, 0.5, r"must lie in \(0, 2\)"),
        (float("nan"), 0.5, r"must lie in \(0, 2\)"),
        (True, 0.5, r"eta_h .* must lie in \(0, 2\) .*\(a real number\), got True \(a bool\)"),
        ("fast", 0.5, r"eta_h .* \(a real number\), got 'fast' \(a string\)"),
        (0.5, 1.0, r"beta must lie in \[0, 1\)"),
        (0.5, -0.1, r"beta must lie in \[0, 1\)"),
        (0.5, False, r"beta must lie in \[0, 1\) \(a real number\), got False \(a bool\)"),
    ],
)
def test_regime_ratio_rejects_bad_inputs(eta_h: object, beta: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        regime_loss_ratio(eta_h, beta)


def test_regime_identity_is_proved_from_the_derived_variances() -> None:
    assert qs.prove_regime_identity() is True
    typed_in_sgd = qs.eta * qs.s**2 / (qs.h * (2 - qs.eta * qs.h))
    typed_in_sgdm = qs.eta * qs.s**2 * (1 + qs.beta) / (qs.h * (2 * (1 + qs.beta) - qs.eta * qs.h * (1 - qs.beta)))
    assert qs.prove_regime_identity(typed_in_sgd, typed_in_sgdm) is True


@pytest.mark.parametrize(
    "wrong",
    [
        # sign slip in the momentum factor of SGDM's denominator
        {"var_sgdm": qs.eta * qs.s**2 * (1 + qs.beta) / (qs.h * (2 * (1 + qs.beta) - qs.eta * qs.h * (1 + qs.beta)))},
        # the SDE's variance for SGD (no O(eta) correction)
        {"var_sgd": qs.eta * qs.s**2 / (2 * qs.h)},
        # PyTorch's gamma in place of eta in SGDM's variance
        {"var_sgdm": qs.stationary_variance_symbolic("sgdm").subs(qs.eta, qs.eta * (1 - qs.beta))},
    ],
)
def test_a_wrong_variance_formula_breaks_the_identity(wrong: dict[str, sp.Expr]) -> None:
    assert qs.prove_regime_identity(**wrong) is False


# --- measured stability edge ------------------------------------------------------------------------------------


def _accuracy(betas: np.ndarray, steps: int) -> np.ndarray:
    """Documented edge accuracy in spectral radius: 0 <= 1 - rho <= log|c| / (K - W), |c| <= (1+beta)/(1-beta), with
    one unit of log-amplitude to spare for the second root and for c evaluated off the edge."""
    return (np.log((1 + betas) / (1 - betas)) + 1.0) / (steps - EDGE_WINDOW)


def test_sgd_edge_is_two() -> None:
    edges = measured_stability_edge(sgd_step, [0.0, 0.5])
    np.testing.assert_allclose(edges, 2.0, rtol=1e-9)  # x_k = (1 - eta h)^k: no amplitude factor, c = 1


@pytest.mark.parametrize(
    ("step", "method"), [(normalized_step, "heavy_ball"), (normalized_nesterov_step, "nesterov")], ids=["hb", "nes"]
)
def test_momentum_edges_are_the_derived_thresholds(step, method: str) -> None:
    betas = np.array([0.0, 0.5, 0.9])
    steps = 2000
    edges = measured_stability_edge(step, betas, steps=steps)
    thresholds = stability_threshold(betas, method)
    radius = spectral_radius(edges, betas, method)
    assert np.all(radius <= 1.0 + 1e-9) and np.all(1.0 - radius <= _accuracy(betas, steps)), radius
    np.testing.assert_allclose(edges, thresholds, rtol=1e-2)
    if method == "heavy_ball":
        assert edges[-1] == pytest.approx(38.0, rel=1e-2)  # 2 (1 + beta) / (1 - beta) at beta = 0.9


def _unnormalized_step(x, m, g, eta, beta):
    """A plausible wrong rule: momentum without the (1 - beta) factor, m = beta m + g; x -= eta m (PyTorch's buffer
    with eta as its rate), so the effective rate is eta / (1 - beta)."""
    m = beta * m + g
    return x - eta * m, m


def test_an_unnormalized_momentum_rule_has_a_different_edge() -> None:
    edge = float(measured_stability_edge(_unnormalized_step, [0.9])[0])
    assert edge == pytest.approx(2 * 1.9, rel=1e-2)  # gamma h < 2 (1 + beta) with gamma = eta
    assert abs(edge / float(stability_threshold(0.9)) - 1) > 0.5


def test_a_rule_that_never_diverges_is_reported() -> None:
    def ignores_the_gradient(x, m, g, eta, beta):
        return x, m

    with pytest.raises(ValueError, match="never diverges"):
        measured_stability_edge(ignores_the_gradient, [0.5], steps=100)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bracket": (2.5, 10.0), "steps": 200}, "already diverges at the lower end"),
        ({"bracket": (0.0, 10.0)}, "bracket must be"),
        ({"bracket": (5.0, 1.0)}, "bracket must be"),
        ({"bracket": (1.0, math.inf)}, "bracket must be"),
        ({"iterations": 0}, "iterations must be"),
        ({"steps": EDGE_WINDOW}, "steps must be an integer >"),
        ({"steps": 100.0}, "steps must be an integer >"),
    ],
)
def test_edge_inputs_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measured_stability_edge(sgd_step, [0.5], **kwargs)


def test_edge_rejects_a_non_rule_and_bad_momenta() -> None:
    with pytest.raises(ValueError, match="step must be an update rule"):
        measured_stability_edge("sgd", [0.5])
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\)"):
        measured_stability_edge(sgd_step, [0.5, 1.0])
    with pytest.raises(ValueError, match="at least one momentum"):
        measured_stability_edge(sgd_step, [])


def test_sgd_step_is_normalized_momentum_at_beta_zero() -> None:
    x, m, g, eta, beta = sp.symbols("x m g eta beta")
    assert sgd_step(x, m, g, eta, beta) == (x - eta * g, m)
    x_next, _ = normalized_step(x, m, g, eta, 0)
    assert sp.simplify(x_next - sgd_step(x, m, g, eta, beta)[0]) == 0
