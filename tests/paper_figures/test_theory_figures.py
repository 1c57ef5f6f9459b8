"""The theory figures of issue 8: each renders at scale "tiny", and the plotted numbers are the exact theory.

One build of all six figures (module fixture) provides the plotted data, read back from the figure store; the
checks compare it with closed forms derived independently (THEORY.md sections and oracles named per test), and
Monte Carlo points with the exact values in units of their standard error (Z below).  Each input check added by
these modules has a test that it fires.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sympy as sp
from scipy import stats

from empirical.records import ResultStore
from paper_figures.alpha_regimes import alpha_regimes
from paper_figures.build import build_figures, figure_cache_key
from paper_figures.lemma_2_4_split import lemma_2_4_split
from paper_figures.registry import FigureContext, get_figure
from paper_figures.stability_regions import measured_stability_edge, transition_spectral_radius
from paper_figures.stationary_ratio import (
    check_burn_in,
    ratio_series_coefficients,
    stationary_ratio_comparison,
)
from paper_figures.svag_convergence import svag_convergence, svag_stationary_variance
from paper_figures.weak_error_slopes import weak_error_slopes
from proofs_check.methods import REFERENCE
from proofs_check.theorem_3_5 import weak_error_sweep
from theory.problems import log_cosh_well, noisy_quadratic
from theory.quadratic_symbolic import beta as beta_symbol
from theory.quadratic_symbolic import eta as eta_symbol
from theory.quadratic_symbolic import h as h_symbol
from theory.quadratic_symbolic import s as s_symbol
from theory.quadratic_symbolic import stationary_variance_symbolic
from theory.weak_error import fit_weak_order

THEORY_FIGURES = (
    "fig_stationary_ratio",
    "fig_stability_regions",
    "fig_weak_error_slopes",
    "fig_alpha_regimes",
    "fig_svag_convergence",
    "fig_lemma_2_4_split",
)
#: Monte Carlo points must lie within Z standard errors of the exact value (about 6e-5 two-sided per point).
Z = 4.0


def _array(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory, figure_data: dict[str, str]) -> dict[str, Any]:
    """Build the six figures at scale "tiny"; return the outcomes and each figure's plotted data."""
    root = tmp_path_factory.mktemp("theory_figures")
    cache, out = root / "cache", root / "out"
    outcomes = build_figures(THEORY_FIGURES, scale="tiny", cache_dir=cache, out=out, data=figure_data, progress=False)
    context = FigureContext(scale="tiny", cache_dir=cache)
    store = ResultStore(context.figures_dir)
    data = {}
    for figure_id in THEORY_FIGURES:
        spec = get_figure(figure_id)
        record = store.load(figure_cache_key(spec, spec.settings(context)))
        data[figure_id] = record.metrics["data"]
    return {"outcomes": {o.figure_id: o for o in outcomes}, "data": data, "out": out}


def test_every_theory_figure_renders_png_and_pdf(tiny_build: dict[str, Any]) -> None:
    assert set(tiny_build["outcomes"]) == set(THEORY_FIGURES)
    for figure_id, outcome in tiny_build["outcomes"].items():
        suffixes = sorted(path.suffix for path in outcome.files)
        assert suffixes == [".pdf", ".png"], figure_id
        for path in outcome.files:
            assert Path(path).stat().st_size > 1000, path
        assert outcome.summary, f"{figure_id} has no summary numbers"
    assert (tiny_build["out"] / "manifest.json").stat().st_size > 0


# --- fig_stationary_ratio (THEORY.md 5.4-5.5, oracles 6, 9) ------------------------------------------------------


def _sympy_ratio(eta_h: float, beta: float) -> float:
    expression = stationary_variance_symbolic("sgd") / stationary_variance_symbolic("sgdm")
    exact = expression.subs(
        {h_symbol: 1, s_symbol: 1, eta_symbol: sp.nsimplify(eta_h), beta_symbol: sp.nsimplify(beta)}
    )
    return float(sp.nsimplify(exact))


