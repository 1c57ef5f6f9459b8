r"""Claim 9: on the exact noisy quadratic model momentum matters only above the critical batch size.

Setting: Zhang et al.'s noisy quadratic model (NeurIPS 2019; THEORY.md 5.1, 5.7), :math:`h_i=1/i`,
:math:`d=10^4` (binned, :func:`theory.batch_scaling.nqm_bins`), noise :math:`H/B`, :math:`x_0=\mathbf 1`, target
1% of the initial loss, batch sizes :math:`4,16,\dots,2^{20}`.  Steps to target of normalized SGDM (paper eq. (3))
come from the method under test ``methods.steps_to_target`` (field ``steps_to_target`` of
:class:`~proofs_check.methods.MethodSet`, the signature of :func:`theory.batch_scaling.steps_to_target`), tuned
by :func:`theory.batch_scaling.tune_steps_to_target` (which calls it) over :math:`\eta` for SGD and over
:math:`(\eta,\beta)` for SGDM.  The critical batch size
:math:`B_{\rm crit}` of SGD is where its steps reach twice the linear-scaling extrapolation from :math:`B=4`
(:func:`theory.batch_scaling.critical_batch_size`).  Sub-results:

* ``batch_scaling.small_batch``: for :math:`B\le B_{\rm crit}/4`, tuned SGDM needs as many steps as tuned SGD.
  Predicted ratio :math:`S_{\rm SGD}/S_{\rm SGDM}=1`: both follow the same SDE at small :math:`\eta` (Theorem 3.5),
  and momentum's stationary-loss advantage :math:`1+\frac{2\beta}{1+\beta}\frac{\eta h}{2-\eta h}` (THEORY.md 5.4)
  is small while the tuned :math:`\eta h_{\max}` is.  Passed when every ratio lies within a factor
  :data:`SMALL_BATCH_FACTOR`.
* ``batch_scaling.same_eta``: for :math:`B\le B_{\rm crit}/16`, SGDM with :math:`\beta=0.9` at SGD's tuned
  :math:`\eta` (the paper's comparison at equal effective learning rate) needs as many steps as SGD; within a factor
  :data:`SAME_ETA_FACTOR`.
* ``batch_scaling.large_batch``: at :math:`B=2^{20}` tuned SGDM needs fewer steps, by the factor predicted before
  measuring from the noise-free limit :math:`B\to\infty` (SGD capped at :math:`\eta<2/h_{\max}`, heavy ball at
  :math:`\eta<2(1+\beta)/((1-\beta)h_{\max})`), computed with the package's reference
  :func:`theory.batch_scaling.steps_to_target` on the same tuning grid (35.4 at quick scale; the gradient noise
  :math:`h/2^{20}` is far below the target).  Passed when the measured speedup is within
  :data:`LARGE_BATCH_TOLERANCE` (relative) of the prediction and above 1.

Deterministic (exact recursions, no sampling).  Negative control (mutant ``steps_to_target_at_gamma``): SGDM run
at :math:`\gamma=\eta(1-\beta)` as its effective rate fails ``same_eta`` (10x the steps) and ``large_batch`` (its
reachable effective rate is capped near :math:`2(1+\beta)/h_{\max}`).
"""

from __future__ import annotations

import math
from typing import Any

from proofs_check.methods import REFERENCE, MethodSet
from proofs_check.registry import register
from proofs_check.result import ClaimResult
from theory.batch_scaling import (
    critical_batch_size,
    diagonal_quadratic,
    nqm,
    tune_steps_to_target,
)

__all__ = [
    "LARGE_BATCH_TOLERANCE",
    "SAME_ETA_BETA",
    "SAME_ETA_FACTOR",
    "SMALL_BATCH_FACTOR",
    "TARGET_FRACTION",
    "check_batch_scaling",
]

REFERENCE_TEXT = "Zhang et al. 2019 NQM (THEORY.md 5.7); Theorem 3.5; THEORY.md 2.4, 5.3"
TARGET_FRACTION = 0.01
SMALL_BATCH_FACTOR = 1.25
SAME_ETA_FACTOR = 1.05
SAME_ETA_BETA = 0.9
LARGE_BATCH_TOLERANCE = 0.2
STATEMENT = "momentum reduces the tuned steps to a target loss only above the critical batch size (exact NQM)"
FIELDS = ("steps_to_target",)
_QUICK = {"bins": 60, "grid_points": 16, "refine_iterations": 8, "betas": (0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.999)}
_FULL = {
    "bins": 400,
    "grid_points": 24,
    "refine_iterations": 12,
    "betas": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998),
}


