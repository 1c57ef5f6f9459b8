"""Shared by the simulation tests: z-scores of sample moments; the exact (x, m) transition of SGDM on a quadratic."""

from __future__ import annotations

import math

import numpy as np


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