def test_stationary_ratio_curves_are_the_exact_ratio_and_the_identity(tiny_build: dict[str, Any]) -> None:
    comparison = tiny_build["data"]["fig_stationary_ratio"]["comparison"]
    eta_h, exact = _array(comparison["eta_h"]), _array(comparison["exact"])
    for i, beta in enumerate(comparison["betas"]):
        for j in (0, len(eta_h) // 2, len(eta_h) - 1):
            assert abs(exact[i, j] - _sympy_ratio(eta_h[j], beta)) < 1e-10
        # THEORY.md 5.4: Var_SGD / Var_SGDM = (2(1+b) - x(1-b)) / ((1+b)(2-x)), x = eta*h
        closed_form = (2 * (1 + beta) - eta_h * (1 - beta)) / ((1 + beta) * (2 - eta_h))
        np.testing.assert_allclose(exact[i], closed_form, rtol=1e-12)
        np.testing.assert_allclose(_array(comparison["symbolic"])[i], closed_form, rtol=1e-12)
        marks = _array(comparison["identity_eta_h"])
        identity = 1 + 2 * beta / (1 + beta) * marks / (2 - marks)  # proofs_check.momentum_matters' identity
        np.testing.assert_allclose(_array(comparison["identity"])[i], identity, rtol=1e-12)
        closed_at_marks = (2 * (1 + beta) - marks * (1 - beta)) / ((1 + beta) * (2 - marks))
        np.testing.assert_allclose(identity, closed_at_marks, rtol=1e-12)


def test_stationary_ratio_series_coefficients_and_monte_carlo(tiny_build: dict[str, Any]) -> None:
    coefficients = ratio_series_coefficients(4)
    assert coefficients[0] == 1
    for n in range(1, 5):  # 1 + 2b/(1+b) sum_n (x/2)^n
        assert sp.simplify(coefficients[n] - beta_symbol / ((1 + beta_symbol) * 2 ** (n - 1))) == 0
    comparison = tiny_build["data"]["fig_stationary_ratio"]["comparison"]
    beta, x = comparison["series_beta"], _array(comparison["eta_h"])
    for k, order in enumerate(comparison["series_orders"]):
        truncated = 1 + sum(beta / ((1 + beta) * 2 ** (n - 1)) * x**n for n in range(1, order + 1))
        np.testing.assert_allclose(_array(comparison["series"])[k], truncated, rtol=1e-12)
    z = (_array(comparison["mc_ratio"]) - _array(comparison["mc_exact"])) / _array(comparison["mc_se"])
    assert np.all(np.abs(z) <= Z), z
    # The check has power: half the momentum correction (beta/(1+beta) instead of 2beta/(1+beta)) is rejected.
    x_mc, betas = _array(comparison["mc_eta_h"]), np.asarray(comparison["betas"])[:, None]
    wrong = 1 + betas / (1 + betas) * x_mc / (2 - x_mc)
    assert np.any(np.abs(_array(comparison["mc_ratio"]) - wrong) > Z * _array(comparison["mc_se"]))


def test_stationary_ratio_rejects_unstable_eta_h_and_short_burn_in() -> None:
    with pytest.raises(ValueError, match="stability threshold eta\\*h = 2"):
        stationary_ratio_comparison(eta_h=[0.5, 2.0], n_paths=10, burn_in=1000, window=10)
    with pytest.raises(ValueError, match="need burn_in >= "):
        check_burn_in(50, [0.1], [0.99])
    check_burn_in(1000, [0.1], [0.99])  # 10 relaxation times of sqrt(0.99)^2k: 995 steps


# --- fig_stability_regions (THEORY.md 5.3, oracles 15-16) ---------------------------------------------------------


def test_stability_boundaries_are_the_jury_thresholds_and_the_measured_edges(tiny_build: dict[str, Any]) -> None:
    regions = tiny_build["data"]["fig_stability_regions"]["regions"]
    methods = regions["methods"]
    beta = _array(regions["betas"])
    expected = {
        "sgd": np.full_like(beta, 2.0),
        "heavy_ball": 2 * (1 + beta) / (1 - beta),
        "nesterov": 2 * (1 + beta) / ((1 - beta) * (1 + 2 * beta)),
    }
    for i, method in enumerate(methods):
        np.testing.assert_allclose(_array(regions["thresholds"])[i], expected[method], rtol=1e-12)
    # The measured edge sits where the amplitude |c| rho^(K-W) of the slowest mode is 1, i.e. inside the region with
    # 0 <= 1 - rho <= log|c| / (K - W); at the heavy-ball edge |c| = (1+b)/(1-b) (x0 = 1, m0 = 0).  Checked on the
    # spectral radius of the transition matrix (independent of the iteration and of the threshold formulas), with one
    # unit of log-amplitude to spare for the second root and for c evaluated off the edge.
    measured_betas, steps = _array(regions["measured_betas"]), regions["steps"]
    allowance = (np.log((1 + measured_betas) / (1 - measured_betas)) + 1.0) / (steps - 50)
    for i, method in enumerate(methods):
        edges = _array(regions["measured"])[i]
        radius = np.array(
            [transition_spectral_radius(method, [e], b)[0] for e, b in zip(edges, measured_betas, strict=True)]
        )
        assert np.all(radius <= 1.0 + 1e-12) and np.all(1.0 - radius <= allowance), (method, radius, allowance)
        relative = np.abs(edges / _array(regions["measured_thresholds"])[i] - 1)
        assert np.all(relative <= 0.01), (method, relative)  # the figure resolves the edge to better than 1%
    heavy_ball = methods.index("heavy_ball")
    assert regions["radius_thresholds"][heavy_ball] == pytest.approx(2 * 1.9 / 0.1)  # beta = 0.9: 38


def test_spectral_radius_crosses_one_at_the_threshold() -> None:
    for method, threshold in (("sgd", 2.0), ("heavy_ball", 38.0), ("nesterov", 2 * 1.9 / (0.1 * 2.8))):
        below, above = transition_spectral_radius(method, [threshold * (1 - 1e-6), threshold * (1 + 1e-6)], 0.9)
        assert below < 1.0 < above, method


def test_measured_edge_detects_a_wrong_bracket_and_a_wrong_method() -> None:
    with pytest.raises(ValueError, match="bracket"):
        measured_stability_edge("sgd", [0.5], steps=200, bracket=(2.5, 10.0))
    with pytest.raises(ValueError, match="method must be one of"):
        measured_stability_edge("adam", [0.5])


# --- fig_weak_error_slopes (Theorem 3.5, oracle 24) ---------------------------------------------------------------


def test_weak_error_slopes_are_claim_3s_measurement(tiny_build: dict[str, Any]) -> None:
    slopes = tiny_build["data"]["fig_weak_error_slopes"]["slopes"]
    alphas, etas = slopes["alphas"], _array(slopes["etas"])
    np.testing.assert_array_equal(_array(slopes["predicted"]), (1 - np.asarray(alphas)) / 2)
    settings = get_figure("fig_weak_error_slopes").settings(FigureContext(scale="tiny"))
    again = weak_error_sweep(log_cosh_well(), REFERENCE, list(etas), alphas[0], settings["n_paths"], 35)
    np.testing.assert_array_equal(_array(slopes["errors"])[0], [e.estimate for e in again])
    np.testing.assert_array_equal(_array(slopes["ci_low"])[0], [e.ci_low for e in again])  # the plotted bars
    np.testing.assert_array_equal(_array(slopes["ci_high"])[0], [e.ci_high for e in again])
    for i in range(len(alphas)):
        fit = fit_weak_order(etas, _array(slopes["errors"])[i], _array(slopes["standard_errors"])[i])
        assert slopes["order"][i] == pytest.approx(fit.order, rel=1e-12)


def test_weak_error_slopes_reject_a_nonpositive_eta() -> None:
    with pytest.raises(ValueError, match="learning rate"):
        weak_error_slopes(alphas=(0.5,), etas=(0.1, 0.0), n_paths=10)


# --- fig_alpha_regimes (THEORY.md 3.3-3.6, oracle 12) --------------------------------------------------------------


def test_alpha_regime_limits_are_the_closed_forms(tiny_build: dict[str, Any]) -> None:
    regimes = tiny_build["data"]["fig_alpha_regimes"]["regimes"]
    t, x0, h = _array(regimes["times"]), regimes["x0"], regimes["h"]
    sgd_sde = x0**2 * np.exp(-2 * h * t) + (1 - np.exp(-2 * h * t)) / (2 * h)  # dX = -hX dt + dW
    np.testing.assert_allclose(_array(regimes["sgd_sde"]), sgd_sde, rtol=1e-10)
    limit = _array(regimes["limit"])
    for i, alpha in enumerate(regimes["alphas"]):
        if alpha < 1:
            np.testing.assert_allclose(limit[i], sgd_sde, rtol=1e-7)  # solve_ivp at rtol 1e-10 vs closed form
        elif alpha > 1:
            np.testing.assert_allclose(limit[i], x0**2, rtol=1e-12)  # frozen momentum, m0 = 0
    # alpha = 1: SGDM converges to the underdamped SDE with order 1 in eta (eta = 0.1 -> 0.02: 5x smaller error).
    one = list(regimes["alphas"]).index(1.0)
    distance = np.max(np.abs(_array(regimes["discrete"])[one] - limit[one]), axis=-1)
    assert distance[1] < distance[0] / 3, distance
    se = _array(regimes["mc_exact_sd"]) / math.sqrt(regimes["n_paths"])
    z = (_array(regimes["mc_mean"]) - _array(regimes["mc_exact"]))[:, 1:] / se[:, 1:]  # t = 0 is deterministic
    assert np.all(np.abs(z) <= Z), z


def test_alpha_regimes_reject_a_grid_that_does_not_divide_the_steps() -> None:
    with pytest.raises(ValueError, match="divisible by n_points - 1"):
        alpha_regimes(etas=(0.1,), T=8.0, n_points=7)


# --- fig_svag_convergence (THEORY.md 6.4, oracle 10) -------------------------------------------------------------


def test_svag_oracle_10_and_the_exact_curve(tiny_build: dict[str, Any]) -> None:
    result = tiny_build["data"]["fig_svag_convergence"]["result"]
    assert result["oracle_ells"] == [1, 4, 16]
    np.testing.assert_allclose(result["oracle_variance"], [1 / 3, 4 / 15, 16 / 63], rtol=1e-13, atol=0)
    assert result["sde_variance"] == pytest.approx(0.25, rel=1e-13)
    ell, eta, h, s = _array(result["ell_curve"]), result["eta"], result["h"], result["s"]
    np.testing.assert_allclose(_array(result["variance_curve"]), eta * s**2 / (h * (2 - eta * h / ell)), rtol=1e-12)
    half = (_array(result["mc_high"]) - _array(result["mc_low"])) / 2
    se = half / stats.t.ppf(0.975, result["mc_n_paths"] - 1)
    z = (_array(result["mc_mean"]) - _array(result["mc_exact"])) / se
    assert np.all(np.abs(z) <= Z), z
    # ... and detects the SDE's value eta s^2 / (2h), which ignores SVAG's O(1/ell) discretization bias.
    assert np.any(np.abs(_array(result["mc_mean"]) - result["sde_variance"]) > Z * se)
    fit = fit_weak_order(1 / _array(result["weak_ells"]), result["weak_errors"], result["weak_standard_errors"])
    assert result["order"] == pytest.approx(fit.order, rel=1e-12)


def test_svag_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="powers of 2"):
        svag_convergence(weak_ells=(1, 2), weak_n_paths=100, mc_ells=(1, 3), mc_n_paths=10)
    with pytest.raises(ValueError, match="burn_in"):
        svag_convergence(weak_ells=(1, 2), weak_n_paths=100, mc_ells=(1, 2), mc_n_paths=10, burn_in=2)
    with pytest.raises(ValueError, match="threshold"):
        svag_stationary_variance(eta=5.0, ell=2.0)  # eta*h/ell = 2.5 >= 2
    with pytest.raises(ValueError, match="ell"):
        svag_stationary_variance(eta=0.5, ell=0.5)


