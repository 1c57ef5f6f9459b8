r"""Models with a manifold of minimisers for the slow SDE of Theorem 4.5 (THEORY.md 7.3-7.5), with closed forms.

* :func:`label_noise_toy_model`: :math:`\mathcal L(u,v)=\tfrac12(uv-1)^2`, label noise :math:`\pm1`
  (THEORY.md 7.4, oracle 22). The slow SDE is the ODE :math:`\sinh 2s(t)=\sinh 2s_0\,e^{-\sigma^2t}` on
  :math:`\Gamma=\{uv=1\}`, :math:`\zeta=\pm(e^s,e^{-s})`.
* :func:`isotropic_noise_toy_model`: the same loss with additive noise :math:`\Sigma=I` (not label noise), so
  :math:`\Sigma_\parallel\ne0` and the slow SDE diffuses along :math:`\Gamma`.
* :func:`diagonal_network_model`: the diagonal linear network :math:`\beta=u\odot w`,
  :math:`\mathcal L=\tfrac1{2n}\|X\beta-y\|^2`, overparameterised (:math:`n<p`), label noise; :math:`\dim\Gamma=2p-n`
  and the slow flow decreases :math:`\operatorname{tr}\nabla^2\mathcal L` on :math:`\Gamma`.

Closed-form gradient-flow projections :math:`\Phi` (derived in the docstrings, tested against ``solve_ivp``):

* toy: :math:`\tfrac{d}{dt}(u^2-v^2)=0` and :math:`\tfrac{d}{dt}(u+v)=-(uv-1)(u+v)` under gradient flow, so
  :math:`u^2-v^2` is conserved and the sign of :math:`u+v` too. The only critical point off :math:`\Gamma` is the
  saddle :math:`0` (eigenvalues :math:`\pm1`), whose stable manifold is the invariant line :math:`u+v=0`: the
  separatrix between the branches :math:`\Gamma_\pm=\{uv=1,\ \pm u>0\}`. Hence
  :math:`\Phi(x)=\operatorname{sign}(u+v)\,(e^s,e^{-s})` with :math:`2\sinh2s=u^2-v^2`.
* diagonal network: :func:`diagonal_network_projection`.

For the discrete SGD/SGDM simulations of Theorem 4.5, each model's stochastic gradient is
:math:`g=\nabla\mathcal L(x)+\sigma B(x)\xi` (``model.noise_factor`` :math:`B`, :math:`\xi` per ``model.noise_kind``;
:func:`theory.manifold.sample_gradient_noise` draws :math:`B\xi`), at time :math:`t=k\eta^2`.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import sympy as sp

from theory.manifold import ManifoldModel, SymbolicManifoldModel, lambdify_model

__all__ = [
    "diagonal_network_data",
    "diagonal_network_model",
    "diagonal_network_projection",
    "isotropic_noise_toy_model",
    "label_noise_toy_model",
    "toy_coordinate",
    "toy_label_noise_flow",
    "toy_manifold_point",
    "toy_projection",
]

#: Points this close to the toy's separatrix u + v = 0 (relative to |u| + |v|) count as on it.
SEPARATRIX_RTOL = 1e-12


# ---------------------------------------------------------------------------------------------------------------
# The 2-D toy L(u, v) = (uv - 1)^2 / 2
# ---------------------------------------------------------------------------------------------------------------


def _toy_split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] != 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be finite with shape (..., 2), got shape {x.shape}")
    u, v = x[..., 0], x[..., 1]
    on_separatrix = np.abs(u + v) <= SEPARATRIX_RTOL * (np.abs(u) + np.abs(v))
    if np.any(on_separatrix):
        raise ValueError(
            "x is outside the basin of attraction of Gamma = {uv = 1}: on the separatrix u + v = 0 gradient flow "
            "converges to the saddle (0, 0)"
        )
    return u, v


def toy_coordinate(x: np.ndarray) -> np.ndarray:
    r"""Coordinate :math:`s` of :math:`\Phi(x)=\pm(e^s,e^{-s})` for the toy, at any ``x`` ``(..., 2)`` of the basin:

    .. math:: s=\tfrac12\operatorname{arsinh}\frac{u^2-v^2}{2},

    since :math:`u^2-v^2` is conserved by gradient flow (module docstring). No flow is integrated.
    """
    u, v = _toy_split(x)
    return 0.5 * np.arcsinh(0.5 * (u * u - v * v))


def toy_manifold_point(s: np.ndarray, branch: int = 1) -> np.ndarray:
    r"""The point :math:`\pm(e^s,e^{-s})` of :math:`\Gamma=\{uv=1\}`, shape ``(..., 2)``."""
    if branch not in (1, -1):
        raise ValueError(f"branch must be +1 or -1, got {branch!r}")
    s = np.asarray(s, dtype=np.float64)
    return branch * np.stack([np.exp(s), np.exp(-s)], axis=-1)


def toy_projection(x: np.ndarray) -> np.ndarray:
    r"""Closed-form :math:`\Phi(x)=\operatorname{sign}(u+v)\,(e^s,e^{-s})`, :math:`2\sinh2s=u^2-v^2`, for
    ``x`` ``(..., 2)``; ``ValueError`` on the separatrix :math:`u+v=0` (outside the basin).
    """
    u, v = _toy_split(x)
    s = 0.5 * np.arcsinh(0.5 * (u * u - v * v))
    return np.sign(u + v)[..., None] * np.stack([np.exp(s), np.exp(-s)], axis=-1)


def toy_label_noise_flow(s0: float, t: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    r"""Closed-form slow flow of the label-noise toy (THEORY.md 7.4, oracle 22):

    .. math:: \dot s=-\tfrac{\sigma^2}{2}\tanh2s\quad\Longleftrightarrow\quad\sinh2s(t)=\sinh2s_0\,e^{-\sigma^2t},

    from :math:`\dot\zeta=-\tfrac{c\sigma^2}4P_T\nabla\operatorname{tr}H` with :math:`c=1`,
    :math:`\operatorname{tr}H=u^2+v^2`.
    :math:`s_0=1`, :math:`t=2` gives :math:`s=0.2365029`.
    """
    t = np.asarray(t, dtype=np.float64)
    return 0.5 * np.arcsinh(math.sinh(2.0 * s0) * np.exp(-(sigma**2) * t))


def _toy_symbols() -> tuple[sp.Symbol, sp.Symbol, sp.Expr]:
    u, v = sp.symbols("u v", real=True)
    return u, v, (u * v - 1) ** 2 / 2


@cache
def label_noise_toy_model() -> ManifoldModel:
    r"""The toy of THEORY.md 7.4: :math:`\mathcal L=\tfrac12(uv-1)^2` with label noise, :math:`\dim\Gamma=1`.

    Per step the label is :math:`y=1+\epsilon`, :math:`\epsilon=\pm1`, and
    :math:`g=(uv-y)(v,u)=\nabla\mathcal L-\epsilon(v,u)`, i.e. :math:`\sigma=1`, :math:`B=(v,u)^\top`, Rademacher
    :math:`\xi`, :math:`\Sigma=BB^\top`, which equals :math:`H` on :math:`\Gamma` (:math:`c=1`).
    """
    u, v, loss = _toy_symbols()
    factor = sp.Matrix([[v], [u]])
    return lambdify_model(
        SymbolicManifoldModel(
            name="label_noise_toy",
            variables=(u, v),
            loss=loss,
            noise_cov=factor * factor.T,
            noise_factor=factor,
            noise_kind="rademacher",
            dim_manifold=1,
            label_noise_constant=1.0,
            projection=toy_projection,
            manifold_coordinate=toy_coordinate,
        )
    )


@cache
def isotropic_noise_toy_model() -> ManifoldModel:
    r"""The toy loss :math:`\tfrac12(uv-1)^2` with isotropic additive noise :math:`\Sigma=I` (not label noise).

    :math:`g=\nabla\mathcal L+\sigma\xi`, :math:`\xi\sim N(0,I_2)`. On :math:`\Gamma`, :math:`\Sigma_\parallel=P_T\ne0`;
    :math:`\sinh2s=(u^2-v^2)/2` is a martingale of the slow SDE (Itô's formula: it is harmonic and constant
    along gradient flow), and :math:`ds=\sigma(2\cosh2s)^{-1/2}dB-\tfrac{\sigma^2}2\sinh2s/\cosh^22s\,dt`.
    """
    u, v, loss = _toy_symbols()
    return lambdify_model(
        SymbolicManifoldModel(
            name="isotropic_noise_toy",
            variables=(u, v),
            loss=loss,
            noise_cov=sp.eye(2),
            noise_factor=sp.eye(2),
            noise_kind="gaussian",
            dim_manifold=1,
            projection=toy_projection,
            manifold_coordinate=toy_coordinate,
        )
    )


# ---------------------------------------------------------------------------------------------------------------
# Diagonal linear network
# ---------------------------------------------------------------------------------------------------------------


def diagonal_network_data(n_samples: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Regression data :math:`(X, y)`, :math:`X_{ij}\sim N(0,1)`, :math:`y=X\beta^*` with a 2-sparse
    :math:`\beta^*=(1,-\tfrac12,0,\dots)`: interpolation is possible and the minimisers form a manifold.
    """
    if not (isinstance(n_features, int) and n_features >= 2):
        raise ValueError(f"n_features must be an integer >= 2, got {n_features!r}")
    if not (isinstance(n_samples, int) and 1 <= n_samples < n_features):
        raise ValueError(f"n_samples must be an integer in [1, n_features - 1] (overparameterised), got {n_samples!r}")
    design = np.random.default_rng(seed).standard_normal((n_samples, n_features))
    beta_star = np.zeros(n_features)
    beta_star[:2] = (1.0, -0.5)
    return design, design @ beta_star


