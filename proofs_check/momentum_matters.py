r"""Claim 8: where momentum does matter — curvature-induced instability (THEORY.md 2.4, 5.3; Lemma 2.4).

* ``momentum_matters.stability.METHOD`` (fields ``sgd_step``, ``update_step``, ``nesterov_step``): iterating the
  deterministic update rule under test on :math:`\mathcal L=\tfrac h2x^2`
  (the update rules of :mod:`theory.forms`, :math:`g=hx`), the measured edge of convergence in
  :math:`\eta h` equals the derived threshold (:func:`theory.quadratic.stability_threshold`): 2 for SGD,
  :math:`2(1+\beta)/(1-\beta)` for heavy ball (38 at :math:`\beta=0.9`), :math:`2(1+\beta)/((1-\beta)(1+2\beta))`
  for Nesterov.  Measured as the first diverging point of a grid of relative spacing
  :data:`GRID_SPACING` around the prediction; passed within two grid steps.
* ``momentum_matters.regime.eta_h=X`` (fields ``sgd``, ``sgdm``): on the noisy quadratic (:math:`h=s=1`, additive
  noise) at equal
  :math:`\eta`, the ratio of stationary losses SGD/SGDM is exactly
  :math:`1+\frac{2\beta}{1+\beta}R` with :math:`R=\frac{\eta h}{2-\eta h}` — Lemma 2.4's curvature-induced
  over noise-induced term, :math:`h^2\mathbb Ex^2/s^2`, evaluated at SGD's stationary law (derived with
  SymPy below).  So momentum is worth nothing when noise dominates (:math:`R\ll1`: ratio
  :math:`1+O(\eta h)`) and a lot when curvature dominates (:math:`\eta h\to2`).  Measured by Monte Carlo
  (stationary :math:`\mathbb Ex^2` of the simulated SGD and SGDM, time-averaged after burn-in); passed when the
  measured ratio is within :data:`Z` standard errors of the prediction (four values of :math:`\eta h`: about
  :math:`2.5\times10^{-4}` false failures together).  A learning-rate or noise-variance error of SGDM moves the
  ratio by about the size of the error at every :math:`\eta h`.
"""

from __future__ import annotations

import numpy as np

from proofs_check.methods import REFERENCE, MethodSet
from proofs_check.registry import register
from proofs_check.result import ClaimResult
from proofs_check.verdicts import guarded
from theory.forms import Step
from theory.problems import noisy_quadratic
from theory.quadratic import regime_loss_ratio, stability_threshold
from theory.quadratic_symbolic import prove_regime_identity
from theory.stationary import ratio_of_means_interval, stationary_second_moments

__all__ = ["BURN_IN", "GRID_SPACING", "WINDOW", "Z", "check_momentum_matters"]

REFERENCE_TEXT = "THEORY.md 2.4, 5.3 (stability), Lemma 2.4 (regime); Cohen et al. 2021"
STATEMENT = "momentum matters when curvature-induced instability dominates: eta*h near or beyond 2"
GRID_SPACING = 1e-4
Z = 4.0
_BETA = 0.9
#: Steps discarded and steps averaged per path for the stationary second moments (relaxation time of SGD at
#: eta h = 0.05 is 20 steps, of SGDM about 10 / (1 - beta) = 100 steps at most here).
BURN_IN, WINDOW = 300, 300
FIELDS = ("sgd_step", "update_step", "nesterov_step", "sgd", "sgdm")
_STEP_FIELDS = {"sgd": "sgd_step", "heavy_ball": "update_step", "nesterov": "nesterov_step"}


def _measured_threshold(step: Step, beta: float, predicted: float, steps: int = 6000) -> float:
    """First point of a grid around ``predicted`` at which the deterministic iteration grows."""
    eta_h = predicted * (1 + GRID_SPACING * np.arange(-200, 201))
    x, m = np.ones_like(eta_h), np.zeros_like(eta_h)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            x, m = step(x, m, x, eta_h, beta)  # h = 1: g = h x = x and eta = eta_h
    diverged = ~(np.abs(x) < 1.0)
    if not diverged.any():
        return float("inf")
    return float(eta_h[np.argmax(diverged)])


