"""Benchmark: Euler-Maruyama path-steps per second against torchsde, sdeint and the NumPy normal-draw limit.

DESIGN.md section 7: on a 10-dimensional Ornstein-Uhlenbeck process with 4096 paths and 1000 Euler-Maruyama
steps on 2 CPU cores, ``theory``'s integrator should reach at least 10x the path-steps per second of
``torchsde.sdeint``, 25x that of ``sdeint.itoEuler``, and 70% of the rate at which NumPy merely draws the
normal variates.  All numbers are measured side by side in one run (best of ``REPEATS``), float64.

``sdeint.itoEuler`` integrates one path per call (a dense G(y) dW per step), so it is timed on a subset of
paths; ``torchsde.sdeint`` (about 40 s for the full 1000 steps here) is timed on the first ``TORCHSDE_STEPS``
steps of the same run, with 1 and 2 torch threads (the faster counts).  Both costs are linear in the number
of paths and steps respectively, and every rate is in path-steps per second.  The scaling table uses
``SCALING_STEPS`` steps.  This is a benchmark, not a test: it asserts nothing.

Run: ``python bench/bench_sde.py`` (``make bench`` installs the ``[bench]`` extra first).
"""

from __future__ import annotations

import time

import numpy as np

from theory.integrators import EulerMaruyama
from theory.problems import noisy_quadratic
from theory.sde import linear_sde
from theory.simulate import SGD, simulate

DIM, PATHS, STEPS, DT = 10, 4096, 1000, 1e-3
THETA, NOISE = 1.0, 0.5
REPEATS = 3
SDEINT_PATHS = 128
TORCHSDE_STEPS = 250
SCALING_STEPS = 200


