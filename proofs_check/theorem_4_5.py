r"""Claim 7: Theorem 4.5 — near a manifold of minimisers SGD and SGDM follow the same slow SDE.

Setting (THEORY.md 7.3-7.5, oracle 22): the label-noise toy :math:`\mathcal L=\tfrac12(uv-1)^2`
(:func:`theory.manifold_models.label_noise_toy_model`) with :math:`\sigma=1` and Gaussian label noise of the
same covariance as the paper's :math:`\pm1` labels (the slow SDE depends on the covariance only), started
on :math:`\Gamma` at :math:`s_0=1`, run for :math:`T/\eta^2` steps (time :math:`t=k\eta^2`, :math:`T=2`).
The functional is the position :math:`s` of :math:`\Phi(x_T)` along :math:`\Gamma`; the slow SDE is the
deterministic flow :math:`\sinh2s(t)=\sinh2s_0e^{-t}` (:func:`theory.manifold.integrate_slow_sde`).
The full run adds the diagonal linear network (functional :math:`\operatorname{tr}\nabla^2\mathcal L(\Phi(x_T))`).

For SGD, SGDM with :math:`\beta=0.9` (:math:`\alpha=0`) and SGDM with :math:`1-\beta=\eta^{1/2}`
(:math:`\alpha=0.5`), all at the same :math:`\eta`:

* ``theorem_4_5.MODEL.METHOD``: :math:`|\mathbb E s(\Phi(x_T))-s(T)|\to0`.  Passed when the error at the
  smallest :math:`\eta` is at most :data:`RELATIVE_TOLERANCE` of the distance the slow flow travels and the
  error decays (fitted order :math:`\ge` :data:`MIN_ORDER`) or is already within 4 standard errors of 0.
* ``theorem_4_5.MODEL.sgd_vs_sgdm``: :math:`|\mathbb E_{\rm SGD}-\mathbb E_{\rm SGDM}|` (:math:`\alpha=0`)
  vanishes as :math:`\eta\to0` with fitted order :math:`\ge` :data:`MIN_ORDER` (predicted 1: both are
  :math:`O(\eta)` from the slow SDE).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from proofs_check.registry import register
from proofs_check.result import ClaimResult
from theory.manifold import ManifoldModel, integrate_slow_sde, manifold_functional
from theory.manifold_models import diagonal_network_model, label_noise_toy_model, toy_manifold_point
from theory.problems import Problem
from theory.simulate import SGD, SGDM, Method, simulate
from theory.weak_error import fit_weak_order

__all__ = ["MIN_ORDER", "RELATIVE_TOLERANCE", "check_theorem_4_5", "slow_time_sgdm"]

REFERENCE = "Theorem 4.5; Li-Wang-Arora 2022; THEORY.md 7.3-7.5, oracle 22"
STATEMENT = "over O(1/eta^2) steps SGD and SGDM (alpha = 0 and 0.5) follow the same slow SDE on the manifold"
RELATIVE_TOLERANCE = 0.05
MIN_ORDER = 0.5

MomentumFactory = Callable[[Problem, float, float], Method]


def slow_time_sgdm(problem: Problem, eta: float, beta: float) -> Method:
    """The method under test: eq. (3) at effective learning rate eta, one step = eta^2 of slow time."""
    return SGDM(problem, eta, beta=beta, sigma=1.0, time_scale=eta**2)


def _as_problem(model: ManifoldModel) -> Problem:
    symbolic = model.symbolic
    return Problem(model.name, symbolic.variables, symbolic.loss, symbolic.noise_factor)


def _functional_stats(model, kind, method, x0, T, eta, n_paths, seed) -> tuple[float, float, np.ndarray]:
    end = simulate(method, x0, round(T / eta**2), n_paths, seed).values[-1]
    values = manifold_functional(model, end, kind)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n_paths)), values


def _model_checks(name, model, kind, x0, T, etas, n_paths, seed, momentum: MomentumFactory) -> list[ClaimResult]:
    problem = _as_problem(model)
    path = integrate_slow_sde(model, x0, T, n_steps=10)
    target = float(manifold_functional(model, path.states[0, -1], kind))
    start = float(manifold_functional(model, np.asarray(x0, dtype=np.float64), kind))
    travelled = abs(start - target)
    methods = {
        "sgd": lambda eta: SGD(problem, eta, sigma=1.0, time_scale=eta**2),
        "sgdm_alpha0": lambda eta: momentum(problem, eta, 0.9),
        "sgdm_alpha0.5": lambda eta: momentum(problem, eta, 1.0 - eta**0.5),
    }
    means: dict[str, list[tuple[float, float]]] = {}
    results = []
    for label, make in methods.items():
        stats = [
            _functional_stats(model, kind, make(eta), x0, T, eta, n_paths, seed + i)[:2] for i, eta in enumerate(etas)
        ]
        means[label] = stats
        errors = [abs(m - target) for m, _ in stats]
        ses = [se for _, se in stats]
        fit = fit_weak_order(etas, np.maximum(errors, 1e-12), ses)
        small_enough = errors[-1] <= RELATIVE_TOLERANCE * travelled
        converging = fit.order >= MIN_ORDER or errors[-1] <= 4 * ses[-1]
        results.append(
            ClaimResult(
                claim_id=f"theorem_4_5.{name}.{label}",
                reference=REFERENCE,
                statement=f"{label} at time T = {T:g} (t = k eta^2) approaches the slow SDE on {name}",
                predicted=1.0,
                measured=fit.order,
                ci_low=fit.ci_low,
                ci_high=fit.ci_high,
                passed=bool(small_enough and converging),
                criterion=(
                    f"error at smallest eta <= {RELATIVE_TOLERANCE:g} x distance travelled and "
                    f"(fitted order >= {MIN_ORDER:g} or error within 4 SE of 0)"
                ),
                details={
                    "etas": list(etas),
                    "errors": errors,
                    "standard_errors": ses,
                    "slow_sde_value": target,
                    "start_value": start,
                    "functional": kind,
                    "n_paths": n_paths,
                },
            )
        )
    gaps = [abs(a[0] - b[0]) for a, b in zip(means["sgd"], means["sgdm_alpha0"], strict=True)]
    gap_ses = [float(np.hypot(a[1], b[1])) for a, b in zip(means["sgd"], means["sgdm_alpha0"], strict=True)]
    fit = fit_weak_order(etas, np.maximum(gaps, 1e-12), gap_ses)
    results.append(
        ClaimResult(
            claim_id=f"theorem_4_5.{name}.sgd_vs_sgdm",
            reference=REFERENCE,
            statement=f"SGD and SGDM (beta = 0.9) at the same eta approach each other on {name}",
            predicted=1.0,
            measured=fit.order,
            ci_low=fit.ci_low,
            ci_high=fit.ci_high,
            passed=bool(fit.order >= MIN_ORDER),
            criterion=f"fitted order of |E_SGD - E_SGDM| >= {MIN_ORDER:g}",
            details={"etas": list(etas), "gaps": gaps, "standard_errors": gap_ses},
        )
    )
    return results


def check_theorem_4_5(
    quick: bool = True, momentum: MomentumFactory = slow_time_sgdm, seed: int = 45
) -> list[ClaimResult]:
    """Theorem 4.5 on the label-noise toy (and, in the full run, the diagonal linear network)."""
    etas = (0.04, 0.02, 0.01) if quick else (0.04, 0.02, 0.01, 0.005)
    n_paths = 2_000 if quick else 20_000
    toy = label_noise_toy_model()
    results = _model_checks(
        "toy", toy, "coordinate", toy_manifold_point(np.array(1.0)), 2.0, etas, n_paths, seed, momentum
    )
    if not quick:
        network = diagonal_network_model()
        x0 = network.projection(np.full(network.dim, 0.8))
        results += _model_checks(
            "diagonal_network", network, "hessian_trace", x0, 1.0, etas[:3], 4_000, seed + 100, momentum
        )
    return results


@register("theorem_4_5", 7, REFERENCE, STATEMENT)
def _claim(quick: bool) -> list[ClaimResult]:
    return check_theorem_4_5(quick)
