"""Weak-error estimation, common random numbers and weak-order fits (issue 4, item 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theory.integrators import WeakOrder2
from theory.problems import log_cosh_well, noisy_quadratic
from theory.sde import sgd_sde
from theory.simulate import SGD, SGDM
from theory.weak_error import WeakErrorResult, fit_weak_order, weak_error


def second_moment(x: np.ndarray) -> np.ndarray:
    return x[:, 0] ** 2


def sgd_vs_sde_errors(etas, n_paths: int, seed: int) -> list[WeakErrorResult]:
    """SGD with sigma = eta^(-1/2) against its SDE (order-2 scheme at eta/4, same Brownian path), T = 1."""
    problem = log_cosh_well()  # non-linear drift, state-dependent noise
    results = []
    for eta in etas:
        reference = WeakOrder2(sgd_sde(problem, eta), eta / 4)
        results.append(weak_error(SGD(problem, eta), reference, second_moment, [1.5], 1.0, n_paths, seed))
    return results


def test_sgd_is_a_first_order_weak_approximation_of_its_sde() -> None:
    """Li, Tai, E (THEORY.md 4.1): max_k |E h(x_k) - E h(X_{k eta})| = O(eta); fitted order within 0.2 of 1."""
    etas = [0.2, 0.1, 0.05, 0.025]
    results = sgd_vs_sde_errors(etas, 20_000, seed=12)
    fit = fit_weak_order(etas, results)
    print(f"SGD vs SGD SDE (log-cosh): weak order {fit.order:.3f}, 95% CI [{fit.ci_low:.3f}, {fit.ci_high:.3f}]")
    print("  errors", [f"{r.estimate:.4f}+-{r.standard_error:.4f}" for r in results])
    assert abs(fit.order - 1.0) < 0.2


@pytest.mark.slow
def test_sgd_is_a_first_order_weak_approximation_tight() -> None:
    etas = [0.1, 0.05, 0.025, 0.0125, 0.00625]
    fit = fit_weak_order(etas, sgd_vs_sde_errors(etas, 200_000, seed=13))
    print(f"SGD vs SGD SDE (log-cosh, slow): {fit.order:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}]")
    assert abs(fit.order - 1.0) < 0.1 and fit.ci_low < 1.0 < fit.ci_high + 0.05


STANDARD_QUICK = {"eta": 1e-3, "beta": 0.9, "x0": [1.0], "T": 1.0, "n_paths": 4000, "observe_every": 10}


def standard_quick_weak_difference(paired: bool, seed: int) -> WeakErrorResult:
    """The standard quick problem: SGD vs SGDM on the log-cosh well, sigma = eta^(-1/2), h(x) = x^2."""
    problem, q = log_cosh_well(), STANDARD_QUICK
    return weak_error(
        SGD(problem, q["eta"]),
        SGDM(problem, q["eta"], q["beta"]),
        second_moment,
        q["x0"],
        q["T"],
        q["n_paths"],
        seed,
        observe_every=q["observe_every"],
        paired=paired,
    )


def test_common_random_numbers_reduce_variance_at_least_100_fold() -> None:
    """DESIGN.md 7: CRN needs >= 100x fewer paths than independent sampling for the same CI width."""
    paired = standard_quick_weak_difference(paired=True, seed=0)
    independent = standard_quick_weak_difference(paired=False, seed=1)
    predicted = paired.variance_reduction
    realised = (np.max(independent.standard_errors) / np.max(paired.standard_errors)) ** 2
    print(
        f"CRN variance-reduction factor: {predicted:.0f} (from the paired run), {realised:.0f} (vs an independent run)"
    )
    assert predicted >= 100
    assert realised >= 100
    assert independent.variance_reduction == 1.0


def _quadratic_second_moments(eta: float, beta: float, steps: int) -> np.ndarray:
    """Exact E x_k^2 of normalized SGDM on h = 1, unit additive noise, x0 = 1 (second-moment recursion)."""
    transition = np.array([[1 - eta * (1 - beta), -eta * beta], [1 - beta, beta]])
    kick = np.array([-eta * (1 - beta), 1 - beta])
    mean, cov, out = np.array([1.0, 0.0]), np.zeros((2, 2)), [1.0]
    for _ in range(steps):
        mean, cov = transition @ mean, transition @ cov @ transition.T + np.outer(kick, kick)
        out.append(mean[0] ** 2 + cov[0, 0])
    return np.array(out)


@pytest.mark.parametrize("paired", [True, False])
def test_standard_errors_are_calibrated(paired: bool) -> None:
    """Over 150 replications, (estimate - exact difference) / SE has mean 0 and standard deviation 1."""
    eta, steps = 0.2, 10
    problem = noisy_quadratic(1.0)
    exact = _quadratic_second_moments(eta, 0.0, steps) - _quadratic_second_moments(eta, 0.5, steps)
    z = []
    for seed in range(150):
        r = weak_error(
            SGD(problem, eta, sigma=1.0),
            SGDM(problem, eta, 0.5, sigma=1.0),
            second_moment,
            [1.0],
            2.0,
            400,
            seed,
            paired=paired,
        )
        z.append((r.differences[1:] - exact[1:]) / r.standard_errors[1:])
    z = np.array(z)[:, -1]
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert 0.75 < z.std() < 1.25  # chi-square band for 150 draws, about 4 standard deviations wide


def test_deterministic_reference_and_several_observables() -> None:
    problem = noisy_quadratic(1.0)
    exact = _quadratic_second_moments(0.2, 0.5, 10)
    reference = lambda t: np.stack([np.zeros_like(t), exact[np.rint(t / 0.2).astype(int)]], axis=1)  # noqa: E731
    mean, second = weak_error(
        SGDM(problem, 0.2, 0.5, sigma=1.0), reference, [lambda x: x[:, 0] * 0, second_moment], [1.0], 2.0, 20_000, 3
    )
    assert mean.estimate == 0.0 and mean.ci_high == 0.0
    assert second.ci_low == 0.0  # the exact moments lie inside the simultaneous band
    assert not second.paired and second.variance_reduction == 1.0


def test_fit_recovers_an_exact_power_law_and_detects_scatter() -> None:
    etas = np.array([0.2, 0.1, 0.05, 0.025])
    exact = 0.3 * etas**1.5
    fit = fit_weak_order(etas, exact, 0.01 * exact)
    assert fit.order == pytest.approx(1.5, abs=1e-12) and fit.inflation == 1.0
    assert fit.ci_low < 1.5 < fit.ci_high and fit.log_constant == pytest.approx(math.log(0.3), abs=1e-12)
    bumpy = exact * np.array([1.3, 0.8, 1.25, 0.85])  # scatter far beyond the 1% errors
    assert fit_weak_order(etas, bumpy, 0.01 * exact).inflation > 5


def test_fit_ci_covers_the_true_order() -> None:
    rng = np.random.default_rng(0)
    etas = np.array([0.2, 0.1, 0.05, 0.025])
    truth = 0.5 * etas
    se = 0.05 * truth
    covered_wls = covered_boot = 0
    for _ in range(100):
        noisy = truth + se * rng.standard_normal(4)
        wls = fit_weak_order(etas, noisy, se)
        covered_wls += wls.ci_low < 1.0 < wls.ci_high
        boot = fit_weak_order(etas, noisy, se, method="bootstrap", n_bootstrap=300, seed=rng)
        covered_boot += boot.ci_low < 1.0 < boot.ci_high
    assert 85 <= covered_wls <= 100 and 85 <= covered_boot <= 100  # nominal 95 of 100


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fit_weak_order([0.1, 0.2], [0.1, -0.2], [0.01, 0.01]), "errors must be finite and > 0"),
        (lambda: fit_weak_order([0.1, 0.1], [0.1, 0.2], [0.01, 0.01]), "distinct"),
        (lambda: fit_weak_order([0.1, 0.2, 0.3], [0.1, 0.2], [0.01, 0.01]), "equal lengths"),
        (lambda: fit_weak_order([0.1, 0.2], [0.1, 0.2]), "standard_errors are required"),
        (lambda: fit_weak_order([0.1, 0.2], [0.1, 0.2], [0.0, 0.01]), "standard_errors must be"),
        (lambda: fit_weak_order([0.1, 0.2], [0.1, 0.2], [0.01, 0.01], method="ols"), "method must be"),
        (lambda: fit_weak_order([0.1, 0.2], [0.1, 0.2], [0.01, 0.01], method="bootstrap"), "needs a seed"),
        (lambda: fit_weak_order([0.1, 0.2], [0.1, 0.2], [0.01, 0.01], level=1.5), "level"),
        (
            lambda: weak_error(SGD(log_cosh_well(), 0.1), SGD(log_cosh_well(), 0.1), second_moment, [1.0], 0.25, 10, 0),
            "multiple",
        ),
        (
            lambda: weak_error(SGD(log_cosh_well(), 0.1), SGD(log_cosh_well(), 0.1), lambda x: x, [1.0], 0.2, 10, 0),
            "h must map",
        ),
        (lambda: weak_error(SGD(log_cosh_well(), 0.1), 3.0, second_moment, [1.0], 0.2, 10, 0), "method_b must be"),
        (
            lambda: weak_error(SGD(log_cosh_well(), 0.1), lambda t: t[:1], second_moment, [1.0], 0.2, 10, 0),
            "reference must return",
        ),
        (lambda: weak_error("sgd", SGD(log_cosh_well(), 0.1), second_moment, [1.0], 0.2, 10, 0), "method_a must be"),
    ],
)
def test_bad_input_is_rejected(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
