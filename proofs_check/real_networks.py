r"""The theory's predictions on real networks, as claims with verdicts (``mvm verify --empirical``).

The theory claims (1-9) are checked on quadratics and SDEs where the truth is exact.  The real-network claims E1-E4
state a prediction of the same theory *before* a training run on a real network and give it a verdict with an
interval, so a user sees on their own data where the small-learning-rate picture holds and where it does not:

* **E1** (:mod:`proofs_check.real_small_eta`): at a fixed batch size, SGD and SGDM at the same effective learning rate
  :math:`\eta` and the same SDE time :math:`T=\eta K` agree as :math:`\eta\to0` (Theorems 3.5 and 4.5);
* **E2** (:mod:`proofs_check.real_svag`): SVAG (Definition 5.1) closes the SGDM - SGD gap as :math:`\ell` grows;
* **E3** (:mod:`proofs_check.real_regime`): Lemma 2.4's curvature-induced over noise-induced term and
  :math:`\eta\lambda_{\max}` against the stability edges predict where momentum matters;
* **E4** (:mod:`proofs_check.real_stationary`): the stationary loss ratio of SGD to SGDM near a minimum of a network
  small enough for exact :math:`H` and :math:`\Sigma` (claim 8's prediction, per eigenmode).

Like the theory claims, each verifies *methods*: :class:`RealNetworkMethods` holds the optimizer configurations,
the SVAG member, the regime indicator and the stationary prediction a claim relies on, and :data:`REAL_CONTROLS`
holds one deliberately wrong set per claim (its *negative control*), which must fail that claim; the tests run each
at tiny scale.  Settings at each scale were fixed from the theory's stated regime before measuring (each claim
module's docstring says how); nothing is tuned until it passes, and a failed prediction is reported as measured.

Scales: ``tiny`` (the tests: seconds), ``quick`` (``mvm verify --empirical --quick``: minutes on 2 CPU cores, data
that ships with the package's dependencies, MNIST-1D), ``full`` (a GPU and the paper's data where a claim uses it).
Runs go through :func:`empirical.experiment.train_members` into the run store ``CACHE/runs``, the store the figure
builds use, so a finished run is never trained twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from empirical.config import OptimizerConfig, SvagConfig
from empirical.run import RunResult
from proofs_check.registry import available_claims, select_claims
from proofs_check.result import ClaimResult, error_result

__all__ = [
    "REAL_CONTROLS",
    "REAL_REFERENCE",
    "SCALES",
    "Control",
    "DecayOrder",
    "GapVerdict",
    "PairedGap",
    "RealNetworkMethods",
    "RealNetworkSetup",
    "check_paired",
    "completed",
    "decay_order",
    "distance_travelled",
    "gap_claim_results",
    "gap_closes",
    "gap_result",
    "paired_gap",
    "run_real_networks",
    "step_gaps",
]

SCALES = ("tiny", "quick", "full")
#: Gap closes: at the smallest step, |gap| + t SE must be at most this fraction of the distance SGD travelled.
EQUIVALENCE_FRACTION = 0.05


@dataclass(frozen=True)
class RealNetworkSetup:
    """Where and how large the real-network claims run.

    ``scale`` in :data:`SCALES`; ``device`` ``"cpu"``/``"cuda"``/``"cuda:N"``; ``cache_dir`` holds the run store
    (``CACHE/runs``); ``data`` maps dataset names to local paths for full scale (``--data NAME=PATH``).
    """

    scale: str = "quick"
    device: str = "cpu"
    cache_dir: str = "results/cache"
    data: Mapping[str, str] = field(default_factory=dict)
    progress: bool = False

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}, got {self.scale!r}")
        if not isinstance(self.cache_dir, str | Path) or not str(self.cache_dir):
            raise ValueError(f"cache_dir must be a non-empty path, got {self.cache_dir!r}")
        object.__setattr__(self, "data", dict(self.data))

    @property
    def runs_dir(self) -> Path:
        return Path(self.cache_dir) / "runs"

    def data_path(self, name: str, claim_id: str) -> str:
        """The local path given for dataset ``name``; a clear error naming ``--data NAME=PATH`` otherwise."""
        if name not in self.data:
            raise ValueError(f"{claim_id} at full scale needs {name}: pass --data {name}=PATH")
        return self.data[name]


def _sgd(eta: float, weight_decay: float) -> OptimizerConfig:
    r"""Plain SGD, :math:`x_{k+1}=x_k-\eta(g_k+\lambda x_k)`."""
    return OptimizerConfig("sgd", eta=eta, momentum=0.0, weight_decay=weight_decay)


def _sgdm(eta: float, beta: float, weight_decay: float) -> OptimizerConfig:
    r"""Normalized SGDM (paper eq. (3)) at effective learning rate :math:`\eta`:
    :math:`m_{k+1}=\beta m_k+(1-\beta)g_k,\ x_{k+1}=x_k-\eta m_{k+1}`."""
    return OptimizerConfig("normalized_sgdm", eta=eta, momentum=beta, weight_decay=weight_decay)


def _svag_member(eta: float, ell: int) -> tuple[float, SvagConfig, int]:
    r"""SVAG (Definition 5.1) with factor :math:`\ell`: ``(eta, SvagConfig(ell), length factor 1)``.

    The engine (:func:`empirical.svag.svag_schedule`) runs :math:`\ell` times the steps at :math:`\eta/\ell` with
    :math:`r_{1,2}=\tfrac12(1\pm\sqrt{2\ell-1})`; durations in the config are in units of the :math:`\ell=1` run.
    Returns the optimizer's :math:`\eta`, the SVAG config and a factor on the run's length.
    """
    return eta, SvagConfig(ell=ell), 1


def _regime_score(curvature_over_noise: np.ndarray, eta_lambda_max: np.ndarray, beta: float) -> np.ndarray:
    r"""E3's indicator :math:`\frac{\eta\lambda_{\max}}2\cdot\frac{\rho}{1+\rho}`, zero beyond SGDM's edge.

    :math:`\eta\lambda_{\max}/2` is the proximity to SGD's stability edge (1 at the edge); :math:`\rho/(1+\rho)` is
    the share of Lemma 2.4's second-order term that is curvature-induced, the only part in which SGD and SGDM at one
    :math:`\eta` differ (the noise-induced part is the shared SDE's).  Neither alone can predict: :math:`\rho` does
    not depend on :math:`\eta`, yet at small :math:`\eta` the two methods agree whatever :math:`\rho` (E1); and
    near the edge with noise dominating, both are carried by the same noise.  Beyond SGDM's edge
    :math:`2\frac{1+\beta}{1-\beta}` both diverge and momentum is predicted not to help (score 0).  A score of at
    least 1 (past SGD's edge with curvature dominating) predicts that SGDM is better.
    """
    rho = np.clip(np.asarray(curvature_over_noise, dtype=float), 0.0, None)
    sharp = np.asarray(eta_lambda_max, dtype=float)
    share = np.where(np.isinf(rho), 1.0, rho / (1.0 + np.where(np.isinf(rho), 0.0, rho)))  # noise term 0: all curvature
    score = sharp / 2.0 * share
    return np.where(sharp >= 2.0 * (1.0 + beta) / (1.0 - beta), 0.0, score)


def _stationary_ratio(curvatures: np.ndarray, noise: np.ndarray, eta: float, beta: float) -> float:
    r"""Predicted :math:`\mathbb E\mathcal L_{\rm SGD}/\mathbb E\mathcal L_{\rm SGDM}` at stationarity near a minimum.

    In the eigenbasis of :math:`H` (eigenvalues :math:`h_i`) with the batch-gradient covariance's diagonal
    :math:`s_i^2=(Q^\top\Sigma_BQ)_{ii}`, the linearised dynamics decouple in the loss: the excess loss
    :math:`\tfrac12\operatorname{tr}(HC)=\tfrac12\sum_ih_iC_{ii}` needs only each mode's variance, which for SGD is
    :math:`C_{ii}=\frac{\eta s_i^2}{h_i(2-\eta h_i)}` and for normalized SGDM that divided by
    :math:`1+\frac{2\beta}{1+\beta}R_i`, :math:`R_i=\frac{\eta h_i}{2-\eta h_i}`
    (:func:`theory.quadratic.regime_loss_ratio`, claim 8).  Modes with :math:`h_i\le0` carry no stationary law and
    are excluded by the caller.
    """
    from theory.quadratic import regime_loss_ratio

    h = np.asarray(curvatures, dtype=float)
    s2 = np.asarray(noise, dtype=float)
    sgd = eta * s2 / (2.0 - eta * h)  # h_i C_ii for SGD
    ratios = np.array([regime_loss_ratio(float(eta * hi), beta)[0] for hi in h])
    return float(sgd.sum() / (sgd / ratios).sum())


@dataclass(frozen=True)
class RealNetworkMethods:
    r"""The methods the real-network claims verify (a negative control replaces one field).

    * ``sgd(eta, weight_decay)`` and ``sgdm(eta, beta, weight_decay)``: optimizer configs at effective learning rate
      :math:`\eta` (E1-E3);
    * ``svag_member(eta, ell)``: the optimizer's rate, SVAG config and length factor of SVAG member :math:`\ell` (E2);
    * ``regime_score(rho, eta_lambda_max, beta)``: the indicator of where momentum matters, per grid cell (E3);
    * ``stationary_ratio(h, s2, eta, beta)``: the predicted SGD/SGDM stationary loss ratio from the curvatures and
      per-mode batch-noise variances (E4).
    """

    sgd: Callable[[float, float], OptimizerConfig] = _sgd
    sgdm: Callable[[float, float, float], OptimizerConfig] = _sgdm
    svag_member: Callable[[float, int], tuple[float, SvagConfig, int]] = _svag_member
    regime_score: Callable[[np.ndarray, np.ndarray, float], np.ndarray] = _regime_score
    stationary_ratio: Callable[[np.ndarray, np.ndarray, float, float], float] = _stationary_ratio


REAL_REFERENCE = RealNetworkMethods()


def _sgdm_pytorch_rate(eta: float, beta: float, weight_decay: float) -> OptimizerConfig:
    # The classic slip: PyTorch's momentum at lr = eta runs at effective rate eta / (1 - beta).
    return OptimizerConfig("normalized_sgdm", eta=eta / (1.0 - beta), momentum=beta, weight_decay=weight_decay)


def _svag_without_rate_scaling(eta: float, ell: int) -> tuple[float, SvagConfig, int]:
    # Coefficients (1, 0) and no 1/ell on the rate: ell times the steps of the same SGD at the same eta.
    return eta, SvagConfig(ell=1), ell


def _shuffled_score(curvature_over_noise: np.ndarray, eta_lambda_max: np.ndarray, beta: float) -> np.ndarray:
    # The reference indicator computed from measurements assigned to the wrong cells (cyclic shift by half the grid).
    score = _regime_score(curvature_over_noise, eta_lambda_max, beta)
    return np.roll(score, score.size // 2)


def _sde_limit_ratio(curvatures: np.ndarray, noise: np.ndarray, eta: float, beta: float) -> float:
    # The SDE-level prediction: SGD and SGDM share the SDE, so the stationary losses would be equal.
    return 1.0


@dataclass(frozen=True)
class Control:
    """A deliberately wrong method set and the real-network claim it must fail."""

    description: str
    methods: RealNetworkMethods
    must_fail: str


#: One negative control per real-network claim; ``tests/proofs_check/test_real_networks.py`` runs each at tiny scale.
REAL_CONTROLS: dict[str, Control] = {
    "sgdm_at_eta_over_1_minus_beta": Control(
        "SGDM at effective rate eta/(1-beta) (PyTorch's lr = eta taken as the effective rate)",
        replace(REAL_REFERENCE, sgdm=_sgdm_pytorch_rate),
        "e1_small_eta",
    ),
    "svag_without_rate_scaling": Control(
        "SVAG with coefficients (1, 0) and no 1/ell on the rate: ell times the steps at eta",
        replace(REAL_REFERENCE, svag_member=_svag_without_rate_scaling),
        "e2_svag",
    ),
    "shuffled_regime_indicator": Control(
        "the regime indicator computed from measurements of the wrong cells (cyclic shift by half the grid)",
        replace(REAL_REFERENCE, regime_score=_shuffled_score),
        "e3_regime",
    ),
    "sde_limit_stationary_ratio": Control(
        "the SDE limit's prediction that SGD and SGDM have equal stationary losses (ratio 1)",
        replace(REAL_REFERENCE, stationary_ratio=_sde_limit_ratio),
        "e4_stationary",
    ),
}


@dataclass(frozen=True)
class PairedGap:
    """Mean over seeds of ``second - first`` for runs paired by seed, its standard error, count and t interval."""

    mean: float
    se: float
    n: int
    low: float
    high: float

    def covers_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def paired_gap(first: Sequence[float], second: Sequence[float], level: float = 0.95) -> PairedGap:
    r"""Paired difference :math:`\overline{b-a}` with :math:`\mathrm{se}=s_{b-a}/\sqrt n` and its Student-t interval.

    Runs with one seed share initialisation and batch order (common random numbers), so the difference has far less
    spread than either run.  Raises ``ValueError`` for unequal or fewer than 2 pairs, or non-finite values.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two equal-length samples of at least 2 paired runs, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a paired run ended with a non-finite metric (diverged): no gap can be measured")
    diff = b - a
    se = float(diff.std(ddof=1) / math.sqrt(diff.size))
    half = float(stats.t.ppf(0.5 + level / 2.0, diff.size - 1)) * se
    mean = float(diff.mean())
    return PairedGap(mean, se, int(diff.size), mean - half, mean + half)


@dataclass(frozen=True)
class DecayOrder:
    """Fit of :math:`\text{gap}(x)=Cx^p`: the order :math:`p`, its 95% profile interval, :math:`C`, fit quality."""

    order: float
    low: float
    high: float
    scale: float
    chi2_per_dof: float


_ORDER_GRID = np.linspace(-3.0, 6.0, 1801)


def decay_order(xs: Sequence[float], gaps: Sequence[float], ses: Sequence[float]) -> DecayOrder:
    r"""Weighted fit of signed gaps :math:`g_i\approx Cx_i^p` (weights :math:`\mathrm{se}_i^{-2}`), with an interval.

    For each :math:`p` on a grid over :math:`[-3,6]` the best :math:`C` is linear least squares, so the profile
    :math:`\chi^2(p)` is exact; the 95% interval is :math:`\{p:\chi^2(p)-\chi^2_{\min}\le3.84\}`, or, when the
    fit is worse than the standard errors allow (:math:`s=\chi^2_{\min}/(n-2)>1`, Birge's factor),
    :math:`\le F_{1,n-2;0.95}\,s`: a misfit widens the interval.
    Signed gaps keep points at the noise floor usable (a log fit would need every gap resolved and positive).  An
    interval that reaches the grid's end means the data do not bound :math:`p` there.
    """
    x = np.asarray(xs, dtype=float)
    g = np.asarray(gaps, dtype=float)
    # a zero SE (identical accuracies on every seed) would weigh a point infinitely: floor it far below the gaps
    floor = 1e-12 * max(float(np.abs(g).max()), 1e-300)
    w = 1.0 / np.maximum(np.asarray(ses, dtype=float), floor) ** 2
    if x.size < 3 or np.any(x <= 0):
        raise ValueError(f"need at least 3 positive step sizes, got {xs!r}")
    powers = x[None, :] ** _ORDER_GRID[:, None]
    scales = (powers * w * g).sum(axis=1) / (powers**2 * w).sum(axis=1)
    chi2 = ((g - scales[:, None] * powers) ** 2 * w).sum(axis=1)
    best = int(np.argmin(chi2))
    dof = max(x.size - 2, 1)
    birge = max(1.0, float(chi2[best]) / dof)
    # with the scale estimated from the residuals the cut is F(1, n - 2), not chi-square(1)
    cut = stats.chi2.ppf(0.95, 1) if birge == 1.0 else stats.f.ppf(0.95, 1, dof) * birge
    inside = _ORDER_GRID[chi2 - chi2[best] <= cut]
    return DecayOrder(float(_ORDER_GRID[best]), float(inside.min()), float(inside.max()), float(scales[best]), birge)


@dataclass(frozen=True)
class GapVerdict:
    """Outcome of :func:`gap_closes`."""

    status: str
    order: DecayOrder
    bound_at_smallest: float
    margin: float
    resolved: bool
    shrank: bool
    criterion: str


def _t975(count: int) -> float:
    """One-sided 97.5% Student-t quantile for a mean over ``count`` paired seeds."""
    return float(stats.t.ppf(0.975, max(count - 1, 1)))


def gap_closes(
    xs: Sequence[float], gaps: Sequence[PairedGap], travelled: float, *, fraction: float = EQUIVALENCE_FRACTION
) -> GapVerdict:
    r"""The SGDM - SGD gap closes as the step :math:`x` (:math:`\eta`, or :math:`1/\ell`) goes to 0.

    Passes when (1) the gap at the largest step is resolved (:math:`|g|>3\,\mathrm{se}`; else ``unresolved``:
    nothing was seen to close), (2) it shrank: :math:`|g_{\min}|+t\,\mathrm{se}<|g_{\max}|-t\,\mathrm{se}` between
    the largest and the smallest step (:math:`t` the 97.5% Student quantile with seeds - 1 degrees of freedom), and
    (3) at the smallest step :math:`|g|+t\,\mathrm{se}\le` ``fraction`` of ``travelled`` (how far SGD moved the
    quantity over the run): an equivalence bound, which more seeds make easier to meet, not harder, unlike "the
    interval covers 0".  Each one-sided 97.5% t bound fails a true claim at its threshold at most 2.5% of the time
    (for normal per-seed gaps).

    What (1)-(3) do not see: any scheme that takes the per-step rate to 0 at a fixed SDE time closes the gap, SVAG or
    not; that SVAG keeps the gradient noise (covariance :math:`\ell\Sigma` of real mini-batch gradients) is claim 6.

    The order of :func:`decay_order` (gap :math:`\propto x^p`) is reported with its interval; it is not part of
    the verdict because two effects of opposite sign both shrink with :math:`x` on a real network (momentum's
    curvature benefit and its lag, see E1), so the signed gap can cross zero on its way to it and a single power
    law need not fit.
    """
    order = decay_order(xs, [g.mean for g in gaps], [g.se for g in gaps])
    steps = np.asarray(xs, dtype=float)
    smallest, largest = gaps[int(np.argmin(steps))], gaps[int(np.argmax(steps))]
    bound = abs(smallest.mean) + _t975(smallest.n) * smallest.se
    margin = fraction * abs(travelled)
    resolved = abs(largest.mean) > 3.0 * largest.se
    shrank = bound < abs(largest.mean) - _t975(largest.n) * largest.se
    criterion = (
        f"gap at the largest step > 3 SE; |gap| + t SE at the smallest step < |gap| - t SE at the largest "
        f"(t: 97.5% Student quantile over seeds); and <= {fraction:g} x distance travelled"
    )
    if not resolved:
        status = "unresolved"
    elif shrank and bound <= margin:
        status = "pass"
    else:
        status = "fail"
    return GapVerdict(status, order, bound, margin, resolved, shrank, criterion)


def gap_result(
    claim_id: str,
    reference: str,
    statement: str,
    xs: Sequence[float],
    gaps: Sequence[PairedGap],
    travelled: float,
    *,
    predicted_order: float,
    x_name: str,
    details: Mapping[str, Any],
    fields: Sequence[str],
) -> ClaimResult:
    """A :class:`ClaimResult` for a :func:`gap_closes` verdict.

    Predicted is the theory's limit, a gap of 0; measured is the gap at the smallest step with its t interval; the
    fitted order (predicted ``predicted_order``) and every step's gap are in ``details``.
    """
    verdict = gap_closes(xs, gaps, travelled)
    smallest = gaps[int(np.argmin(np.asarray(xs, dtype=float)))]
    return ClaimResult(
        claim_id=claim_id,
        reference=reference,
        statement=statement,
        predicted=0.0,
        measured=smallest.mean,
        ci_low=smallest.low,
        ci_high=smallest.high,
        passed=verdict.status == "pass",
        criterion=verdict.criterion,
        details={
            x_name: [float(x) for x in xs],
            "gap": [g.mean for g in gaps],
            "gap_se": [g.se for g in gaps],
            "gap_ci": [[g.low, g.high] for g in gaps],
            "seeds": smallest.n,
            "bound_at_smallest": verdict.bound_at_smallest,
            "shrank": verdict.shrank,
            "margin": verdict.margin,
            "travelled": float(travelled),
            "interval_covers_zero_at_smallest": smallest.covers_zero(),
            "order": verdict.order.order,
            "order_ci": [verdict.order.low, verdict.order.high],
            "predicted_order": predicted_order,
            "order_chi2_per_dof": verdict.order.chi2_per_dof,
            **details,
        },
        fields=tuple(fields),
        status=verdict.status,
    )


def distance_travelled(results: Sequence[RunResult], metric: str) -> float:
    """How far ``results`` moved ``metric`` (``final_train_loss``, ``final_test_acc``): mean |final - first evaluation|.

    The first row of every run's curves is the evaluation at step 0, before any update.
    """
    curve = metric.removeprefix("final_")
    if not results:
        raise ValueError("no runs to measure the distance travelled on")
    first = float(np.mean([r.curves[curve][0] for r in results]))
    final = float(np.mean([r.metrics[metric] for r in results]))
    return abs(final - first)


def check_paired(runs: Mapping[str, RunResult], pairs: Sequence[tuple[str, str]]) -> None:
    """``RuntimeError`` unless each named pair saw the same batches (``batch_order_sha256``), so its gap is paired."""
    for first, second in pairs:
        if runs[first].metrics.get("batch_order_sha256") != runs[second].metrics.get("batch_order_sha256"):
            raise RuntimeError(f"runs {first!r} and {second!r} did not see the same batches: their gap is not paired")


def completed(results: Sequence[RunResult]) -> Sequence[RunResult]:
    """``results`` unchanged when every run completed; else ``RuntimeError`` naming those that did not."""
    failed = [f"{r.name} ({r.status})" for r in results if r.status != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) did not complete, e.g. {failed[:3]}: no paired gap can be measured")
    return results


#: The quantities whose SGDM - SGD gap E1 and E2 measure, with the label of each sub-result.
GAP_METRICS = (("final_train_loss", "train_loss"), ("final_test_acc", "test_acc"))


def step_gaps(results: Sequence[RunResult], steps: Sequence[Any], seeds: Sequence[int], metric: str) -> list[PairedGap]:
    """Paired SGDM - SGD gaps in ``metric`` for each step label, from runs named ``SGD,STEP,SEED``/``SGDM,STEP,SEED``.

    Raises ``RuntimeError`` (:func:`check_paired`) when a pair did not see the same batches.
    """
    runs = {r.name: r for r in results}
    check_paired(runs, [(f"SGD,{step},{s}", f"SGDM,{step},{s}") for step in steps for s in seeds])
    return [
        paired_gap(
            [runs[f"SGD,{step},{s}"].metrics[metric] for s in seeds],
            [runs[f"SGDM,{step},{s}"].metrics[metric] for s in seeds],
        )
        for step in steps
    ]


def gap_claim_results(
    claim_id: str,
    reference: str,
    statement: str,
    results: Sequence[RunResult],
    steps: Sequence[Any],
    xs: Sequence[float],
    seeds: Sequence[int],
    *,
    x_name: str,
    details: Mapping[str, Any],
    fields: Sequence[str],
) -> list[ClaimResult]:
    """One :func:`gap_result` per quantity of :data:`GAP_METRICS` (E1, E2): step labels ``steps`` at sizes ``xs``.

    The distance travelled is SGD's, at the smallest step (the run closest to the limit the gap closes towards).
    """
    closest = steps[int(np.argmin(np.asarray(xs, dtype=float)))]
    sgd_closest = [r for r in results if r.name.startswith(f"SGD,{closest},")]
    return [
        gap_result(
            f"{claim_id}.{label}",
            reference,
            f"{statement} ({label.replace('_', ' ')})",
            xs,
            step_gaps(results, steps, seeds, metric),
            distance_travelled(sgd_closest, metric),
            predicted_order=1.0,
            x_name=x_name,
            details=details,
            fields=fields,
        )
        for metric, label in GAP_METRICS
    ]


def run_real_networks(
    setup: RealNetworkSetup | None = None,
    only: str | Sequence[str] | None = None,
    methods: RealNetworkMethods = REAL_REFERENCE,
) -> list[ClaimResult]:
    """Run the real-network claims E1-E4 (or those in ``only``) at ``setup``'s scale and return their results.

    An exception inside a claim (missing data, a diverged run) becomes one ``error`` result; the others still run.
    """
    setup = setup or RealNetworkSetup()
    if not isinstance(methods, RealNetworkMethods):
        raise ValueError(f"methods must be a RealNetworkMethods, got {type(methods).__name__}")
    claims = available_claims("empirical")
    selected = select_claims(only, "empirical")
    threads = torch.get_num_threads()
    if setup.device == "cpu" and setup.scale != "full":
        # Small networks on the CPU: a second intra-op thread brings no speed, and when other processes share the
        # cores OpenMP barriers stall (measured up to 30x slower per step under load).
        torch.set_num_threads(1)
    try:
        return _run_selected(setup, methods, claims, selected)
    finally:
        torch.set_num_threads(threads)


def _run_selected(
    setup: RealNetworkSetup, methods: RealNetworkMethods, claims: Mapping[str, Any], selected: Sequence[str]
) -> list[ClaimResult]:
    results: list[ClaimResult] = []
    for claim_id in selected:
        claim = claims[claim_id]
        start = time.perf_counter()
        try:
            claim_results = claim.check(setup, methods)
        except Exception as exc:  # one claim's failure to run must not hide the others' verdicts
            claim_results = [error_result(claim_id, claim.reference, claim.statement, exc, claim.fields)]
        elapsed = time.perf_counter() - start
        results.extend(replace(r, wall_time_s=elapsed / len(claim_results)) for r in claim_results)
    return results
