"""Exact steps to a target loss on the noisy quadratic model (theory.batch_scaling; THEORY.md 5.2, 5.6, 5.7).

References the closed form is held against, none of which shares its powering:

* a literal loop over paper eq. (3)'s second moments in the unscaled state (x, m) (``_literal_losses``);
* theory.moments.expected_loss_curve (its own eigenbasis recursion);
* a 50-digit mpmath evaluation of the 3x3 second-moment map (state (x^2, xm, m^2)) by matrix power;
* the first crossing found by stepping every k (brute force).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from theory.batch_scaling import (
    SMALLEST_RELATIVE_TARGET,
    DiagonalQuadratic,
    critical_batch_size,
    diagonal_quadratic,
    eigenbasis_quadratic,
    expected_loss_at,
    nqm,
    nqm_bins,
    stationary_loss,
    steps_to_target,
    tune_steps_to_target,
)
from theory.moments import expected_loss_curve
from theory.quadratic import stability_threshold, stationary_covariance

EXACT = 1e-12


def _literal_losses(model: DiagonalQuadratic, eta: float, beta: float, steps: int) -> np.ndarray:
    """E L_k, k = 0..steps, by stepping E[x^2], E[xm], E[m^2] of m' = beta m + (1-beta) g, x' = x - eta m'."""
    h, noise, weight = model.curvature, model.noise, model.loss_weight
    xx, xm, mm = model.initial_second_moment.copy(), np.zeros_like(h), np.zeros_like(h)
    losses = [0.5 * weight @ xx]
    b, f = (1.0 - beta) * h, 1.0 - beta
    for _ in range(steps):
        mm_next = beta * beta * mm + 2.0 * beta * b * xm + b * b * xx + f * f * noise
        xm_next = beta * xm + b * xx  # E[x m'], then x' = x - eta m'
        xx = xx - 2.0 * eta * xm_next + eta * eta * mm_next
        xm, mm = xm_next - eta * mm_next, mm_next
        losses.append(0.5 * weight @ xx)
    return np.array(losses)


def _first_hit(losses: np.ndarray, target: float) -> float:
    hits = np.flatnonzero(losses <= target)
    return float(hits[0]) if hits.size else math.inf


def _threshold(beta: float) -> float:
    return float(stability_threshold(beta, "sgd" if beta == 0.0 else "heavy_ball"))


@st.composite
def small_problems(draw: st.DrawFn) -> tuple[DiagonalQuadratic, float, float]:
    """1-4 coordinates, curvature in [0.01, 1], noise in [0, 0.1], a stable (eta, beta) incl. beta near 1."""
    d = draw(st.integers(1, 4))
    h = draw(arrays(np.float64, d, elements=st.floats(0.01, 1.0)))
    noise = draw(arrays(np.float64, d, elements=st.floats(0.0, 0.1)))
    start = draw(arrays(np.float64, d, elements=st.floats(0.0, 4.0)))
    weight = draw(arrays(np.float64, d, elements=st.floats(0.1, 2.0)))
    beta = draw(st.sampled_from([0.0, 1e-300, 0.3, 0.9, 0.99]) | st.floats(0.0, 0.999))
    fraction = draw(st.floats(0.01, 0.99))
    eta = fraction * _threshold(beta) / float(h.max())
    model = diagonal_quadratic(h, noise, loss_weight=weight, initial_second_moment=start)
    return model, eta, beta


# --- the exact loss -------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(problem=small_problems())
def test_closed_form_equals_stepping_the_recursion(problem: tuple) -> None:
    model, eta, beta = problem
    literal = _literal_losses(model, eta, beta, 300)
    closed = expected_loss_at(model, eta, beta, np.arange(301))
    np.testing.assert_allclose(closed, literal, rtol=EXACT, atol=1e-15 * literal[0])
    # any order of steps, and an independent implementation of the same curve (loss weights = curvature there)
    assert expected_loss_at(model, eta, beta, [300, 7, 0]).tolist() == closed[[300, 7, 0]].tolist()
    plain = diagonal_quadratic(model.curvature, model.noise, initial_second_moment=model.initial_second_moment)
    moments = expected_loss_curve(
        np.diag(plain.curvature),
        np.diag(plain.noise),
        eta,
        beta,
        x0=np.sqrt(plain.initial_second_moment),
        steps=300,
    )
    np.testing.assert_allclose(expected_loss_at(plain, eta, beta, np.arange(301)), moments, rtol=EXACT, atol=1e-15)