# --- fig_lemma_2_4_split (Lemma 2.4, THEORY.md 2.3) ----------------------------------------------------------------


def test_lemma_2_4_terms_are_the_formulas(tiny_build: dict[str, Any]) -> None:
    split = tiny_build["data"]["fig_lemma_2_4_split"]["split"]
    etas, ells = _array(split["etas"]), _array(split["ells"])
    g, hess = math.tanh(split["x"]), 1 - math.tanh(split["x"]) ** 2  # log cosh: L' = tanh, L'' = 1 - tanh^2
    assert split["gradient"] == pytest.approx(g, rel=1e-12) and split["hessian"] == pytest.approx(hess, rel=1e-12)
    np.testing.assert_allclose(split["descent"], -etas * g**2, rtol=1e-12)
    np.testing.assert_allclose(split["curvature"], etas**2 / 2 * hess * g**2, rtol=1e-12)
    np.testing.assert_allclose(split["noise"], etas / 2 * hess, rtol=1e-12)  # sigma^2 = 1/eta, Sigma = 1
    eta = split["svag_eta"]
    np.testing.assert_allclose(split["svag_curvature"], eta**2 / (2 * ells) * hess * g**2, rtol=1e-12)
    np.testing.assert_allclose(split["svag_noise"], eta / 2 * hess, rtol=1e-12)
    # The measured curvature part carries the O(eta^3) remainder, measured/formula - 1 = -eta L1 L3 / (3 L2) + O(eta^2)
    # (Ln the n-th derivative) = 2 eta L1^2 / 3 for log cosh (L3 = -2 L1 L2): 0.24 eta at x = 0.7; asserted: <= eta.
    ratio = _array(split["measured_curvature"]) / _array(split["curvature"])
    assert np.all(np.abs(ratio - 1) <= etas), ratio


