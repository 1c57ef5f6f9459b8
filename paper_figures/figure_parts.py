"""Pieces shared by the figure modules: stored data back into dataclasses, intervals as arrays and error bars.

A figure's ``compute`` stores ``dataclasses.asdict`` of a frozen dataclass of arrays (JSON lists once cached);
``plot`` rebuilds it with :func:`restore_dataclass`.  Monte Carlo points are drawn as error bars of their
:class:`~paper_figures.stats.Interval` with :func:`interval_errorbar`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from paper_figures.stats import Interval

__all__ = ["interval_arrays", "interval_errorbar", "restore_dataclass"]

T = TypeVar("T")


def restore_dataclass(cls: type[T], fields: Mapping[str, Any], tuples: Iterable[str] = ()) -> T:
    """``cls(**fields)`` with every list turned into a NumPy array, except the names in ``tuples`` (tuples)."""
    keep_tuples = set(tuples)
    values = {
        name: tuple(value) if name in keep_tuples else np.asarray(value) if isinstance(value, list) else value
        for name, value in fields.items()
    }
    return cls(**values)


def interval_arrays(intervals: Sequence[Interval] | Sequence[Sequence[Interval]]) -> tuple[np.ndarray, ...]:
    """``(mean, low, high)`` arrays of a (nested) sequence of intervals, in its shape."""
    return tuple(
        np.vectorize(lambda interval, name=name: getattr(interval, name), otypes=[float])(
            np.asarray(intervals, dtype=object)
        )
        for name in ("mean", "low", "high")
    )


def interval_errorbar(ax: Any, x: Any, mean: Any, low: Any, high: Any, **kwargs: Any) -> Any:
    """Points at ``mean`` with asymmetric error bars down to ``low`` and up to ``high`` (no connecting line)."""
    mean, low, high = (np.asarray(v, dtype=np.float64) for v in (mean, low, high))
    style = {"ls": "none", "capsize": 1.5, "elinewidth": 0.8, **kwargs}
    return ax.errorbar(x, mean, yerr=[mean - low, high - mean], **style)
