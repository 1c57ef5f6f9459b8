r"""Deterministic weak expectations of 1-D SDEs: the backward Kolmogorov equation by the method of lines.

For an autonomous 1-D SDE :math:`dX=b(X)\,dt+G(X)\,dW` (:math:`G` a :math:`1\times r` row) the function
:math:`u(t,x)=\mathbb E[h(X_t)\mid X_0=x]` solves (in forward time :math:`t`)

.. math:: \partial_tu=b(x)\,\partial_xu+\tfrac12\,g^2(x)\,\partial_x^2u,\qquad u(0,x)=h(x),\qquad g^2=GG^\top,

so :math:`\mathbb Eh(X_t)` at every requested :math:`t` comes from one solve, with no Monte Carlo noise —
the SDE side of a weak-error measurement (THEORY.md 3.1).  Space is discretised on a uniform grid that
contains :math:`x_0` (fourth-order central differences inside, second order next to the ends; the two
end values are held at :math:`h`, a truncation whose effect is bounded by the probability of reaching
the ends, so the domain must hold the bulk of the law up to the final time).  Time is integrated by
:func:`scipy.integrate.solve_ivp` (BDF with the sparse Jacobian; :class:`_ZeroedBDF`, see there why).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from scipy.integrate import BDF, solve_ivp

from theory.sde import SDE
from theory.validation import check_int

__all__ = ["KolmogorovSolution", "kolmogorov_expectation"]


@dataclass(frozen=True)
class KolmogorovSolution:
    r""":math:`\mathbb Eh(X_t)` for :math:`X_0=x_0` (``values``) at ``times``.

    ``u[k, i]`` is :math:`u(t_k, \text{grid}_i)`, the expectation started from ``grid[i]``.
    """

    times: np.ndarray
    values: np.ndarray
    grid: np.ndarray
    u: np.ndarray


class _ZeroedBDF(BDF):
    """SciPy's BDF with its array of backward differences zero-initialised.

    ``scipy.integrate.BDF`` allocates the differences ``D`` with ``np.empty`` and fills only rows 0 and 1; the first
    accepted step (order 1) evaluates ``D[order + 2] = d - D[order + 1]`` (``bdf.py:416`` in SciPy 1.17), reading
    row 2 before anything was written there.  The row is overwritten before its value is used, so results do
    not change, but the arithmetic runs on whatever bytes the allocator hands back: when freed memory of an earlier
    computation holds a pattern that reads as a signalling NaN, the subtraction raises "invalid value encountered in
    subtract" -- an error under this project's ``filterwarnings = error::RuntimeWarning``, and only after some
    earlier allocations (the flaky test of issue 13).  Zeroing the unused rows removes the read of undefined memory.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.D[2:] = 0.0


def _generator_matrix(drift: np.ndarray, variance: np.ndarray, dx: float) -> scipy.sparse.csr_matrix:
    n = drift.size
    rows, cols, vals = [], [], []

    def put(i: int, offsets: Sequence[int], first: Sequence[float], second: Sequence[float]) -> None:
        for offset, c1, c2 in zip(offsets, first, second, strict=True):
            rows.append(i)
            cols.append(i + offset)
            vals.append(drift[i] * c1 / dx + 0.5 * variance[i] * c2 / dx**2)

    for i in range(1, n - 1):
        if 2 <= i <= n - 3:
            put(i, (-2, -1, 0, 1, 2), (1 / 12, -2 / 3, 0.0, 2 / 3, -1 / 12), (-1 / 12, 4 / 3, -5 / 2, 4 / 3, -1 / 12))
        else:
            put(i, (-1, 0, 1), (-0.5, 0.0, 0.5), (1.0, -2.0, 1.0))
    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))


def kolmogorov_expectation(
    sde: SDE,
    h: Callable[[np.ndarray], np.ndarray],
    x0: float,
    times: Sequence[float] | np.ndarray,
    *,
    domain: tuple[float, float],
    n_grid: int = 1201,
    rtol: float = 1e-10,
    atol: float = 1e-13,
) -> KolmogorovSolution:
    r"""Solve the backward Kolmogorov equation of a 1-D SDE and return :math:`\mathbb Eh(X_t)`, :math:`X_0=x_0`.

    ``h`` maps an array of points (shape ``(M,)``) to values; ``times`` are non-negative and increasing;
    ``domain`` :math:`(a, b)` must contain :math:`x_0` well inside.  Accuracy is fourth order in the grid
    spacing for smooth :math:`b, g, h`.
    """
    if not isinstance(sde, SDE) or sde.dim != 1:
        raise ValueError("sde must be a one-dimensional theory.sde.SDE")
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if times.size == 0 or not np.all(np.isfinite(times)) or times[0] < 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be a non-empty, finite, non-negative, strictly increasing sequence")
    lo, hi = (float(v) for v in domain)
    x0 = float(x0)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < x0 < hi):
        raise ValueError(f"domain must be finite and contain x0 = {x0} strictly inside, got {domain}")
    n_grid = check_int(n_grid, "n_grid", minimum=9)
    dx = (hi - lo) / (n_grid - 1)
    centre = round((x0 - lo) / dx)
    centre = min(max(centre, 2), n_grid - 3)
    grid = x0 + dx * (np.arange(n_grid) - centre)

    points = grid[:, None]
    drift = sde.drift_at(points)[:, 0]
    factor = sde.diffusion_at(points)[:, 0, :]
    variance = np.sum(factor**2, axis=1)
    initial = np.asarray(h(grid), dtype=np.float64).reshape(-1)
    if initial.shape != grid.shape or not np.all(np.isfinite(drift) & np.isfinite(variance) & np.isfinite(initial)):
        raise ValueError("h, the drift and the diffusion must be finite on the grid (h must map (M,) to (M,))")
    matrix = _generator_matrix(drift, variance, dx)

    solution = solve_ivp(
        lambda t, u: matrix @ u,
        (0.0, float(times[-1])),
        initial,
        method=_ZeroedBDF,
        t_eval=times,
        jac=matrix,
        rtol=rtol,
        atol=atol,
    )
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed on the Kolmogorov equation: {solution.message}")
    u = solution.y.T
    return KolmogorovSolution(times, u[:, centre].copy(), grid, u)
