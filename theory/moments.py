r"""Exact transient moments and expected loss curves of SGD, SGDM and the SDE on a noisy quadratic.

No sampling anywhere: the first and second moments of a linear recursion :math:`z_{k+1}=Az_k+B\xi_k` obey
:math:`\mu_{k+1}=A\mu_k` and :math:`P_{k+1}=AP_kA^\top+B\Sigma B^\top` exactly (THEORY.md 5.2, 5.6), and those of
a linear SDE obey a linear ODE.  With :math:`\mathcal L(x)=\tfrac12x^\top Hx` the expected loss is

.. math:: \mathbb E\mathcal L(x_k)=\tfrac12\big(\mu_k^\top H\mu_k+\operatorname{tr}(HP_k)\big),

a deterministic, exact loss curve of the noisy quadratic model (NQM; Zhang et al. 2019).  Discrete recursions run
in the eigenbasis of :math:`H`, one :math:`2\times2` block per pair of eigen-directions (see
:mod:`theory.quadratic`); ``method="dense"`` iterates the full :math:`2d`-dimensional recursion instead and is
kept as the reference the tests compare with.  The SDE moments have a closed form in the eigenbasis and a generic
route through :func:`linear_sde_moments` (:func:`scipy.integrate.solve_ivp`).

Time: SDE time :math:`t=k\eta` corresponds to step :math:`k` (Theorem 3.5 scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.integrate

from theory.quadratic import Eigenbasis, check_problem, transition_matrix
from theory.validation import check_nonnegative_int

__all__ = [
    "DiscreteMoments",
    "LinearSDEMoments",
    "SDEMoments",
    "discrete_moments",
    "expected_loss_curve",
    "linear_sde_moments",
    "sde_expected_loss_curve",
    "sde_moments",
]


# --- validation ---------------------------------------------------------------------------------------------


def _as_vector(name: str, value: object, d: int) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float64)
    if vector.ndim == 0 and d == 1:
        vector = vector.reshape(1)
    if vector.shape != (d,):
        raise ValueError(f"{name} must have shape ({d},) to match H, got {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    return vector


def _check_steps(steps: int) -> int:
    return check_nonnegative_int(steps, "steps")


def _check_times(times: object) -> np.ndarray:
    array = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"times must be a non-empty 1-D sequence, got shape {array.shape}")
    if not (np.all(np.isfinite(array)) and array[0] >= 0.0 and np.all(np.diff(array) >= 0.0)):
        raise ValueError("times must be finite, >= 0 and non-decreasing")
    return array


# --- discrete SGD / SGDM ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscreteMoments:
    r"""Exact moments of paper eq. (3) at steps :math:`k=0,\dots,K` (index 0 of every array is step 0).

    ``mean_x``, ``mean_m``: (K+1, d); ``cov_x``, ``cov_m``: (K+1, d, d); ``cov_xm``:
    :math:`\operatorname{Cov}(x_k,m_k)` with rows :math:`x`; ``loss``: :math:`\mathbb E\mathcal L(x_k)`, (K+1,).
    """

    mean_x: np.ndarray
    mean_m: np.ndarray
    cov_x: np.ndarray
    cov_m: np.ndarray
    cov_xm: np.ndarray
    loss: np.ndarray


def _direction_blocks(h: np.ndarray, eta: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    # Per eigen-direction (x, m) transition of eq. (3) and the outer product of its noise input.
    gamma = eta * (1.0 - beta)
    blocks = np.empty((h.size, 2, 2))
    blocks[:, 0, 0] = 1.0 - gamma * h
    blocks[:, 0, 1] = -eta * beta
    blocks[:, 1, 0] = (1.0 - beta) * h
    blocks[:, 1, 1] = beta
    noise_input = np.array([-gamma, 1.0 - beta])
    return blocks, np.outer(noise_input, noise_input)


def _loss(h: np.ndarray, mean_eigen_x: np.ndarray, var_eigen_x: np.ndarray) -> np.ndarray:
    # E L = (mu^T H mu + tr(H P)) / 2, diagonal in the eigenbasis.
    return 0.5 * np.sum(h * (mean_eigen_x**2 + var_eigen_x), axis=-1)


def discrete_moments(
    H: object,
    Sigma: object,
    eta: float,
    beta: float = 0.0,
    *,
    x0: object,
    steps: int,
    m0: object | None = None,
    method: Literal["eigenbasis", "dense"] = "eigenbasis",
) -> DiscreteMoments:
    r"""Exact means and covariances of :math:`x_k`, :math:`m_k` of paper eq. (3) (SGD at :math:`\beta=0`), no sampling.

    From the deterministic start :math:`(x_0,m_0)` (default :math:`m_0=0`), with :math:`z=(x,m)` and :math:`A,B`
    of :func:`theory.quadratic.transition_matrix` (``form="normalized"``):

    .. math:: \mu_{k+1}=A\mu_k,\qquad P_{k+1}=AP_kA^\top+B\Sigma B^\top,\qquad P_0=0 .

    ``method="eigenbasis"`` iterates the :math:`2\times2` block of every pair of eigen-directions,
    :math:`P^{(ij)}_{k+1}=A_iP^{(ij)}_kA_j^\top+S_{ij}bb^\top`, all pairs at once; ``"dense"`` iterates the
    :math:`2d\times2d` recursion.  THEORY.md 5.2, 5.6 (oracle 19).  Works for unstable rates too (the moments
    then grow); memory is :math:`3(K+1)d^2` floats, see :func:`expected_loss_curve` for long horizons.
    """
    problem = check_problem(H, Sigma, eta, beta)
    H, Sigma, eta, beta, basis = problem.H, problem.Sigma, problem.eta, problem.beta, problem.basis
    d = H.shape[0]
    steps = _check_steps(steps)
    x0 = _as_vector("x0", x0, d)
    m0 = np.zeros(d) if m0 is None else _as_vector("m0", m0, d)
    if method == "eigenbasis":
        return _discrete_moments_eigenbasis(basis, eta, beta, x0, m0, steps)
    if method == "dense":
        return _discrete_moments_dense(H, Sigma, eta, beta, x0, m0, steps)
    raise ValueError(f"method must be 'eigenbasis' or 'dense', got {method!r}")


def _discrete_moments_eigenbasis(
    basis: Eigenbasis, eta: float, beta: float, x0: np.ndarray, m0: np.ndarray, steps: int
) -> DiscreteMoments:
    h, V, S = basis.eigenvalues, basis.eigenvectors, basis.rotated_noise
    d = h.size
    blocks, noise_outer = _direction_blocks(h, eta, beta)
    forcing = S[:, :, None, None] * noise_outer
    mean = np.stack([V.T @ x0, V.T @ m0], axis=-1)  # (d, 2): eigen-coordinates of (x, m)
    cov = np.zeros((d, d, 2, 2))
    means = np.empty((steps + 1, d, 2))
    covs = np.empty((steps + 1, d, d, 2, 2))
    means[0], covs[0] = mean, cov
    for k in range(1, steps + 1):
        mean = np.einsum("iab,ib->ia", blocks, mean)
        cov = np.einsum("ijac,jdc->ijad", np.einsum("iab,ijbc->ijac", blocks, cov), blocks) + forcing
        means[k], covs[k] = mean, cov
    loss = _loss(h, means[:, :, 0], np.diagonal(covs[:, :, :, 0, 0], axis1=1, axis2=2))
    cov_x = V @ covs[..., 0, 0] @ V.T
    cov_m = V @ covs[..., 1, 1] @ V.T
    return DiscreteMoments(
        mean_x=means[:, :, 0] @ V.T,
        mean_m=means[:, :, 1] @ V.T,
        cov_x=(cov_x + np.swapaxes(cov_x, 1, 2)) / 2.0,
        cov_m=(cov_m + np.swapaxes(cov_m, 1, 2)) / 2.0,
        cov_xm=V @ covs[..., 0, 1] @ V.T,
        loss=loss,
    )


def _discrete_moments_dense(
    H: np.ndarray, Sigma: np.ndarray, eta: float, beta: float, x0: np.ndarray, m0: np.ndarray, steps: int
) -> DiscreteMoments:
    d = H.shape[0]
    system = transition_matrix(H, eta, beta, "normalized")
    A = system.transition
    forcing = system.noise_input @ Sigma @ system.noise_input.T
    mean, cov = np.concatenate([x0, m0]), np.zeros((2 * d, 2 * d))
    means = np.empty((steps + 1, 2 * d))
    covs = np.empty((steps + 1, 2 * d, 2 * d))
    means[0], covs[0] = mean, cov
    for k in range(1, steps + 1):
        mean = A @ mean
        cov = A @ cov @ A.T + forcing
        means[k], covs[k] = mean, cov
    mean_x, cov_x = means[:, :d], covs[:, :d, :d]
    loss = 0.5 * (np.einsum("ki,ij,kj->k", mean_x, H, mean_x) + np.einsum("ij,kji->k", H, cov_x))
    return DiscreteMoments(mean_x, means[:, d:], cov_x, covs[:, d:, d:], covs[:, :d, d:], loss)


def expected_loss_curve(
    H: object,
    Sigma: object,
    eta: float,
    beta: float = 0.0,
    *,
    x0: object,
    steps: int,
    m0: object | None = None,
) -> np.ndarray:
    r"""Exact :math:`\mathbb E\mathcal L(x_k)`, :math:`k=0..K`, of paper eq. (3) (SGD at :math:`\beta=0`).

    The loss only needs the diagonal pairs of the eigenbasis recursion of :func:`discrete_moments`:

    .. math:: \mathbb E\mathcal L(x_k)=\tfrac12\sum_ih_i\big(\tilde\mu_{k,i}^2+\tilde P_{k,ii}\big),\qquad
              \tilde P^{(ii)}_{k+1}=A_i\tilde P^{(ii)}_kA_i^\top+S_{ii}\,bb^\top,

    so the cost is :math:`O(d)` per step after one eigendecomposition.  For SGD it equals THEORY.md 5.6's
    :math:`(1-\eta h_i)^{2k}\mathcal L_i(0)+\frac{\eta S_{ii}}{2(2-\eta h_i)}(1-(1-\eta h_i)^{2k})` (oracle 19).
    """
    problem = check_problem(H, Sigma, eta, beta)
    H, Sigma, eta, beta, basis = problem.H, problem.Sigma, problem.eta, problem.beta, problem.basis
    d = H.shape[0]
    steps = _check_steps(steps)
    x0 = _as_vector("x0", x0, d)
    m0 = np.zeros(d) if m0 is None else _as_vector("m0", m0, d)
    h, V = basis.eigenvalues, basis.eigenvectors
    blocks, noise_outer = _direction_blocks(h, eta, beta)
    forcing = np.diagonal(basis.rotated_noise)[:, None, None] * noise_outer
    mean = np.stack([V.T @ x0, V.T @ m0], axis=-1)
    cov = np.zeros((d, 2, 2))
    loss = np.empty(steps + 1)
    loss[0] = _loss(h, mean[:, 0], cov[:, 0, 0])
    for k in range(1, steps + 1):
        mean = np.einsum("iab,ib->ia", blocks, mean)
        cov = np.einsum("iab,ibc,idc->iad", blocks, cov, blocks) + forcing
        loss[k] = _loss(h, mean[:, 0], cov[:, 0, 0])
    return loss


# --- linear SDEs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearSDEMoments:
    """Mean (T, d) and covariance (T, d, d) of a linear SDE at ``times`` (T,)."""

    times: np.ndarray
    mean: np.ndarray
    cov: np.ndarray


def linear_sde_moments(
    drift: object,
    diffusion: object,
    mean0: object,
    times: object,
    *,
    cov0: object | None = None,
    offset: object | None = None,
    method: str = "DOP853",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> LinearSDEMoments:
    r"""Exact mean and covariance of the linear SDE :math:`dX=(AX+b)\,dt+G\,dW` by integrating the moment ODE.

    For :math:`X_0` with mean :math:`\mu_0` and covariance :math:`P_0` (default 0: a deterministic start at
    time 0), the moments solve the linear ODE

    .. math:: \dot\mu=A\mu+b,\qquad \dot P=AP+PA^\top+GG^\top,

    integrated with :func:`scipy.integrate.solve_ivp` from one reported time to the next (``method``, ``rtol``,
    ``atol`` passed through; the default explicit DOP853 suits non-stiff drifts, pass ``method="Radau"`` for stiff
    ones) and reported at ``times`` (non-decreasing, >= 0).  ``drift`` is :math:`A` (d, d), ``diffusion`` is
    :math:`G` (d, q), ``offset`` is :math:`b` (d,) (default 0).  Any linear SDE fits: SME1 on a quadratic (:math:`A=-H`,
    :math:`G=\sqrt\eta\Sigma^{1/2}`), SME2, the underdamped momentum SDE on the stacked state :math:`(X,M)`.
    Used by :func:`sde_moments`; raises ``RuntimeError`` if the integrator fails.
    """
    A = np.asarray(drift, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
        raise ValueError(f"drift must be a square (d, d) matrix, got shape {A.shape}")
    d = A.shape[0]
    G = np.asarray(diffusion, dtype=np.float64)
    G = G.reshape(d, -1) if G.ndim <= 1 and G.size == d else G
    if G.ndim != 2 or G.shape[0] != d:
        raise ValueError(f"diffusion must have shape (d, q) = ({d}, q), got {G.shape}")
    b = np.zeros(d) if offset is None else _as_vector("offset", offset, d)
    mu0 = _as_vector("mean0", mean0, d)
    P0 = np.zeros((d, d)) if cov0 is None else np.asarray(cov0, dtype=np.float64)
    if P0.shape != (d, d):
        raise ValueError(f"cov0 must have shape ({d}, {d}), got {P0.shape}")
    for name, array in (("drift", A), ("diffusion", G), ("cov0", P0)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite; it contains NaN or inf")
    times = _check_times(times)
    noise = G @ G.T

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        P = y[d:].reshape(d, d)
        AP = A @ P
        return np.concatenate([A @ y[:d] + b, (AP + AP.T + noise).ravel()])

    # Integrate interval by interval rather than through t_eval: dense-output interpolants of the large steps a
    # smooth linear ODE allows are far less accurate than the step endpoints (DOP853: 1e-8 vs 1e-12 relative).
    states = np.empty((times.size, d + d * d))
    state, clock = np.concatenate([mu0, P0.ravel()]), 0.0
    for index, target in enumerate(times):
        if target > clock:
            solution = scipy.integrate.solve_ivp(
                rhs, (clock, float(target)), state, method=method, rtol=rtol, atol=atol
            )
            if not solution.success:
                raise RuntimeError(f"solve_ivp failed on the moment ODE: {solution.message}")
            state, clock = solution.y[:, -1], float(target)
        states[index] = state
    cov = states[:, d:].reshape(-1, d, d)
    return LinearSDEMoments(times, states[:, :d], (cov + np.swapaxes(cov, 1, 2)) / 2.0)


@dataclass(frozen=True)
class SDEMoments:
    r"""Mean (T, d), covariance (T, d, d) and :math:`\mathbb E\mathcal L(X_t)` (T,) of the SDE at ``times``."""

    times: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    loss: np.ndarray


def _sde_rates(h: np.ndarray, eta: float, order: int) -> np.ndarray:
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (SME1) or 2 (SME2), got {order!r}")
    return h if order == 1 else h + eta * h * h / 2.0


def _matrix_sqrt_psd(Sigma: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(Sigma)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def sde_moments(
    H: object,
    Sigma: object,
    eta: float,
    *,
    x0: object,
    times: object,
    order: Literal[1, 2] = 1,
    method: Literal["closed_form", "solve_ivp"] = "closed_form",
) -> SDEMoments:
    r"""Exact moments of the SDE limit from :math:`X_0=x_0` (THEORY.md 4.1; Theorem 3.5's limit for SGD and SGDM).

    SME1: :math:`dX=-HX\,dt+\sqrt{\eta\Sigma}\,dW`; SME2 (``order=2``): drift :math:`-(H+\tfrac\eta2H^2)X`.  With
    drift rates :math:`k_i` (eigenvalues of the drift matrix, :math:`k=h` or :math:`h+\tfrac\eta2h^2`):

    .. math:: \tilde\mu_i(t)=e^{-k_it}\tilde x_{0,i},\qquad
              \tilde P_{ij}(t)=\eta S_{ij}\,\frac{1-e^{-(k_i+k_j)t}}{k_i+k_j},

    (``method="closed_form"``), or the moment ODE by :func:`linear_sde_moments` (``method="solve_ivp"``).
    ``times`` are SDE times; step :math:`k` of SGD/SGDM corresponds to :math:`t=k\eta`.  No stability condition
    is needed for a finite horizon, but :math:`k_i+k_j` must not vanish: :math:`H` must be positive definite.
    """
    problem = check_problem(H, Sigma, eta)
    H, Sigma, eta, basis = problem.H, problem.Sigma, problem.eta, problem.basis
    d = H.shape[0]
    x0 = _as_vector("x0", x0, d)
    times = _check_times(times)
    h, V, S = basis.eigenvalues, basis.eigenvectors, basis.rotated_noise
    rates = _sde_rates(h, eta, order)
    if not h[0] > 0.0:
        raise ValueError(f"H must be positive definite for the SDE moments: eigenvalue h = {h[0]:.6g}")
    if method == "closed_form":
        pair_rates = rates[:, None] + rates[None, :]
        mean_eigen = np.exp(-np.outer(times, rates)) * (V.T @ x0)
        cov_eigen = -np.expm1(-times[:, None, None] * pair_rates) * (eta * S / pair_rates)
        mean, cov = mean_eigen @ V.T, V @ cov_eigen @ V.T
        cov = (cov + np.swapaxes(cov, 1, 2)) / 2.0
    elif method == "solve_ivp":
        drift = H if order == 1 else H + eta * H @ H / 2.0
        result = linear_sde_moments(-drift, np.sqrt(eta) * _matrix_sqrt_psd(Sigma), x0, times)
        mean, cov = result.mean, result.cov
    else:
        raise ValueError(f"method must be 'closed_form' or 'solve_ivp', got {method!r}")
    loss = 0.5 * (np.einsum("ti,ij,tj->t", mean, H, mean) + np.einsum("ij,tji->t", H, cov))
    return SDEMoments(times, mean, cov, loss)


def sde_expected_loss_curve(
    H: object,
    Sigma: object,
    eta: float,
    *,
    x0: object,
    times: object,
    order: Literal[1, 2] = 1,
) -> np.ndarray:
    r"""Exact :math:`\mathbb E\mathcal L(X_t)` of SME1/SME2 from :math:`X_0=x_0`, in :math:`O(d)` per time.

    .. math:: \mathbb E\mathcal L(X_t)=\tfrac12\sum_ih_i\Big(e^{-2k_it}\tilde x_{0,i}^2+
              \eta S_{ii}\frac{1-e^{-2k_it}}{2k_i}\Big).

    For Li-Tai-E's example (:math:`\Sigma=H^2`) this is THEORY.md 4.2's
    :math:`\tfrac12x_0^\top He^{-2tH}x_0+\tfrac\eta4\sum_i\lambda_i^2(1-e^{-2t\lambda_i})` (oracle 23).
    """
    problem = check_problem(H, Sigma, eta)
    H, Sigma, eta, basis = problem.H, problem.Sigma, problem.eta, problem.basis
    x0 = _as_vector("x0", x0, H.shape[0])
    times = _check_times(times)
    h = basis.eigenvalues
    if not h[0] > 0.0:
        raise ValueError(f"H must be positive definite for the SDE moments: eigenvalue h = {h[0]:.6g}")
    rates = _sde_rates(h, eta, order)
    decay = np.exp(-2.0 * np.outer(times, rates))
    variance = eta * np.diagonal(basis.rotated_noise) * (-np.expm1(-2.0 * np.outer(times, rates))) / (2.0 * rates)
    return _loss(h, np.sqrt(decay) * (basis.eigenvectors.T @ x0), variance)