def _hyperbolic_dual(lam, design, targets, kappa, kappa_dual, sign):
    """D(lam) = sum_j (kappa_j e^{2 s_j a_j} + kappa'_j e^{-2 s_j a_j})/2 - lam.y, a = X' lam; beta = dD/da and
    rho = d beta/da = sqrt(q^2 + 4 beta^2).
    """
    exponent = 2.0 * sign * (lam @ design)
    with np.errstate(over="ignore"):  # overflowing trial steps are rejected by the line search
        grow, shrink = kappa * np.exp(exponent), kappa_dual * np.exp(-exponent)
        value = 0.5 * np.sum(grow + shrink, axis=-1) - lam @ targets
    return value, sign * (grow - shrink), 2.0 * (grow + shrink)


def diagonal_network_projection(
    x: np.ndarray, design: np.ndarray, targets: np.ndarray, *, tol: float = 1e-12, max_iter: int = 200
) -> np.ndarray:
    r"""Closed-form :math:`\Phi` of the diagonal network :math:`\beta=u\odot w`,
    :math:`\mathcal L=\tfrac1{2n}\|X\beta-y\|^2`, for ``x`` :math:`=(u,w)` ``(..., 2p)``.

    Derivation ([D], tested against ``solve_ivp``): under gradient flow, with :math:`r=(X\beta-y)/n`,
    :math:`\dot u=-w\odot X^\top r`, :math:`\dot w=-u\odot X^\top r`, so :math:`q_j=u_j^2-w_j^2` is conserved and
    :math:`\dot\beta_j=-\sqrt{q_j^2+4\beta_j^2}\,(X^\top r)_j`. With the hyperbolic-entropy mirror map
    :math:`\psi'(\beta_j)=\tfrac12\operatorname{arsinh}(2\beta_j/|q_j|)` this reads
    :math:`\tfrac{d}{dt}\psi'(\beta)=-X^\top r\in\operatorname{range}X^\top`. So the limit satisfies
    :math:`X\beta_\infty=y` and :math:`\psi'(\beta_\infty)-\psi'(\beta_0)=X^\top\lambda`:

    .. math:: \beta_{\infty,j}=\tfrac{|q_j|}2\sinh\big(\operatorname{arsinh}(2\beta_{0,j}/|q_j|)+2a_j\big)
              =s_j\big(\kappa_je^{2s_ja_j}-\tfrac{q_j^2}{16\kappa_j}e^{-2s_ja_j}\big),\qquad a=X^\top\lambda,

    with :math:`s_j=\operatorname{sign}\beta_{0,j}`,
    :math:`\kappa_j=\tfrac12(|\beta_{0,j}|+\sqrt{\beta_{0,j}^2+q_j^2/4})`;
    the second form is continuous through :math:`q_j=0` (balanced :math:`|u_j|=|w_j|`, where the slow flow of label
    noise goes) and is what is computed. :math:`\lambda\in\mathbb R^n` minimises the strictly convex dual
    :math:`D(\lambda)=\sum_j\tfrac12(\kappa_je^{2s_ja_j}+\tfrac{q_j^2}{16\kappa_j}e^{-2s_ja_j})-\lambda^\top y`
    (damped Newton, batched, until :math:`\|X\beta-y\|\le` ``tol`` times the size of the terms). Then
    :math:`u_j^2+w_j^2=\sqrt{q_j^2+4\beta_j^2}`, and the sign of :math:`u_j` (if :math:`q_j\ge0`) or :math:`w_j` (if
    :math:`q_j<0`) is conserved. A coordinate with :math:`u_j=w_j=0` is frozen by the flow: ``ValueError``.
    """
    design, targets = np.asarray(design, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    n, p = design.shape
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] != 2 * p or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be finite with shape (..., {2 * p}), got shape {x.shape}")
    u, w = x[..., :p], x[..., p:]
    q, beta0 = u * u - w * w, u * w
    kappa = 0.5 * (np.abs(beta0) + np.sqrt(beta0 * beta0 + 0.25 * q * q))
    if np.any(kappa <= np.finfo(float).tiny):
        raise ValueError(
            "diagonal_network_projection needs (u_j, w_j) != (0, 0) for every j (gradient flow freezes such a "
            "coordinate); use gradient_flow_projection(..., method='numeric')"
        )
    sign = np.where(beta0 < 0, -1.0, 1.0)
    kappa_dual = q * q / (16.0 * kappa)
    lam = np.zeros((*x.shape[:-1], n))
    value, beta, rho = _hyperbolic_dual(lam, design, targets, kappa, kappa_dual, sign)
    for _ in range(max_iter):
        residual = beta @ design.T - targets
        # Relative to the size of the terms summed in X beta, so that rounding cannot stall the test.
        scale = 1.0 + np.linalg.norm(targets) + np.linalg.norm(np.abs(beta) @ np.abs(design).T, axis=-1)
        if np.all(np.linalg.norm(residual, axis=-1) <= tol * scale):
            break
        curvature = (design * rho[..., None, :]) @ design.T
        direction = -np.linalg.solve(curvature, residual[..., None])[..., 0]
        slope = np.sum(residual * direction, axis=-1)
        step = np.ones(lam.shape[:-1])
        accepted = np.zeros(lam.shape[:-1], dtype=bool)
        for _ in range(60):  # Armijo backtracking, per path
            trial = lam + step[..., None] * direction
            trial_value, trial_beta, trial_rho = _hyperbolic_dual(trial, design, targets, kappa, kappa_dual, sign)
            armijo = trial_value <= value + 1e-4 * step * slope
            # Near the solution D is flat to rounding and Armijo can fail; a halved residual is progress too.
            with np.errstate(invalid="ignore"):
                trial_residual = np.linalg.norm(trial_beta @ design.T - targets, axis=-1)
            contracts = trial_residual <= 0.5 * np.linalg.norm(residual, axis=-1)
            ok = ~accepted & np.isfinite(trial_value) & np.isfinite(trial_residual) & (armijo | contracts)
            lam = np.where(ok[..., None], trial, lam)
            value = np.where(ok, trial_value, value)
            beta = np.where(ok[..., None], trial_beta, beta)
            rho = np.where(ok[..., None], trial_rho, rho)
            accepted |= ok
            if np.all(accepted):
                break
            step = np.where(accepted, step, 0.5 * step)
    else:
        raise ValueError(f"diagonal_network_projection: the dual Newton iteration did not converge in {max_iter} steps")
    nonnegative = q >= 0
    # The factor of larger modulus keeps its sign and has square (rho + |q|)/2; the other is beta / it, which
    # avoids the cancellation in rho - |q|.
    larger = np.where(nonnegative, np.sign(u), np.sign(w)) * np.sqrt(0.5 * (rho + np.abs(q)))
    smaller = beta / larger
    u_new, w_new = np.where(nonnegative, larger, smaller), np.where(nonnegative, smaller, larger)
    return np.concatenate([u_new, w_new], axis=-1)