def _stability(methods: MethodSet, name: str) -> ClaimResult:
    beta = 0.0 if name == "sgd" else _BETA
    field_name = _STEP_FIELDS[name]
    predicted = float(stability_threshold(beta, name))
    measured = _measured_threshold(getattr(methods, field_name), beta, predicted)
    tolerance = 2 * GRID_SPACING * predicted
    return ClaimResult(
        claim_id=f"momentum_matters.stability.{name}",
        reference=REFERENCE_TEXT,
        statement=f"deterministic {name} on h x^2/2 converges iff eta*h < threshold (beta = {beta:g})",
        predicted=predicted,
        measured=measured,
        ci_low=measured - GRID_SPACING * predicted,
        ci_high=measured,
        passed=bool(abs(measured - predicted) <= tolerance),
        criterion=(
            f"first diverging eta*h of {field_name} within 2 grid steps ({2 * GRID_SPACING:g} relative) "
            "of the threshold"
        ),
        details={"beta": beta, "grid_spacing": GRID_SPACING},
        fields=(field_name,),
    )


def _regime(methods: MethodSet, eta_h: float, identity: bool, n_paths: int, seed: int) -> ClaimResult:
    problem = noisy_quadratic(1.0, 1.0)
    pair = [methods.sgd(problem, eta_h, sigma=1.0), methods.sgdm(problem, eta_h, _BETA, sigma=1.0)]
    moments = stationary_second_moments(pair, [0.0], BURN_IN, WINDOW, n_paths, seed)[:, :, 0]
    estimate = ratio_of_means_interval(moments[0], moments[1])  # common random numbers: a paired ratio
    predicted, lemma_ratio = regime_loss_ratio(eta_h, _BETA)
    ratio, ratio_se = estimate.ratio, estimate.se
    passed = identity and ratio_se > 0 and abs(ratio - predicted) <= Z * ratio_se
    return ClaimResult(
        claim_id=f"momentum_matters.regime.eta_h={eta_h:g}",
        reference=REFERENCE_TEXT,
        statement=(
            f"stationary loss SGD/SGDM = 1 + 2beta/(1+beta) R, Lemma 2.4 ratio R = {lemma_ratio:.3g} "
            f"({'curvature' if lemma_ratio > 1 else 'noise'}-dominated)"
        ),
        predicted=predicted,
        measured=ratio,
        ci_low=ratio - Z * ratio_se,
        ci_high=ratio + Z * ratio_se,
        passed=bool(passed),
        criterion=f"|measured ratio - prediction| <= {Z:g} SE (paired, common random numbers; SymPy identity holds)",
        details={
            "lemma_2_4_ratio_predicted": lemma_ratio,
            "lemma_2_4_ratio_measured": float(moments[0].mean()),  # h^2 E x^2 / s^2 with h = s = 1
            "sgd_second_moment": float(moments[0].mean()),
            "sgdm_second_moment": float(moments[1].mean()),
            "n_paths": n_paths,
            "burn_in": BURN_IN,
            "window": WINDOW,
            "symbolic_identity_holds": identity,
        },
        fields=("sgd", "sgdm"),
    )


def check_momentum_matters(
    quick: bool = True, methods: MethodSet = REFERENCE, seed: int | None = None
) -> list[ClaimResult]:
    """Stability edges of the update rules; the curvature/noise regime of ``methods.sgdm`` against ``methods.sgd``."""
    seed = 8 if seed is None else seed
    results: list[ClaimResult] = []
    for name in ("sgd", "heavy_ball", "nesterov"):
        results += guarded(
            f"momentum_matters.stability.{name}",
            REFERENCE_TEXT,
            STATEMENT,
            (_STEP_FIELDS[name],),
            lambda name=name: _stability(methods, name),
        )
    identity = prove_regime_identity()
    n_paths = 20_000 if quick else 200_000
    for i, eta_h in enumerate((0.05, 0.5, 1.5, 1.9)):
        results += guarded(
            f"momentum_matters.regime.eta_h={eta_h:g}",
            REFERENCE_TEXT,
            STATEMENT,
            ("sgd", "sgdm"),
            lambda i=i, eta_h=eta_h: _regime(methods, eta_h, identity, n_paths, seed + i),
        )
    return results


@register("momentum_matters", 8, REFERENCE_TEXT, STATEMENT, FIELDS)
def _claim(quick: bool, methods: MethodSet, seed: int | None) -> list[ClaimResult]:
    return check_momentum_matters(quick, methods, seed)
