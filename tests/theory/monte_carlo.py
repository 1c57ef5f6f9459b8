"""Shared by the simulation tests: z-scores, the exact SGDM transition on a quadratic, a normal-recording method."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from theory.simulate import Method, run_lockstep


def covariance_z_scores(samples: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """(sample covariance - exact) / standard error, entry by entry; samples have shape (N, d).

    The standard error of each entry is estimated from the spread of the products of centred samples.
    """
    centred = samples - samples.mean(axis=0)
    products = centred[:, :, None] * centred[:, None, :]
    se = products.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    return (products.mean(axis=0) - exact) / se


def mean_z_scores(samples: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """(sample mean - exact) / standard error per coordinate; samples have shape (N, d)."""
    return (samples.mean(axis=0) - exact) / (samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0]))


def sgdm_transition(hessian: np.ndarray, noise_cov: np.ndarray, eta: float, beta: float):
    """Linear map of normalized SGDM (paper eq. (3)) on L = x^T H x / 2 with additive noise, from first principles.

    With state z = (x, m): m' = (1-beta) H x + beta m + (1-beta) xi and x' = x - eta m', so z' = F z + K xi.
    Returns F and the per-step covariance K Cov(xi) K^T; second moments obey S' = F S F^T + K C K^T.
    """
    d = hessian.shape[0]
    eye = np.eye(d)
    m_row = np.hstack([(1 - beta) * hessian, beta * eye])
    x_row = np.hstack([eye, np.zeros((d, d))]) - eta * m_row
    transition = np.vstack([x_row, m_row])
    kick = np.vstack([-eta * (1 - beta) * eye, (1 - beta) * eye])
    return transition, kick @ noise_cov @ kick.T


@dataclass(frozen=True, eq=False)
class BrownianRecorder(Method):
    """Test double: its state is the running sum of the normals it receives (the Brownian path / sqrt(dt))."""

    dt: float
    dim: int = 1

    name = "recorder"

    @property
    def time_step(self) -> float:
        return self.dt

    @property
    def noise_dim(self) -> int:
        return self.dim

    @property
    def observed_dim(self) -> int:
        return self.dim

    def initial_state(self, x0):
        return np.zeros_like(x0)

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        state += z.sum(axis=0)


def recorded_normals(method: Method, n_steps: int, n_paths: int, seed: int, x0=(0.5,), ratio: int = 1):
    """Path of ``method`` and the normals it saw, one per step, from a lockstep run with a recorder.

    The recorder steps ``ratio`` times finer; the method's normal is then the normalised sum of ``ratio`` of its
    normals.  With ``ratio=1`` the draws are those of a plain ``simulate(method, ...)`` with the same seed.
    """
    recorder = BrownianRecorder(method.time_step / ratio, dim=method.noise_dim)
    xs, sums = [], []
    for _, _, (x, w) in run_lockstep([method, recorder], x0, n_steps, n_paths, seed):
        xs.append(x.copy())
        sums.append(w.copy())
    return np.stack(xs), np.diff(np.stack(sums), axis=0) / math.sqrt(ratio)