def _mp_loss(model: DiagonalQuadratic, eta: float, beta: float, k: int) -> mpmath.mpf:
    """50-digit E L_k from the 3x3 map of (E x^2, E xm, E m^2) with the noise as a fourth, constant coordinate."""
    total = mpmath.mpf(0)
    e, b = mpmath.mpf(eta), mpmath.mpf(beta)
    for h_f, s_f, c_f, x_f in zip(
        model.curvature, model.noise, model.loss_weight, model.initial_second_moment, strict=True
    ):
        h, s2 = mpmath.mpf(float(h_f)), mpmath.mpf(float(s_f))
        # m' = b m + (1-b) h x + (1-b) xi;  x' = x - e m' = (1 - e(1-b)h) x - e b m - e(1-b) xi
        a11, a12, a21, a22 = 1 - e * (1 - b) * h, -e * b, (1 - b) * h, b
        n1, n2 = -e * (1 - b), 1 - b
        M = mpmath.matrix(
            [
                [a11**2, 2 * a11 * a12, a12**2, n1 * n1 * s2],
                [a11 * a21, a11 * a22 + a12 * a21, a12 * a22, n1 * n2 * s2],
                [a21**2, 2 * a21 * a22, a22**2, n2 * n2 * s2],
                [0, 0, 0, 1],
            ]
        )
        state = (M**k) * mpmath.matrix([mpmath.mpf(float(x_f)), 0, 0, 1])
        total += mpmath.mpf(float(c_f)) / 2 * state[0]
    return total


@pytest.mark.parametrize("eta", [2.5e-2, 1.0, 3e3, 1e5])
def test_matches_a_50_digit_reference_at_ten_million_steps_and_beta_near_one(eta: float) -> None:
    """beta = 1 - 1e-5, k up to 1e7, 1e-10 relative; the spectrum straddles critical damping at eta = 2.5e-2."""
    mpmath.mp.dps = 50
    beta = 1.0 - 1e-5
    model = diagonal_quadratic(
        np.geomspace(1e-4, 1.0, 9), np.geomspace(1e-4, 1.0, 9) / 16, initial_second_moment=np.linspace(0.5, 2, 9)
    )
    assert eta * np.max(model.curvature) < 0.5 * _threshold(beta)
    steps = [1, 1000, 10**5, 10**6, 10**7]
    values = expected_loss_at(model, eta, beta, steps)
    for k, value in zip(steps, values, strict=True):
        reference = _mp_loss(model, eta, beta, k)
        assert abs(value - float(reference)) <= 1e-10 * float(reference), (k, value, reference)


def test_matches_a_50_digit_reference_for_sgd_at_ten_million_steps() -> None:
    mpmath.mp.dps = 50
    model = nqm(64, bins=20)
    for k in (10**3, 10**6, 10**7):
        value = expected_loss_at(model, 1e-3, 0.0, [k])[0]
        reference = float(_mp_loss(model, 1e-3, 0.0, k))
        assert abs(value - reference) <= 1e-10 * reference


def test_stationary_loss_is_the_limit_and_the_closed_form_of_theory_quadratic() -> None:
    model = diagonal_quadratic([1.0, 0.2, 0.05], [0.3, 0.1, 0.02], initial_second_moment=[1.0, 2.0, 0.0])
    for beta in (0.0, 0.9):
        eta = 0.4 * _threshold(beta)
        cov = stationary_covariance(np.diag(model.curvature), np.diag(model.noise), eta, beta)
        assert stationary_loss(model, eta, beta) == pytest.approx(0.5 * np.trace(np.diag(model.curvature) @ cov))
        late = expected_loss_at(model, eta, beta, [10**6])[0]
        assert late == pytest.approx(stationary_loss(model, eta, beta), rel=1e-12)