@cache
def diagonal_network_model(n_samples: int = 3, n_features: int = 5, seed: int = 0) -> ManifoldModel:
    r"""Diagonal linear network with label noise: :math:`x=(u,w)\in\mathbb R^{2p}`, :math:`\beta=u\odot w`,

    .. math:: \mathcal L(x)=\frac1{2n}\sum_{i=1}^n(\langle X_i,u\odot w\rangle-y_i)^2,\qquad
              \Sigma(x)=\tfrac1nJ^\top J,\ J_{i\cdot}=\nabla f_i=(X_i\odot w,\ X_i\odot u),

    :math:`\Gamma=\{X(u\odot w)=y\}` of dimension :math:`2p-n`; :math:`\Sigma=H` on :math:`\Gamma` (:math:`c=1`), so the
    slow SDE is the flow :math:`\dot\zeta=-\tfrac{\sigma^2}4P_T\nabla\operatorname{tr}H`. Per step
    :math:`g=\nabla\mathcal L+\sigma J^\top\xi/\sqrt n`, :math:`\xi_i=\pm1`: fresh label noise on all :math:`n`
    labels (full batch, noise :math:`\pm\sqrt n\,\sigma`); batch-1 sampling with :math:`\pm1` labels has the same
    :math:`\Sigma` on :math:`\Gamma`. Data from :func:`diagonal_network_data`.
    """
    design, targets = diagonal_network_data(n_samples, n_features, seed)
    us = sp.symbols(f"u1:{n_features + 1}", real=True)
    ws = sp.symbols(f"w1:{n_features + 1}", real=True)
    xd = sp.Matrix(design.tolist())
    predictions = [sum(xd[i, j] * us[j] * ws[j] for j in range(n_features)) for i in range(n_samples)]
    loss = sum((f - float(t)) ** 2 for f, t in zip(predictions, targets, strict=True)) / (2 * n_samples)
    jacobian = sp.Matrix(n_samples, 2 * n_features, lambda i, k: sp.diff(predictions[i], (*us, *ws)[k]))
    factor = jacobian.T / sp.sqrt(n_samples)

    def projection(x: np.ndarray) -> np.ndarray:
        return diagonal_network_projection(x, design, targets)

    return lambdify_model(
        SymbolicManifoldModel(
            name=f"diagonal_network_n{n_samples}_p{n_features}_seed{seed}",
            variables=(*us, *ws),
            loss=loss,
            noise_cov=factor * factor.T,
            noise_factor=factor,
            noise_kind="rademacher",
            dim_manifold=2 * n_features - n_samples,
            label_noise_constant=1.0,
            projection=projection,
        )
    )