def test_lemma_2_4_split_is_exact_on_a_quadratic() -> None:
    """On L = h x^2 / 2 the expansion has no remainder: the noiseless part equals the formula to rounding, and the
    Monte Carlo noise part (SGD and SVAG) lies within Z standard errors of it."""
    split = lemma_2_4_split(noisy_quadratic(2.0), x=0.7, etas=(0.05, 0.2), svag_eta=0.1, ells=(1, 4), n_paths=20_000)
    np.testing.assert_allclose(split.measured_curvature, split.curvature, rtol=1e-9)
    np.testing.assert_allclose(split.svag_measured_curvature, split.svag_curvature, rtol=1e-9)
    for value, low, high, formula in (
        (split.measured_noise, split.noise_low, split.noise_high, split.noise),
        (split.svag_measured_noise, split.svag_noise_low, split.svag_noise_high, split.svag_noise),
    ):
        se = (high - low) / 2 / stats.t.ppf(0.975, split.n_paths - 1)
        assert np.all(np.abs(value - formula) <= Z * se), (value, formula, se)
    with pytest.raises(ValueError, match="one-dimensional"):
        lemma_2_4_split(noisy_quadratic(np.eye(2)), n_paths=10)


def test_lemma_2_4_split_keeps_the_noise_covariance_for_the_fixed_sigma_ratio() -> None:
    # With state-dependent noise Sigma(x) != 1, the fixed-sigma ratio g^2 / Sigma differs from g^2.
    problem = log_cosh_well()
    split = lemma_2_4_split(problem, x=0.7, etas=(0.01, 0.02), ells=(1, 2), n_paths=2000)
    sigma = float(problem.noise_covariance(np.array([[0.7]]))[0, 0, 0])
    assert split.covariance == pytest.approx(sigma, rel=1e-12) and abs(sigma - 1.0) > 0.05
    # the formula ratio at sigma = eta^(-1/2) is eta g^2 / Sigma, consistent with the stored covariance
    np.testing.assert_allclose(split.ratio, split.etas * split.gradient**2 / split.covariance, rtol=1e-12)


def test_theory_figure_functions_reject_bad_grids_and_brackets() -> None:
    with pytest.raises(ValueError, match="bracket must be"):
        measured_stability_edge("sgd", [0.5], bracket=(0.0, 10.0))
    with pytest.raises(ValueError, match="iterations must be"):
        measured_stability_edge("sgd", [0.5], iterations=0)
    with pytest.raises(ValueError, match="n_points and mc_points must be integers >= 2"):
        alpha_regimes(n_points=1)
    with pytest.raises(ValueError, match="series_orders must be"):
        stationary_ratio_comparison(series_orders=())
    with pytest.raises(ValueError, match=r"eta"):
        svag_convergence(eta=-1.0)
    with pytest.raises(ValueError, match="h \\(the curvature\\)"):
        svag_convergence(h=0.0)
