r"""Monte Carlo of stationary laws: time-averaged second moments of simulated paths, and ratios of their means.

The exact stationary covariance of SGD and SGDM on a noisy quadratic is :func:`theory.quadratic.stationary_covariance`
(THEORY.md 5.4); the estimators here measure it from paths of :mod:`theory.simulate`, to check the closed forms
(claims 4 and 8) and to draw their Monte Carlo points.

* After a burn-in of :math:`B` observation periods the law of :math:`x_{t_j}` is (close to) stationary, and the
  per-path time average :math:`\bar q=\frac1W\sum_{j=B+1}^{B+W}x_{t_j}^2` is an unbiased estimate of
  :math:`\mathbb E_\infty x^2`; different paths are independent replicates, so its standard error comes from the
  spread over paths (the time average absorbs the autocorrelation within a path).
* Paired replicates :math:`(a_p,b_p)` of two methods on common random numbers give the ratio of stationary
  moments with a delta-method interval (:func:`ratio_of_means_interval`).

The burn-in is the caller's to choose: from a deterministic start the second moment of a mode with spectral radius
:math:`\rho` (:func:`theory.quadratic.spectral_radius`) relaxes like :math:`\rho^{2k}`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from theory.simulate import Method, Seed, run_lockstep
from theory.validation import check_int, check_probability

__all__ = [
    "RatioEstimate",
    "ratio_of_means_interval",
    "stationary_second_moment",
    "stationary_second_moments",
]


def _check_count(value: int, name: str, minimum: int, meaning: str) -> int:
    return check_int(value, name, minimum=minimum, note=meaning)


def stationary_second_moments(
    methods: Sequence[Method],
    x0: Sequence[float] | np.ndarray,
    burn_in: int,
    window: int,
    n_paths: int,
    seed: Seed,
    *,
    period_steps: int = 1,
) -> np.ndarray:
    r"""Per-path time averages :math:`\frac1W\sum_{j=B+1}^{B+W}x_{t_j}^2` of every method, on common random numbers.

    The methods run side by side on the same normal draws (:func:`theory.simulate.run_lockstep`), so estimates of
    different methods are positively correlated and their ratios are precise.  Observation times :math:`t_j` are
    every ``period_steps`` steps of the coarsest method; the first ``burn_in`` (:math:`B`) periods are discarded and
    the next ``window`` (:math:`W`) averaged.  Returns an array of shape ``(len(methods), n_paths, d)``:
    independent replicates over paths (per coordinate) of the stationary :math:`\mathbb E x_i^2`.

    Raises ``ValueError`` for ``burn_in < 0``, ``window < 1`` or non-integers (and whatever
    :func:`~theory.simulate.run_lockstep` rejects: no methods, mismatched dimensions, ``n_paths < 1``, ...).
    """
    burn_in = _check_count(burn_in, "burn_in", 0, "observation periods")
    window = _check_count(window, "window", 1, "observation periods")
    sums = None
    for period, _, states in run_lockstep(methods, x0, burn_in + window, n_paths, seed, period_steps=period_steps):
        if period <= burn_in:
            continue
        squares = np.stack(states) ** 2
        sums = squares if sums is None else sums + squares
    return sums / window


def stationary_second_moment(
    method: Method,
    n_paths: int,
    seed: Seed,
    *,
    burn_in: int = 300,
    window: int = 300,
    x0: Sequence[float] | np.ndarray | None = None,
) -> tuple[float, float]:
    r"""Stationary :math:`\mathbb E x^2` of a one-dimensional ``method`` by Monte Carlo, and its standard error.

    Every step is observed: the mean over ``n_paths`` paths of :math:`\bar q_p=\frac1W\sum_{k=B+1}^{B+W}x_{k,p}^2`
    (:func:`stationary_second_moments` with ``period_steps=1``) and :math:`s_{\bar q}/\sqrt{n}` with the sample
    standard deviation over paths.  ``x0`` defaults to 0.  Compare with the exact
    :func:`theory.quadratic.stationary_covariance` (THEORY.md 5.4; claim 8 measures SGD/SGDM loss ratios with it).

    Raises ``ValueError`` unless ``method`` is one-dimensional (for :math:`d>1` use
    :func:`stationary_second_moments`) and ``n_paths >= 2``.
    """
    if not isinstance(method, Method):
        raise ValueError(f"method must be a theory.simulate.Method, got {type(method).__name__}")
    if method.observed_dim != 1:
        raise ValueError(
            f"method must be one-dimensional (observed_dim 1), got {method.observed_dim}; "
            "use stationary_second_moments for d > 1"
        )
    n_paths = _check_count(n_paths, "n_paths", 2, "paths, for a standard error")
    start = [0.0] if x0 is None else x0
    per_path = stationary_second_moments([method], start, burn_in, window, n_paths, seed)[0, :, 0]
    return float(per_path.mean()), float(per_path.std(ddof=1) / np.sqrt(n_paths))


@dataclass(frozen=True)
class RatioEstimate:
    r"""A ratio of means :math:`\bar a/\bar b` over ``n`` paired replicates, its standard error ``se`` and its
    two-sided ``level`` Student-t interval ``[ci_low, ci_high]`` (:func:`ratio_of_means_interval`)."""

    ratio: float
    ci_low: float
    ci_high: float
    n: int
    level: float
    se: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def ratio_of_means_interval(
    numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray, level: float = 0.95
) -> RatioEstimate:
    r"""Ratio :math:`r=\bar a/\bar b` of the means of paired replicates and its delta-method interval.

    .. math:: \operatorname{se}^2=\frac{s_a^2-2rs_{ab}+r^2s_b^2}{n\,\bar b^2},\qquad
              r\pm t_{n-1,(1+\text{level})/2}\operatorname{se},

    with sample (co)variances over the :math:`n` pairs; pairing (common random numbers, as in
    :func:`stationary_second_moments`) enters through :math:`s_{ab}`.

    Raises ``ValueError`` for samples of different lengths or fewer than 2, non-finite samples, ``level`` outside
    (0, 1), or a denominator mean that is not positive.
    """
    a = np.asarray(numerator, dtype=np.float64).reshape(-1)
    b = np.asarray(denominator, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two paired samples of equal length >= 2, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("samples must be finite")
    level = check_probability(level, "level")
    mean_b = float(b.mean())
    if not mean_b > 0.0:
        raise ValueError(f"the denominator's mean must be > 0, got {mean_b!r}")
    ratio = float(a.mean()) / mean_b
    covariance = np.cov(a, b, ddof=1)
    variance = (covariance[0, 0] - 2 * ratio * covariance[0, 1] + ratio**2 * covariance[1, 1]) / (a.size * mean_b**2)
    se = math.sqrt(max(variance, 0.0))
    half = float(stats.t.ppf(0.5 + level / 2, a.size - 1) * se)
    return RatioEstimate(ratio, ratio - half, ratio + half, int(a.size), float(level), se)