def test_general_matrices_reduce_to_the_eigenbasis() -> None:
    rng = np.random.default_rng(5)
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    H = rotation @ np.diag([2.0, 1.0, 0.3, 0.05]) @ rotation.T
    factor = rng.normal(size=(4, 4))
    Sigma = factor @ factor.T  # does not commute with H: the cross terms must not matter
    x0 = np.array([1.0, -0.5, 2.0, 0.3])
    model = eigenbasis_quadratic((H + H.T) / 2, Sigma, x0)
    for beta in (0.0, 0.8):
        eta = 0.3 * _threshold(beta) / 2.0
        reference = expected_loss_curve((H + H.T) / 2, Sigma, eta, beta, x0=x0, steps=200)
        np.testing.assert_allclose(expected_loss_at(model, eta, beta, np.arange(201)), reference, rtol=1e-11)


# --- steps to target --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(problem=small_problems(), level=st.floats(0.0, 1.0))
def test_steps_to_target_is_the_first_crossing_found_by_stepping(problem: tuple, level: float) -> None:
    model, eta, beta = problem
    horizon = 2000  # long enough for the branch and bound to discard blocks at several levels
    losses = _literal_losses(model, eta, beta, horizon)
    # targets below SMALLEST_RELATIVE_TARGET of the initial loss are rejected (tested below)
    low = max(float(losses.min()), 2 * SMALLEST_RELATIVE_TARGET * model.initial_loss)
    high = max(float(losses.max()), low)
    target = low * 0.9 + (high * 1.1 - low * 0.9) * level
    assume(target > 0.0 and np.min(np.abs(losses - target)) > 1e-9 * target)  # no tie within rounding
    assert steps_to_target(model, target, eta, beta, max_steps=horizon) == _first_hit(losses, target)


def test_targets_far_below_the_initial_loss_are_rejected() -> None:
    # found by the property above: losses 0.5 * 0.25^k; at a target of 4e-215 the count was 314, not 356
    model = diagonal_quadratic([1.0], [0.0])
    with pytest.raises(ValueError, match="below 1e-12 of the initial loss"):
        steps_to_target(model, 4.3369441996462896e-215, 1.5, 0.0, max_steps=2000)
    target = 2 * SMALLEST_RELATIVE_TARGET * model.initial_loss
    assert steps_to_target(model, target, 1.5, 0.0) == math.ceil(math.log(2 * target) / math.log(0.25))


def test_oscillating_curve_gives_the_first_of_several_crossings() -> None:
    """An underdamped mode: E L_k crosses the target, rises above it again, crosses again; k* is the first."""
    model = diagonal_quadratic([1.0], [0.0])
    eta, beta = 20.0, 0.9  # gamma h = 2: complex roots, |r| = sqrt(0.9)
    losses = _literal_losses(model, eta, beta, 300)
    target = 0.05
    below = losses <= target
    first = int(np.argmax(below))
    assert below[first] and not below[first + 1 :].all()  # the curve goes back above the target after k*
    assert np.flatnonzero(np.diff(below.astype(int)) == 1).size >= 3  # several down-crossings
    assert steps_to_target(model, target, eta, beta) == first
    # A transient dip below a target that the stationary loss exceeds: reached, although never for good.
    model = diagonal_quadratic([1.0, 1e-3], [0.0, 1e-3], initial_second_moment=[1.0, 0.0])
    eta = 1.0
    assert stationary_loss(model, eta, 0.0) > 1e-5
    k = steps_to_target(model, 1e-5, eta, 0.0)
    assert k == 1.0 and expected_loss_at(model, eta, 0.0, [10**5])[0] > 1e-5


def test_long_horizon_steps_agree_with_stepping_near_the_crossing() -> None:
    """NQM at B = 16 with beta = 0.9998: the crossing near k = 5e4 is the first one (checked by stepping)."""
    model = nqm(16, bins=40)
    target = 0.01 * model.initial_loss
    eta, beta = 0.26, 0.9998
    k = steps_to_target(model, target, eta, beta)
    losses = _literal_losses(model, eta, beta, int(k) + 10)
    assert _first_hit(losses, target) == k and 4e4 < k < 6e4


