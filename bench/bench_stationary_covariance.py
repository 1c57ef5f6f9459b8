"""Eigenbasis closed form of the SGDM stationary covariance vs a generic discrete Lyapunov solve (DESIGN.md 7).

The peer is :func:`scipy.linalg.solve_discrete_lyapunov` on the 2d-dimensional (x, m) system of paper eq. (3),
with its matrices built outside the timed region; the closed form is the public
:func:`theory.quadratic.stationary_covariance`, input validation included.  Both run side by side in one process
on the same random non-commuting problem, first with the BLAS/LAPACK libraries' default thread counts, then with
every library capped at one thread (:func:`threadpoolctl.threadpool_limits`), so the two ratios come from one run.
Each repeat times the two back to back (so both see the same machine load); the table gives the best time of each
and the median and range of the per-repeat speed-up.  The two answers must agree to 1e-10 (relative, max-norm) or
the script fails.

    .venv/bin/python bench/bench_stationary_covariance.py [--dims 100 300 500] [--repeats 5]

NumPy and SciPy each load their own OpenBLAS (``threadpoolctl.threadpool_info()`` lists both); the closed form
uses only NumPy's, the solver only SciPy's, and both are capped in the one-thread rows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg
from tabulate import tabulate
from threadpoolctl import threadpool_info, threadpool_limits

from theory.quadratic import stationary_covariance, transition_matrix

ETA, BETA = 0.2, 0.9
AGREEMENT = 1e-10


def _problem(d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    H = rotation @ np.diag(rng.uniform(0.1, 5.0, d)) @ rotation.T
    factor = rng.normal(size=(d, d))
    return (H + H.T) / 2, factor @ factor.T / d


def _paired_times(first: Callable[[], object], second: Callable[[], object], repeats: int):
    """Time ``first`` then ``second`` in each repeat, so both see the same machine load; return both time lists.

    One untimed call of each first: thread pools start and caches fill on first use.
    """
    first(), second()
    times_first, times_second, results = [], [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result_first = first()
        middle = time.perf_counter()
        result_second = second()
        times_first.append(middle - start)
        times_second.append(time.perf_counter() - middle)
        results = (result_first, result_second)
    return times_first, times_second, results


def _row(d: int, threads: str, repeats: int) -> list[object]:
    H, Sigma = _problem(d)
    system = transition_matrix(H, ETA, BETA, "normalized")
    forcing = system.noise_input @ Sigma @ system.noise_input.T
    closed_times, solver_times, (closed, joint) = _paired_times(
        lambda: stationary_covariance(H, Sigma, ETA, BETA),
        lambda: scipy.linalg.solve_discrete_lyapunov(system.transition, forcing),
        repeats,
    )
    solved = joint[:d, :d]
    gap = float(np.max(np.abs(closed - solved)) / np.max(np.abs(solved)))
    if not gap < AGREEMENT:
        raise SystemExit(f"d={d}: closed form and Lyapunov solve differ by {gap:.2e} (relative) >= {AGREEMENT}")
    ratios = np.array(solver_times) / np.array(closed_times)
    return [
        d,
        threads,
        f"{min(closed_times) * 1e3:.1f}",
        f"{min(solver_times) * 1e3:.0f}",
        f"{np.median(ratios):.0f}x",
        f"{ratios.min():.0f}x-{ratios.max():.0f}x",
        f"{gap:.1e}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 300, 500])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    default_threads = ", ".join(
        f"{Path(lib['filepath']).parent.name}/{lib['internal_api']} {lib['version']}: {lib['num_threads']}"
        for lib in threadpool_info()
    )
    rows = []
    for d in args.dims:
        rows.append(_row(d, "default", args.repeats))
        with threadpool_limits(limits=1):
            rows.append(_row(d, "1", args.repeats))
    print(f"SGDM stationary covariance, eta={ETA}, beta={BETA}, {args.repeats} paired repeats")
    print(f"default BLAS threads per library: {default_threads}")
    headers = ["d", "BLAS threads", "closed form [ms]", "solve_discrete_lyapunov 2d [ms]", "speed-up (median)"]
    headers += ["range", "max rel. diff"]
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
