"""theory.strategies: every case is stable and PSD as documented, shrinking reaches the simple case, and Hypothesis
stays an optional dependency of ``import theory``."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from theory.params import MomentumParams, averaged_lr_schedule
from theory.problems import Problem
from theory.quadratic import (
    check_stable,
    is_stable,
    spectral_radius,
    stability_threshold,
    stationary_covariance,
)
from theory.strategies import (
    NON_COMMUTING_THRESHOLD,
    alpha_regimes,
    analytic_problems,
    eigenvalues,
    hessians,
    momenta,
    momentum_schedules,
    noise_covariances,
    quadratic_pairs,
    rotations,
    stable_hyperparameters,
    stable_quadratics,
    svag_factors,
)

FIND = settings(database=None, derandomize=True, max_examples=200, suppress_health_check=list(HealthCheck))


def _commutator(H: np.ndarray, Sigma: np.ndarray) -> float:
    return float(np.linalg.norm(H @ Sigma - Sigma @ H) / (np.linalg.norm(H) * np.linalg.norm(Sigma)))


def _assert_pair(H: np.ndarray, Sigma: np.ndarray, max_condition: float = 100.0) -> None:
    assert H.shape == Sigma.shape and H.shape[0] == H.shape[1]
    assert np.all(np.isfinite(H)) and np.all(np.isfinite(Sigma))
    assert np.array_equal(H, H.T) and np.array_equal(Sigma, Sigma.T)
    h = np.linalg.eigvalsh(H)
    assert h[0] > 0, "H must be positive definite"
    assert h[-1] / h[0] <= max_condition * (1 + 1e-9)
    assert h[-1] == pytest.approx(1.0, rel=1e-12)
    s = np.linalg.eigvalsh(Sigma)
    assert s[0] >= -1e-12, f"Sigma must be PSD, smallest eigenvalue {s[0]}"
    assert s[-1] == pytest.approx(1.0, rel=1e-12)


# --- Hypothesis is optional ----------------------------------------------------------------------------------------


def test_import_theory_does_not_import_hypothesis() -> None:
    code = "import sys, theory, theory.strategies; print(sorted(m for m in sys.modules if m.startswith('hypothesis')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_without_hypothesis_a_strategy_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import theory.strategies as s\n"
        "try:\n    s.momenta()\nexcept ImportError as e:\n    print('ImportError:', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ImportError: theory.strategies needs Hypothesis: pip install" in done.stdout


# --- every case is inside the documented region ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sgd", "heavy_ball", "nesterov"])
@given(data=st.data())
def test_stable_hyperparameters_are_strictly_inside_the_region(method: str, data: st.DataObject) -> None:
    h_max = data.draw(st.sampled_from([1.0, 0.1, 30.0]))
    params = data.draw(stable_hyperparameters(method, h_max=h_max, margin=1e-3))
    assert isinstance(params, MomentumParams)
    assert 0.0 <= params.beta < 1.0 and (method != "sgd" or params.beta == 0.0)
    threshold = stability_threshold(params.beta, method)
    eta_h = params.eta * h_max
    assert 1e-3 * threshold <= eta_h * (1 + 1e-12) and eta_h <= (1 - 1e-3) * threshold * (1 + 1e-12)
    assert is_stable(eta_h, params.beta, method)
    assert spectral_radius(eta_h, params.beta, method) < 1.0


@given(stable_hyperparameters("heavy_ball", betas=momenta(), eta_h_max=0.5))
def test_the_cap_on_eta_h_is_respected(params: MomentumParams) -> None:
    assert 0 < params.eta <= 0.5


@pytest.mark.parametrize("method", ["sgd", "heavy_ball"])
@pytest.mark.parametrize("commuting", [True, False, None])
@given(data=st.data())
def test_stable_quadratics_are_stable_and_psd(method: str, commuting: bool | None, data: st.DataObject) -> None:
    problem = data.draw(stable_quadratics(method, commuting=commuting, max_dim=4, betas=momenta(max_value=0.999)))
    _assert_pair(problem.H, problem.Sigma)
    # the same check the stationary covariance makes: every eta*h_i inside the method's (and so SGDM's) region
    check_stable(np.linalg.eigvalsh(problem.H), problem.eta, 0.0 if method == "sgd" else problem.beta, method)
    check_stable(np.linalg.eigvalsh(problem.H), problem.eta, problem.beta, "heavy_ball")
    C = stationary_covariance(problem.H, problem.Sigma, problem.eta, problem.beta)
    assert np.linalg.eigvalsh(C)[0] >= -1e-12 * np.linalg.norm(C)
    if commuting is True:
        assert _commutator(problem.H, problem.Sigma) < 1e-12
    if commuting is False:
        assert problem.H.shape[0] >= 2
        assert _commutator(problem.H, problem.Sigma) >= NON_COMMUTING_THRESHOLD


@given(stable_quadratics("nesterov", betas=momenta()))
def test_nesterov_quadratics_are_inside_nesterovs_region(problem) -> None:
    eta_h = problem.eta * np.linalg.eigvalsh(problem.H)
    assert np.all(spectral_radius(eta_h, problem.beta, "nesterov") < 1.0)


@given(quadratic_pairs(min_dim=2, max_dim=5, max_condition=10.0, noise_max_condition=10.0, singular_noise=False))
def test_quadratic_pairs_respect_dimensions_and_conditions(pair: tuple[np.ndarray, np.ndarray]) -> None:
    H, Sigma = pair
    assert 2 <= H.shape[0] <= 5
    _assert_pair(H, Sigma, max_condition=10.0)
    s = np.linalg.eigvalsh(Sigma)
    assert s[-1] / s[0] <= 10.0 * (1 + 1e-9)


@given(st.integers(1, 5).flatmap(lambda d: st.tuples(st.just(d), rotations(d))))
def test_rotations_are_rotations(drawn: tuple[int, np.ndarray]) -> None:
    d, Q = drawn
    assert Q.shape == (d, d)
    np.testing.assert_allclose(Q.T @ Q, np.eye(d), atol=1e-13)
    assert np.linalg.det(Q) == pytest.approx(1.0, abs=1e-12)


@given(eigenvalues(4, max_condition=50.0, largest=3.0))
def test_eigenvalues_have_their_largest_and_condition(h: np.ndarray) -> None:
    assert h[0] == 3.0 and np.all(np.diff(h) <= 0)
    assert h[0] / h[-1] <= 50.0 * (1 + 1e-12)


def _with_commuting_noise(H: np.ndarray):
    return st.tuples(st.just(H), noise_covariances(len(H), basis=np.linalg.eigh(H)[1]))


@given(hessians(max_dim=4).flatmap(_with_commuting_noise))
def test_noise_in_the_eigenbasis_commutes(pair: tuple[np.ndarray, np.ndarray]) -> None:
    H, Sigma = pair
    assert np.linalg.eigvalsh(H)[0] > 0 and np.linalg.eigvalsh(Sigma)[0] >= -1e-12
    assert _commutator(H, Sigma) < 1e-12


@given(momentum_schedules(max_steps=12, eta_min=1e-3, eta_max=0.5, max_beta=0.9))
def test_momentum_schedules_are_bounded(schedule: tuple[np.ndarray, np.ndarray]) -> None:
    etas, betas = schedule
    assert etas.shape == betas.shape and 1 <= etas.size <= 12
    assert np.all((1e-3 <= etas) & (etas <= 0.5)) and np.all((0 <= betas) & (betas <= 0.9))
    averaged = averaged_lr_schedule(etas, betas)
    assert np.all(np.isfinite(averaged)) and np.all(averaged > 0)


@given(alpha_regimes())
def test_alpha_regimes_follow_definition_3_1(regime: tuple[float, float, MomentumParams]) -> None:
    alpha, c, params = regime
    assert 0 <= alpha <= 2 and 0.1 <= c <= 1 and 1e-4 <= params.eta <= 0.1
    assert 1 - params.beta == pytest.approx(c * params.eta**alpha, rel=1e-9, abs=1e-15)


@settings(max_examples=10)
@given(analytic_problems())
def test_analytic_problems_evaluate(problem: Problem) -> None:
    x = np.zeros((2, problem.dim))
    assert np.all(np.isfinite(problem.gradient(x))) and np.all(np.isfinite(problem.noise_covariance(x)))


@given(svag_factors())
def test_svag_factors_are_at_least_one(ell: float) -> None:
    assert math.isfinite(ell) and 1.0 <= ell <= 1e4


# --- shrinking toward simple cases ---------------------------------------------------------------------------------


def test_quadratics_shrink_to_the_one_dimensional_unit_case() -> None:
    problem = find(stable_quadratics("sgd", betas=momenta()), lambda p: True, settings=FIND)
    assert problem.H.tolist() == [[1.0]] and problem.Sigma.tolist() == [[1.0]]
    assert (problem.eta, problem.beta) == (1.0, 0.0)  # half of SGD's stable range: eta h = 1


def test_non_commuting_pairs_shrink_to_two_dimensions() -> None:
    H, Sigma = find(quadratic_pairs(commuting=False, max_dim=4), lambda p: True, settings=FIND)
    assert H.shape == Sigma.shape == (2, 2)


def test_scalars_shrink_to_round_values() -> None:
    assert find(momenta(), lambda b: b > 0, settings=FIND) == 0.5
    assert find(svag_factors(), lambda ell: True, settings=FIND) == 1.0
    assert find(stable_hyperparameters("heavy_ball"), lambda p: p.beta > 0, settings=FIND) == MomentumParams(3.0, 0.5)
    etas, betas = find(momentum_schedules(), lambda s: True, settings=FIND)
    assert etas.tolist() == [0.1] and betas.tolist() == [0.0]


def test_analytic_problems_shrink_to_the_simplest_kind() -> None:
    problem = find(analytic_problems(), lambda p: True, settings=FIND)
    assert problem.name == "quartic_well" and problem.parameters == {"curvature": 1.0, "noise": 1.0}
    assert find(analytic_problems(), lambda p: p.dim == 2, settings=FIND).name == "double_well_2d"


# --- validation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: momenta(max_value=1.0), "momenta"),
        (lambda: stable_hyperparameters("adam"), "method must be one of"),
        (lambda: stable_hyperparameters(margin=0.0), "margin"),
        (lambda: quadratic_pairs(commuting=False, max_dim=1), "commuting=False needs max_dim >= 2"),
        (lambda: hessians(min_dim=3, max_dim=2), "dimensions"),
        (lambda: eigenvalues(2, max_condition=0.5), "max_condition"),
        (lambda: analytic_problems(kinds=["rosenbrock"]), "kinds"),
        (lambda: alpha_regimes(eta_max=2.0), "alpha_regimes"),
    ],
)
def test_bad_arguments_raise_naming_the_parameter(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