def test_never_reaching_the_target_is_inf_and_an_unstable_rate_raises() -> None:
    model = nqm(4, bins=30)
    target = 0.01 * model.initial_loss
    eta = 1.5  # stationary loss far above the target at B = 4
    assert stationary_loss(model, eta, 0.0) > target
    assert steps_to_target(model, target, eta, 0.0) == math.inf
    assert steps_to_target(model, 0.5 * model.initial_loss, 0.05, 0.0, max_steps=3) == math.inf  # not yet
    assert steps_to_target(model, model.initial_loss, 0.05, 0.0) == 0.0
    with pytest.raises(ValueError, match="exceeds the SGD stability threshold 2"):
        steps_to_target(model, target, 2.0, 0.0)
    with pytest.raises(ValueError, match="heavy-ball SGDM stability threshold 38"):
        steps_to_target(model, target, 38.5, 0.9)
    with pytest.raises(ValueError, match="heavy-ball SGDM stability threshold"):
        stationary_loss(model, 40.0, 0.9)


def test_wrong_momentum_parameterisation_gives_different_counts() -> None:
    """Negative control: SGDM run at gamma = eta (1 - beta) as its effective rate is 1/(1-beta) times slower."""
    model = nqm(16, bins=30)
    target = 0.01 * model.initial_loss
    eta, beta = 0.2, 0.9
    right = steps_to_target(model, target, eta, beta)
    wrong = steps_to_target(model, target, eta * (1 - beta), beta)
    assert wrong > 5 * right
    literal_right = _first_hit(_literal_losses(model, eta, beta, int(right) + 5), target)
    assert literal_right == right != wrong
    assert abs(steps_to_target(model, target, eta, 0.0) / right - 1) < 0.05  # same eta: SGD and SGDM agree


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: steps_to_target(m, 0.0, 0.1), r"target \(a loss level\) must be a finite number in \(0, inf\)"),
        (lambda m: steps_to_target(m, 0.1, -0.1), "eta \\(effective learning rate\\) must be a finite number"),
        (lambda m: steps_to_target(m, 0.1, 0.1, 1.0), "beta must lie in \\[0, 1\\)"),
        (lambda m: steps_to_target(m, 0.1, 0.1, max_steps=-1), "max_steps must be an integer >= 0"),
        (lambda m: steps_to_target(m, 0.1, 0.1, max_steps=True), "max_steps must be an integer >= 0"),
        (lambda m: expected_loss_at(m, 0.1, 0.0, [1.5]), "steps must be integers >= 0"),
        (lambda m: expected_loss_at(m, 0.1, 0.0, [-1]), "steps must be a 1-D sequence of integers >= 0"),
        (lambda m: tune_steps_to_target(m, 0.1, betas=()), "betas must contain at least one"),
        (lambda m: tune_steps_to_target(m, 0.1, smallest_fraction=0.5, largest_fraction=0.4), "smallest_fraction"),
    ],
)
def test_bad_arguments_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(nqm(4, bins=10))