def best_of(run, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def best_of_interleaved(runs: list, repeats: int = REPEATS) -> list[float]:
    """Best time of each run, the runs taking turns, so that a change in machine load hits all of them alike."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            best[i] = min(best[i], run(1))
    return best


def draw_limit(paths: int, dim: int, steps: int, repeats: int = REPEATS) -> float:
    """Seconds NumPy needs only to draw steps * paths * dim standard normals, in the blocks the engine uses."""
    rng = np.random.default_rng(0)
    block = max(1, min(steps, (1 << 21) // (paths * dim)))
    buffer = np.empty((block, paths, dim))

    def run() -> None:
        remaining = steps
        while remaining:
            size = min(block, remaining)
            rng.standard_normal(out=buffer[:size])
            remaining -= size

    return best_of(run, repeats)


def ours(paths: int, dim: int, steps: int, full_matrix: bool = False, repeats: int = REPEATS) -> float:
    if full_matrix:
        rng = np.random.default_rng(1)
        q = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
        drift = -q @ np.diag(np.linspace(0.5, 2.0, dim)) @ q.T
        diffusion = NOISE * (np.eye(dim) + 0.1 * rng.standard_normal((dim, dim)))
    else:
        drift, diffusion = -THETA * np.eye(dim), NOISE
    method = EulerMaruyama(linear_sde(drift, diffusion), DT)
    method._linear_plan  # noqa: B018 - compile once, outside the timing
    return best_of(lambda: simulate(method, np.ones(dim), steps, paths, seed=0), repeats)


def ours_sgd(paths: int, dim: int, steps: int, repeats: int = REPEATS) -> float:
    method = SGD(noisy_quadratic(THETA * np.eye(dim), NOISE**2 * np.eye(dim)), DT, sigma=1.0)
    method.problem._gradient_fn  # noqa: B018
    return best_of(lambda: simulate(method, np.ones(dim), steps, paths, seed=0), repeats)


def torchsde_time(paths: int, dim: int, steps: int) -> float | None:
    try:
        import torch
        import torchsde
    except ImportError:
        return None

    class OU(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def f(self, t, y):
            return -THETA * y

        def g(self, t, y):
            return torch.full_like(y, NOISE)

    sde = OU()
    y0 = torch.ones(paths, dim, dtype=torch.float64)
    ts = torch.tensor([0.0, steps * DT], dtype=torch.float64)

    def run() -> None:
        with torch.no_grad():
            torchsde.sdeint(sde, y0, ts, method="euler", dt=DT)

    # torch's intra-op threads are sensitive to load from other processes: time 1 and 2 threads, keep the best
    timings = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        timings.append(best_of(run, repeats=1))
    return min(timings)


def sdeint_time(paths: int, dim: int, steps: int) -> float | None:
    try:
        import sdeint
    except ImportError:
        return None
    tspan = np.linspace(0.0, steps * DT, steps + 1)
    g_mat = NOISE * np.eye(dim)

    def run() -> None:
        generator = np.random.default_rng(0)
        for _ in range(paths):
            sdeint.itoEuler(lambda y, t: -THETA * y, lambda y, t: g_mat, np.ones(dim), tspan, generator=generator)

    return best_of(run, repeats=2)


def rate(paths: int, steps: int, seconds: float) -> float:
    return paths * steps / seconds


def main() -> None:
    print(f"10-dim OU dX = -{THETA} X dt + {NOISE} dW, {PATHS} paths, {STEPS} Euler-Maruyama steps, float64\n")
    draw, diagonal, full, sgd = best_of_interleaved(
        [
            lambda r: draw_limit(PATHS, DIM, STEPS, r),
            lambda r: ours(PATHS, DIM, STEPS, repeats=r),
            lambda r: ours(PATHS, DIM, STEPS, full_matrix=True, repeats=r),
            lambda r: ours_sgd(PATHS, DIM, STEPS, repeats=r),
        ],
        repeats=5,
    )
    rows = [
        ("NumPy draws the normals only", draw, PATHS),
        ("theory EulerMaruyama (diagonal OU)", diagonal, PATHS),
        ("theory EulerMaruyama (full-matrix OU)", full, PATHS),
        ("theory SGD on the noisy quadratic", sgd, PATHS),
    ]
    rows = [(name, seconds, paths, STEPS) for name, seconds, paths in rows]
    peer_torch = torchsde_time(PATHS, DIM, TORCHSDE_STEPS)
    peer_sdeint = sdeint_time(SDEINT_PATHS, DIM, STEPS)
    if peer_torch is not None:
        rows.append((f"torchsde.sdeint (euler, diagonal; {TORCHSDE_STEPS} steps)", peer_torch, PATHS, TORCHSDE_STEPS))
    if peer_sdeint is not None:
        rows.append((f"sdeint.itoEuler ({SDEINT_PATHS} paths, one per call)", peer_sdeint, SDEINT_PATHS, STEPS))
    ours_rate = rate(PATHS, STEPS, rows[1][1])
    draw_rate = rate(PATHS, STEPS, draw)
    print("| integrator | seconds | path-steps/s | ours (diagonal) / this | this / draw limit |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, paths, steps in rows:
        r = rate(paths, steps, seconds)
        print(f"| {name} | {seconds:.3f} | {r:.3g} | {ours_rate / r:.3g} | {r / draw_rate:.2f} |")
    missing = [name for name, timing in (("torchsde", peer_torch), ("sdeint", peer_sdeint)) if timing is None]
    print("\nNot installed (not benchmarked):", ", ".join(missing) or "none")

    print(f"\nScaling of theory EulerMaruyama (diagonal OU, {SCALING_STEPS} steps): seconds (fraction of draw limit)")
    print("| paths \\ dim | 1 | 10 | 100 |")
    print("|---|---:|---:|---:|")
    for paths in (1024, 4096, 16384):
        cells = []
        for dim in (1, 10, 100):
            draw, seconds = best_of_interleaved(
                [
                    lambda r, p=paths, d=dim: draw_limit(p, d, SCALING_STEPS, r),
                    lambda r, p=paths, d=dim: ours(p, d, SCALING_STEPS, repeats=r),
                ]
            )
            cells.append(f"{seconds:.3f} s ({draw / seconds:.2f})")
        print(f"| {paths} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