def check_batch_scaling(
    quick: bool = True,
    methods: MethodSet = REFERENCE,
    seed: int | None = None,
    *,
    batch_sizes: tuple[int, ...] = tuple(4**j for j in range(1, 11)),
    preconditioner_power: float = 0.0,
) -> list[ClaimResult]:
    """Tuned steps to target of SGD and SGDM across batch sizes, measured with ``methods.steps_to_target``.

    Deterministic: ``seed`` is unused.
    """
    steps_to_target = methods.steps_to_target
    config = _QUICK if quick else _FULL
    tuning = {"grid_points": config["grid_points"], "refine_iterations": config["refine_iterations"]}
    models = [nqm(b, bins=config["bins"], preconditioner_power=preconditioner_power) for b in batch_sizes]
    target = TARGET_FRACTION * models[0].initial_loss
    sgd = [tune_steps_to_target(m, target, steps_function=steps_to_target, **tuning) for m in models]
    sgdm = [
        tune_steps_to_target(m, target, betas=config["betas"], steps_function=steps_to_target, **tuning) for m in models
    ]
    sgd_steps, sgdm_steps = [r.steps for r in sgd], [r.steps for r in sgdm]
    b_crit = critical_batch_size(batch_sizes, sgd_steps)
    common: dict[str, Any] = {
        "batch_sizes": list(batch_sizes),
        "target": target,
        "preconditioner_power": preconditioner_power,
        "sgd_steps": sgd_steps,
        "sgdm_steps": sgdm_steps,
        "sgdm_betas": [r.beta for r in sgdm],
        "sgd_critical_batch": b_crit,
        "sgdm_critical_batch": critical_batch_size(batch_sizes, sgdm_steps),
        "betas": list(config["betas"]),
        "bins": config["bins"],
    }
    results = []

    small = [j for j, b in enumerate(batch_sizes) if b <= b_crit / 4] or [0]
    ratios = [sgd_steps[j] / sgdm_steps[j] for j in small]
    worst = max(ratios, key=lambda r: abs(math.log(r)) if math.isfinite(r) and r > 0 else math.inf)
    results.append(
        ClaimResult(
            claim_id="batch_scaling.small_batch",
            reference=REFERENCE_TEXT,
            statement="below the critical batch size momentum does not reduce the tuned steps to target",
            predicted=1.0,
            measured=worst,
            ci_low=min(ratios),
            ci_high=max(ratios),
            passed=all(1 / SMALL_BATCH_FACTOR <= r <= SMALL_BATCH_FACTOR for r in ratios),
            criterion=f"tuned S_SGD / S_SGDM within a factor {SMALL_BATCH_FACTOR} for every B <= B_crit(SGD) / 4",
            details={**common, "batch_sizes_checked": [batch_sizes[j] for j in small], "ratios": ratios},
            fields=FIELDS,
        )
    )

    same = [j for j, b in enumerate(batch_sizes) if b <= b_crit / 16] or [0]
    same_ratios = []
    for j in same:
        momentum = steps_to_target(models[j], target, sgd[j].eta, SAME_ETA_BETA)
        same_ratios.append(momentum / sgd_steps[j])
    worst_same = max(same_ratios, key=lambda r: abs(math.log(r)) if math.isfinite(r) and r > 0 else math.inf)
    results.append(
        ClaimResult(
            claim_id="batch_scaling.same_eta",
            reference=REFERENCE_TEXT,
            statement=f"at SGD's tuned eta and small batch, SGDM (beta = {SAME_ETA_BETA:g}) needs as many steps",
            predicted=1.0,
            measured=worst_same,
            ci_low=min(same_ratios),
            ci_high=max(same_ratios),
            passed=all(1 / SAME_ETA_FACTOR <= r <= SAME_ETA_FACTOR for r in same_ratios),
            criterion=f"S_SGDM / S_SGD at SGD's eta within a factor {SAME_ETA_FACTOR} for every B <= B_crit(SGD) / 16",
            details={**common, "batch_sizes_checked": [batch_sizes[j] for j in same], "ratios": same_ratios},
            fields=FIELDS,
        )
    )

    # Prediction first, from the reference theory in the noise-free limit (B -> infinity), same tuning grid.
    large = models[-1]
    noiseless = diagonal_quadratic(
        large.curvature, 0.0, loss_weight=large.loss_weight, initial_second_moment=large.initial_second_moment
    )
    limit_sgd = tune_steps_to_target(noiseless, target, **tuning)
    limit_sgdm = tune_steps_to_target(noiseless, target, betas=config["betas"], **tuning)
    predicted = limit_sgd.steps / limit_sgdm.steps
    measured = sgd_steps[-1] / sgdm_steps[-1]
    tolerance = LARGE_BATCH_TOLERANCE * predicted
    results.append(
        ClaimResult(
            claim_id="batch_scaling.large_batch",
            reference=REFERENCE_TEXT,
            statement=f"at B = {batch_sizes[-1]} tuned SGDM needs fewer steps than tuned SGD, by the predicted factor",
            predicted=predicted,
            measured=measured,
            ci_low=measured,
            ci_high=measured,
            passed=bool(measured > 1.0 and abs(measured - predicted) <= tolerance),
            criterion=(
                f"speedup S_SGD / S_SGDM > 1 and within {LARGE_BATCH_TOLERANCE:g} (relative) of the noise-free "
                "limit of the reference theory"
            ),
            details={
                **common,
                "predicted_sgd_steps": limit_sgd.steps,
                "predicted_sgdm_steps": limit_sgdm.steps,
                "predicted_sgdm_eta_beta": [limit_sgdm.eta, limit_sgdm.beta],
            },
            fields=FIELDS,
        )
    )
    return results


@register("batch_scaling", 9, REFERENCE_TEXT, STATEMENT, FIELDS)
def _claim(quick: bool, methods: MethodSet, seed: int | None) -> list[ClaimResult]:
    return check_batch_scaling(quick, methods, seed)