def test_model_validation_at_the_boundary() -> None:
    with pytest.raises(ValueError, match="curvature must be > 0"):
        diagonal_quadratic([1.0, 0.0], [0.1, 0.1])
    with pytest.raises(ValueError, match="noise must be >= 0"):
        diagonal_quadratic([1.0], [-0.1])
    with pytest.raises(ValueError, match="noise must have 2 entries"):
        diagonal_quadratic([1.0, 2.0], [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="initial_second_moment must be finite"):
        diagonal_quadratic([1.0], [0.1], initial_second_moment=np.nan)
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            nqm(bad)
    with pytest.raises(ValueError, match="preconditioner_power must lie in \\[0, 1\\]"):
        nqm(4, preconditioner_power=1.5)
    with pytest.raises(ValueError, match="H must be positive definite"):
        eigenbasis_quadratic(np.diag([1.0, 0.0]), np.eye(2), [1.0, 1.0])
    with pytest.raises(TypeError, match="model must be a DiagonalQuadratic"):
        steps_to_target(np.eye(2), 0.1, 0.1)


# --- the NQM, its binning and the preconditioner ---------------------------------------------------------------


def test_nqm_preconditioner_gives_curvature_sqrt_h_and_noise_one_over_b() -> None:
    plain, preconditioned = nqm(8, dimension=50), nqm(8, dimension=50, preconditioner_power=0.5)
    h = 1.0 / np.arange(1, 51)
    np.testing.assert_allclose(plain.curvature, h)
    np.testing.assert_allclose(plain.noise, h / 8)
    np.testing.assert_allclose(preconditioned.curvature, np.sqrt(h))
    np.testing.assert_allclose(preconditioned.noise, 1 / 8)
    np.testing.assert_allclose(preconditioned.loss_weight, h)  # the loss is still 1/2 sum h x^2
    assert plain.initial_loss == pytest.approx(0.5 * h.sum())


@pytest.mark.parametrize("bins", [1, 7, 30, 150, 999])
def test_nqm_bins_partition_the_indices_and_keep_the_initial_loss(bins: int) -> None:
    h, counts = nqm_bins(1000, bins)
    assert h.size == counts.size == bins and counts.sum() == 1000 and np.all(counts >= 1)
    assert np.all(np.diff(h) < 0)
    assert (h * counts).sum() == pytest.approx((1.0 / np.arange(1, 1001)).sum(), rel=1e-13)
    assert nqm_bins(1000, None)[0].size == 1000


def test_binning_error_against_the_unbinned_nqm() -> None:
    """150 bins of the 10^4-dimensional NQM: loss curves within 3e-4 and steps to target within 1e-3."""
    full, binned = nqm(64), nqm(64, bins=150)
    for beta, eta in ((0.0, 0.8), (0.9, 1.0)):
        steps = [0, 10, 10**3, 10**4, 10**5]
        exact = expected_loss_at(full, eta, beta, steps)
        approx = expected_loss_at(binned, eta, beta, steps)
        assert np.max(np.abs(approx / exact - 1)) < 3e-4
        target = 0.01 * full.initial_loss
        k_full, k_binned = steps_to_target(full, target, eta, beta), steps_to_target(binned, target, eta, beta)
        assert math.isfinite(k_full)
        assert abs(k_binned / k_full - 1) < 1e-3


# --- tuning and the critical batch size ------------------------------------------------------------------------


def test_tuning_finds_the_one_step_rate_of_a_noiseless_mode() -> None:
    model = diagonal_quadratic([2.0], [0.0])
    tuned = tune_steps_to_target(model, 1e-2)  # initial loss 1: one step iff (1 - 2 eta)^2 <= 1e-2
    assert tuned.steps == 1.0 and abs(tuned.eta * 2.0 - 1.0) <= 0.1
    assert tune_steps_to_target(model, 2.0).steps == 0.0


def test_tuning_is_no_worse_than_any_rate_it_could_have_tried() -> None:
    model = nqm(16, bins=30)
    target = 0.01 * model.initial_loss
    tuned = tune_steps_to_target(model, target, betas=(0.0, 0.9))
    assert tuned.steps == steps_to_target(model, target, tuned.eta, tuned.beta)
    for beta in (0.0, 0.9):
        for fraction in (1e-3, 3e-3, 1e-2, 3e-2, 0.1):
            eta = fraction * _threshold(beta)
            assert tuned.steps <= steps_to_target(model, target, eta, beta)
    # the tuner calls the function it is given
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return steps_to_target(*args, **kwargs)

    assert tune_steps_to_target(model, target, grid_points=5, refine_iterations=2, steps_function=counting).steps
    assert 5 <= len(calls) <= 9


def test_critical_batch_size() -> None:
    sizes = [4, 16, 64, 256]
    assert critical_batch_size(sizes, [1000, 250, 62.5, 15.625]) == math.inf  # perfect scaling
    # ratios S(B) B / (S(B0) B0): 1, 1, 1.6, 3.2 -> factor 2 between 64 and 256, log-log interpolation
    value = critical_batch_size(sizes, [1000, 250, 100, 50])
    assert value == pytest.approx(64 * 4 ** (math.log(2 / 1.6) / math.log(3.2 / 1.6)))
    assert critical_batch_size(sizes, [1000, 250, math.inf, 50]) == 64
    with pytest.raises(ValueError, match="increasing"):
        critical_batch_size([4, 4], [1, 1])
    with pytest.raises(ValueError, match="factor must be"):
        critical_batch_size(sizes, [4, 3, 2, 1], factor=1.0)
