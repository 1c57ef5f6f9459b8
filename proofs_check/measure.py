"""Measurement loops shared by the claim checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from theory.simulate import Method
from theory.weak_error import WeakErrorResult, weak_error

__all__ = ["worst_weak_errors"]

Observable = Callable[[np.ndarray], np.ndarray]


def worst_weak_errors(
    pairs: Iterable[tuple[Method, Method]],
    observables: Sequence[Observable],
    x0: Sequence[float],
    T: float,
    n_paths: int,
    seed: int,
) -> list[WeakErrorResult]:
    r"""For each (method, reference) pair, the weak error :math:`\max_k|\mathbb Eh(x_k)-\mathbb Eh(y_k)|` of the
    observable :math:`h` where it is largest, on common random numbers (seed ``seed + i`` for pair ``i``)."""
    return [
        max(weak_error(a, b, list(observables), x0, T, n_paths, seed + i), key=lambda r: r.estimate)
        for i, (a, b) in enumerate(pairs)
    ]
