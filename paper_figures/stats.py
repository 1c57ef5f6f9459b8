r"""Confidence intervals over seeds, the statistics every empirical figure and table reports.

Seeds are independent replicates; SGD and SGDM runs with the same seed share initialisation and batch
order (common random numbers), so their gap is estimated from paired differences, which is what makes a
3-seed comparison informative.  Intervals are Student-t:

.. math:: \bar a\pm t_{n-1,(1+c)/2}\,\frac{s_a}{\sqrt n},\qquad
          \overline{a-b}\pm t_{n-1,(1+c)/2}\,\frac{s_{a-b}}{\sqrt n}.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Interval", "mean_interval", "paired_difference_interval"]


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` replicates with its two-sided ``level`` Student-t interval (``low == high`` if n = 1)."""

    mean: float
    low: float
    high: float
    n: int
    level: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.n > 1 and (self.low > 0 or self.high < 0)

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``mean ± half`` (``scale`` = 100 for percentages)."""
        if self.n < 2:
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f}"


def _check(samples: Sequence[float] | np.ndarray, level: float) -> np.ndarray:
    values = np.asarray(samples, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("need at least one sample")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"samples must be finite, got {values.tolist()}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    return values


def mean_interval(samples: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    r"""Mean of ``samples`` and its Student-t interval :math:`\bar a\pm t_{n-1,(1+c)/2}\,s_a/\sqrt n`."""
    values = _check(samples, level)
    mean = float(values.mean())
    if values.size < 2:
        return Interval(mean, mean, mean, 1, level)
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return Interval(mean, mean - half, mean + half, int(values.size), level)


def paired_difference_interval(
    first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray, level: float = 0.95
) -> Interval:
    r"""Mean of ``first[i] - second[i]`` over paired replicates (same seed) and its Student-t interval
    :math:`\overline{a-b}\pm t_{n-1,(1+c)/2}\,s_{a-b}/\sqrt n` (common random numbers make it narrow)."""
    a, b = _check(first, level), _check(second, level)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.size} and {b.size}")
    return mean_interval(a - b, level)
