"""Measurement loops shared by the claim checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from theory.params import MomentumParams
from theory.simulate import Method
from theory.weak_error import WeakErrorResult, weak_errors

__all__ = ["definition_3_1_beta", "worst_weak_errors", "worst_weak_errors_shared"]

Observable = Callable[[np.ndarray], np.ndarray]


def definition_3_1_beta(eta: float, alpha: float) -> float:
    r"""Momentum of Definition 3.1, :math:`1-\beta=c\,\eta^\alpha` (:meth:`theory.params.MomentumParams.from_alpha`).

    The claims use :math:`c=1` for :math:`\alpha>0` and :math:`c=0.1` at :math:`\alpha=0` (:math:`\beta=0.9` fixed).
    """
    return MomentumParams.from_alpha(eta, alpha, c=0.1 if alpha == 0 else 1.0).beta


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
        worst_weak_errors_shared([([a], b)], observables, x0, T, n_paths, seed + i)[0][0]
        for i, (a, b) in enumerate(pairs)
    ]


def worst_weak_errors_shared(
    groups: Iterable[tuple[Sequence[Method], Method]],
    observables: Sequence[Observable],
    x0: Sequence[float],
    T: float,
    n_paths: int,
    seed: int,
) -> list[list[WeakErrorResult]]:
    """:func:`worst_weak_errors` for groups of methods sharing one reference (simulated once, seed ``seed + i``).

    Each method's result equals the one :func:`worst_weak_errors` gives for it paired alone with the reference.
    """
    return [
        [
            max(result, key=lambda r: r.estimate)
            for result in weak_errors(list(a), b, list(observables), x0, T, n_paths, seed + i)
        ]
        for i, (a, b) in enumerate(groups)
    ]
