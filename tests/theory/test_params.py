"""Parameterisation conversions and the averaged schedule (THEORY.md 1.3, 1.5; oracle 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.params import MomentumParams, averaged_lr_schedule, effective_lr, pytorch_lr

REL = 1e-12  # conversions are one multiplication/division: a few ulps of float64
betas = st.floats(0.0, 0.999)
lrs = st.floats(1e-6, 10.0)


@given(gamma=lrs, beta=betas)
def test_effective_lr_round_trip(gamma: float, beta: float) -> None:
    eta = effective_lr(gamma, beta)
    assert eta == pytest.approx(gamma / (1 - beta), rel=REL)
    assert pytorch_lr(eta, beta) == pytest.approx(gamma, rel=REL)


@given(eta=lrs, beta=betas)
def test_momentum_params_from_pytorch_round_trip(eta: float, beta: float) -> None:
    params = MomentumParams(eta, beta)
    again = MomentumParams.from_pytorch(params.gamma, params.beta)
    assert again.eta == pytest.approx(eta, rel=REL)
    assert again.beta == beta
    assert params.coupling_coefficient == pytest.approx(eta * beta / (1 - beta), rel=REL)


@given(eta=st.floats(1e-4, 0.5), alpha=st.floats(0.0, 2.0), c=st.floats(0.1, 1.0))
def test_from_alpha_gives_one_minus_beta_c_eta_alpha(eta: float, alpha: float, c: float) -> None:
    params = MomentumParams.from_alpha(eta, alpha, c)
    assert 1 - params.beta == pytest.approx(c * eta**alpha, rel=1e-9)


def test_from_alpha_rejects_beta_out_of_range() -> None:
    with pytest.raises(ValueError, match="1 - beta"):
        MomentumParams.from_alpha(eta=4.0, alpha=1.0, c=1.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: effective_lr(0.1, 1.0), r"beta must lie in \[0, 1\)"),
        (lambda: effective_lr(0.1, -0.1), r"beta must lie in \[0, 1\)"),
        (lambda: effective_lr(-0.1, 0.5), r"gamma .* \(0, inf\)"),
        (lambda: effective_lr(math.nan, 0.5), r"gamma .* \(0, inf\)"),
        (lambda: pytorch_lr(math.inf, 0.5), r"eta .* \(0, inf\)"),
        (lambda: MomentumParams(0.0, 0.5), r"eta .* \(0, inf\)"),
        (lambda: MomentumParams(0.1, "x"), r"beta must lie in \[0, 1\) \(a real number\), got 'x' \(a string\)"),
    ],
)
def test_bad_hyperparameters_name_parameter_and_range(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def _direct_average(etas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """The defining sum, term by term: (1-beta_k) sum_{s>=k} eta_s prod_{tau=k+1}^{s} beta_tau."""
    horizon = len(etas)
    out = np.zeros(horizon)
    for k in range(horizon):
        total = 0.0
        for s in range(k, horizon):
            total += etas[s] * np.prod(betas[k + 1 : s + 1])
        out[k] = (1 - betas[k]) * total
    return out


@given(
    etas=st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=12),
    betas=st.lists(st.floats(0.0, 0.99), min_size=12, max_size=12),
)
def test_averaged_schedule_matches_defining_sum(etas: list[float], betas: list[float]) -> None:
    eta_arr, beta_arr = np.array(etas), np.array(betas[: len(etas)])
    np.testing.assert_allclose(averaged_lr_schedule(eta_arr, beta_arr), _direct_average(eta_arr, beta_arr), rtol=1e-12)


@given(eta=st.floats(1e-3, 1.0), beta=betas, horizon=st.integers(1, 50))
def test_averaged_schedule_constant(eta: float, beta: float, horizon: int) -> None:
    # Oracle 5: constant (eta, beta) continued forever gives eta; truncated at K gives eta (1 - beta^(K-k)).
    np.testing.assert_allclose(averaged_lr_schedule([eta] * horizon, beta, extend_last=True), eta, rtol=1e-12)
    k = np.arange(horizon)
    np.testing.assert_allclose(
        averaged_lr_schedule([eta] * horizon, beta), eta * (1 - beta ** (horizon - k)), rtol=1e-10
    )


def test_averaged_schedule_is_total_displacement_of_sgdm() -> None:
    """x_K - x_0 = -sum_k etabar_k g_k for eq. (3) with any schedule and any gradient sequence (m_0 = 0)."""
    rng = np.random.default_rng(0)
    horizon, dim = 200, 3
    etas = 0.1 * np.where(np.arange(horizon) < 120, 1.0, 0.1)  # a step decay
    betas = rng.uniform(0.5, 0.99, horizon)  # and a momentum schedule
    grads = rng.normal(size=(horizon, dim))
    x, m = np.zeros(dim), np.zeros(dim)
    for k in range(horizon):
        m = betas[k] * m + (1 - betas[k]) * grads[k]
        x = x - etas[k] * m
    predicted = -(averaged_lr_schedule(etas, betas)[:, None] * grads).sum(axis=0)
    np.testing.assert_allclose(x, predicted, rtol=1e-12, atol=1e-14)


def test_step_decay_is_smeared_over_momentum_memory() -> None:
    # THEORY.md 1.5: a drop in eta_k shows in etabar over the ~1/(1-beta) steps before it.
    etas = np.r_[np.full(100, 1.0), np.full(100, 0.1)]
    etabar = averaged_lr_schedule(etas, 0.9, extend_last=True)
    # D_99 = 1 + beta * D_100 with D_100 = 0.1 / (1 - beta) for the held tail; etabar = (1 - beta) D.
    assert etabar[99] == pytest.approx((1 - 0.9) * (1.0 + 0.9 * 0.1 / (1 - 0.9)), rel=1e-12)
    assert etabar[50] == pytest.approx(1.0, abs=1e-2)
    assert 0.1 < etabar[95] < 1.0


@pytest.mark.parametrize(
    ("etas", "betas", "match"),
    [
        ([], 0.5, "non-empty"),
        ([0.1, -0.1], 0.5, r"etas\[1\]"),
        ([0.1, 0.1], [0.5, 1.0], r"betas\[1\]"),
    ],
)
def test_averaged_schedule_rejects_bad_input(etas, betas, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        averaged_lr_schedule(etas, betas)
