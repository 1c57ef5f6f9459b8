r"""Losses with a manifold of minimisers :math:`\Gamma` and the slow SDE on it (Theorem 4.5; THEORY.md section 7).

Setting (Li, Wang, Arora, ICLR 2022, arXiv 2110.06914; THEORY.md 7.1): :math:`\Gamma` is a smooth manifold of
local minimisers of :math:`\mathcal L:\mathbb R^d\to\mathbb R` with
:math:`\operatorname{rank}\nabla^2\mathcal L=d-\dim\Gamma` on :math:`\Gamma`; the gradient-flow projection is
:math:`\Phi(x)=\lim_{t\to\infty}\phi(x,t)`, :math:`\dot\phi=-\nabla\mathcal L(\phi)`. The gradient noise is an
NGOS (THEORY.md 2.1): :math:`g=\nabla\mathcal L(x)+\sigma v`, :math:`\operatorname{Cov}v=\Sigma(x)`, with
:math:`\sigma=\Theta(1)` and time :math:`t=k\eta^2` (THEORY.md 2.2). Near :math:`\Gamma`, SGD and SGDM at the
same :math:`\eta` both follow (Theorem 4.5) the slow SDE, in its fully explicit form (THEORY.md 7.3)

.. math::
    d\zeta=\sigma\Sigma_\parallel^{1/2}dW
    -\tfrac{\sigma^2}{2}H^\dagger\nabla^3\mathcal L[\Sigma_\parallel]\,dt
    -\tfrac{\sigma^2}{2}P_T\nabla^3\mathcal L[\widehat\Sigma_\diamond]\,dt,\qquad \zeta_0=\Phi(x_0).

What is here:

* model descriptions: :class:`SymbolicManifoldModel` (SymPy loss and noise covariance) compiled once by
  :func:`lambdify_model` into a :class:`ManifoldModel` of NumPy callables, which can also be built directly
  from NumPy functions (the numeric path);
* geometry as small pure array functions, batched over leading axes: :func:`tangent_projection`,
  :func:`normal_projection`, :func:`hessian_pseudo_inverse`, :func:`third_derivative_contraction`,
  :func:`lyapunov_weighted`, :func:`noise_decomposition`, :func:`projection_hessian` (:math:`\partial^2\Phi`),
  :func:`ito_projection` (:math:`P_\zeta` with its Itô term);
* model-level functions: :func:`gradient_flow_projection` (:math:`\Phi`), :func:`gradient_flow_jacobian`
  (:math:`\partial\Phi` anywhere in the basin, by the variational equation), :func:`newton_retraction`,
  :func:`check_manifold_point`, :func:`slow_sde_coefficients`, :func:`integrate_slow_sde`,
  :func:`manifold_functional`, :func:`sample_gradient_noise`.

Derivation of :math:`\partial\Phi` and :math:`\partial^2\Phi` on :math:`\Gamma` ([D]; checked in the tests against
finite differences of :func:`gradient_flow_jacobian`). Differentiate the two identities that define
:math:`\Phi`: :math:`\partial\Phi(x)\nabla\mathcal L(x)=0` (:math:`\Phi` is constant along flow lines) and
:math:`\nabla\mathcal L(\Phi(x))=0` (:math:`\Phi` lands on critical points). At :math:`\zeta\in\Gamma`, with
:math:`H=\nabla^2\mathcal L(\zeta)=\sum_i\lambda_iv_iv_i^\top`, the first gives :math:`\partial\Phi H=0` and
:math:`\partial^2\Phi[Hu,w]+\partial^2\Phi[u,Hw]=-\partial\Phi\,\nabla^3\mathcal L[u,w]`; the second gives
:math:`H\partial\Phi=0` and :math:`H\partial^2\Phi[u,w]=-\nabla^3\mathcal L[\partial\Phi u,\partial\Phi w]`.
Since :math:`\Phi` fixes :math:`\Gamma` pointwise, :math:`\partial\Phi v=v` on :math:`T\Gamma=\ker H`, so
:math:`\partial\Phi=P_T`, and along a curve :math:`\gamma\subset\Gamma` one gets
:math:`\partial^2\Phi[\dot\gamma,\dot\gamma]=P_\perp\ddot\gamma` (no tangent part). In the eigenbasis, pairs
with :math:`\lambda_i+\lambda_j>0` give :math:`\partial^2\Phi[v_i,v_j]=-P_T\nabla^3\mathcal L[v_i,v_j]/(\lambda_i
+\lambda_j)`, and kernel pairs give :math:`-H^\dagger\nabla^3\mathcal L[v_i,v_j]`. Hence, for symmetric
:math:`M`,

.. math::
    \partial^2\Phi[M]=-H^\dagger\nabla^3\mathcal L[P_TMP_T]-P_T\nabla^3\mathcal L[\widehat M],\qquad
    \widehat M=\sum_{\lambda_i+\lambda_j>0}\frac{v_i^\top Mv_j}{\lambda_i+\lambda_j}v_iv_j^\top .

With :math:`M=\sigma^2\Sigma` this is THEORY.md 7.3's formula. The same identities give
:math:`P_T\nabla^3\mathcal L[u,w]=0` for tangent :math:`u,w` (THEORY.md 7.4), used in the label-noise reduction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

__all__ = [
    "ManifoldModel",
    "NoiseDecomposition",
    "SlowSDECoefficients",
    "SlowSDEPath",
    "SymbolicManifoldModel",
    "check_manifold_point",
    "gradient_flow_jacobian",
    "gradient_flow_projection",
    "hessian_pseudo_inverse",
    "integrate_slow_sde",
    "ito_projection",
    "lambdify_model",
    "lyapunov_weighted",
    "manifold_functional",
    "newton_retraction",
    "noise_decomposition",
    "normal_projection",
    "projection_hessian",
    "sample_gradient_noise",
    "slow_sde_coefficients",
    "tangent_projection",
    "third_derivative_contraction",
]

NoiseKind = Literal["gaussian", "rademacher"]
ArrayFn = Callable[[np.ndarray], np.ndarray]
_NOISE_KINDS = ("gaussian", "rademacher")


# ---------------------------------------------------------------------------------------------------------------
# Model descriptions
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolicManifoldModel:
    r"""A loss with a manifold of minimisers, written in SymPy (THEORY.md 7.1, 2.1).

    ``loss`` is :math:`\mathcal L(x)` in ``variables`` :math:`x\in\mathbb R^d`; ``noise_cov`` is the NGOS
    covariance :math:`\Sigma(x)` (the total gradient-noise covariance is :math:`\sigma^2\Sigma`);
    ``noise_factor`` (optional) is a :math:`d\times r` matrix :math:`B(x)` with :math:`BB^\top=\Sigma`, and the
    per-step noise is :math:`v=B(x)\xi` with :math:`\xi_j` i.i.d. of ``noise_kind`` (``"rademacher"``:
    :math:`\pm1`, label noise; ``"gaussian"``: :math:`N(0,1)`). ``dim_manifold`` is :math:`\dim\Gamma`.
    ``label_noise_constant`` :math:`c` declares :math:`\Sigma=cH` on :math:`\Gamma` (THEORY.md 7.4; the slow SDE
    is then an ODE). ``projection`` is an optional closed-form :math:`\Phi` (NumPy, batched over leading axes,
    raising ``ValueError`` outside the basin), ``manifold_coordinate`` an optional scalar coordinate of
    :math:`\Phi(x)` along :math:`\Gamma`, evaluated at any :math:`x` of the basin.
    """

    name: str
    variables: tuple[sp.Symbol, ...]
    loss: sp.Expr
    noise_cov: sp.ImmutableMatrix
    dim_manifold: int
    noise_factor: sp.ImmutableMatrix | None = None
    noise_kind: NoiseKind = "gaussian"
    label_noise_constant: float | None = None
    projection: ArrayFn | None = None
    manifold_coordinate: ArrayFn | None = None

    def __post_init__(self) -> None:
        variables = tuple(self.variables)
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "loss", sp.sympify(self.loss))
        object.__setattr__(self, "noise_cov", sp.ImmutableMatrix(self.noise_cov))
        d = len(variables)
        _check_dims(d, self.dim_manifold)
        if self.noise_cov.shape != (d, d):
            raise ValueError(f"noise_cov must be a {d}x{d} matrix (d = len(variables)), got {self.noise_cov.shape}")
        if sp.simplify(self.noise_cov - self.noise_cov.T) != sp.zeros(d, d):
            raise ValueError("noise_cov must be symmetric")
        if self.noise_factor is not None:
            factor = sp.ImmutableMatrix(self.noise_factor)
            object.__setattr__(self, "noise_factor", factor)
            if factor.shape[0] != d:
                raise ValueError(f"noise_factor must have {d} rows (d = len(variables)), got shape {factor.shape}")
            if sp.simplify(factor * factor.T - self.noise_cov) != sp.zeros(d, d):
                raise ValueError("noise_factor B must satisfy B B^T = noise_cov")
        _check_noise_kind(self.noise_kind)
        _check_label_noise_constant(self.label_noise_constant)

    @property
    def dim(self) -> int:
        """The ambient dimension :math:`d`."""
        return len(self.variables)


@dataclass(frozen=True)
class ManifoldModel:
    r"""A loss with a manifold of minimisers, as NumPy callables (THEORY.md 7.1, 2.1).

    Every callable takes :math:`x` of shape ``(..., d)`` and broadcasts over the leading axes: ``gradient``
    :math:`\nabla\mathcal L` ``(..., d)``, ``hessian`` :math:`\nabla^2\mathcal L` ``(..., d, d)``, ``noise_cov``
    :math:`\Sigma` ``(..., d, d)``, ``third_derivative`` :math:`\partial_k\partial_i\partial_j\mathcal L`
    ``(..., d, d, d)`` (``None``: central differences of ``hessian`` with step ``fd_step``, accurate to about
    ``fd_step**2``), ``noise_factor`` :math:`B` ``(..., d, r)`` with :math:`BB^\top=\Sigma` (optional; used by
    :func:`sample_gradient_noise`), ``loss`` ``(...)`` (optional). The other fields are as in
    :class:`SymbolicManifoldModel`; ``symbolic`` is the description it was compiled from, if any.
    """

    name: str
    dim: int
    dim_manifold: int
    gradient: ArrayFn
    hessian: ArrayFn
    noise_cov: ArrayFn
    third_derivative: ArrayFn | None = None
    loss: ArrayFn | None = None
    noise_factor: ArrayFn | None = None
    noise_kind: NoiseKind = "gaussian"
    label_noise_constant: float | None = None
    projection: ArrayFn | None = None
    manifold_coordinate: ArrayFn | None = None
    symbolic: SymbolicManifoldModel | None = None
    fd_step: float = 1e-5

    def __post_init__(self) -> None:
        _check_dims(self.dim, self.dim_manifold)
        for name in ("gradient", "hessian", "noise_cov"):
            if not callable(getattr(self, name)):
                raise ValueError(f"{name} must be a callable x (..., d) -> array")
        for name in ("third_derivative", "loss", "noise_factor", "projection", "manifold_coordinate"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ValueError(f"{name} must be None or a callable x (..., d) -> array")
        _check_noise_kind(self.noise_kind)
        _check_label_noise_constant(self.label_noise_constant)
        if not (math.isfinite(self.fd_step) and self.fd_step > 0):
            raise ValueError(f"fd_step must be a finite number in (0, inf), got {self.fd_step!r}")

    def third(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\nabla^3\mathcal L(x)` ``(..., d, d, d)``: exact if given, else central differences of
        the Hessian.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.third_derivative is not None:
            return np.asarray(self.third_derivative(x), dtype=np.float64)
        steps = self.fd_step * np.eye(self.dim)
        slices = [(self.hessian(x + e) - self.hessian(x - e)) / (2 * self.fd_step) for e in steps]
        tensor = np.stack(slices, axis=-3)  # index k (the differentiation direction) first
        # Symmetrise: the exact tensor is symmetric, and averaging cancels part of the rounding error.
        perms = [(0, 1, 2), (1, 0, 2), (1, 2, 0), (0, 2, 1), (2, 0, 1), (2, 1, 0)]
        nd = tensor.ndim
        return sum(np.transpose(tensor, (*range(nd - 3), *(nd - 3 + p for p in perm))) for perm in perms) / 6


def _check_dims(dim: int, dim_manifold: int) -> None:
    if not (isinstance(dim, int | np.integer) and dim >= 1):
        raise ValueError(f"dim (ambient dimension d) must be an integer >= 1, got {dim!r}")
    if not (isinstance(dim_manifold, int | np.integer) and 0 <= dim_manifold < dim):
        raise ValueError(f"dim_manifold must be an integer in [0, d - 1] = [0, {dim - 1}], got {dim_manifold!r}")


def _check_noise_kind(kind: str) -> None:
    if kind not in _NOISE_KINDS:
        raise ValueError(f"noise_kind must be one of {_NOISE_KINDS}, got {kind!r}")


def _check_label_noise_constant(c: float | None) -> None:
    if c is not None and not (math.isfinite(c) and c > 0):
        raise ValueError(f"label_noise_constant must be None or a finite number in (0, inf), got {c!r}")


def _lambdify_array(variables: tuple[sp.Symbol, ...], array, shape: tuple[int, ...]) -> ArrayFn:
    """Compile a SymPy array once into a NumPy function x (..., d) -> (..., *shape), broadcasting constants."""
    flat = [sp.sympify(e) for e in sp.Array(array).reshape(math.prod(shape)).tolist()] if shape else [array]
    nonzero = [k for k, e in enumerate(flat) if e != 0]
    fn = sp.lambdify(variables, [flat[k] for k in nonzero], modules="numpy", cse=True)

    def call(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((*x.shape[:-1], len(flat)))
        for k, value in zip(nonzero, fn(*np.moveaxis(x, -1, 0)), strict=True):
            out[..., k] = value
        return out.reshape(*x.shape[:-1], *shape)

    return call


@cache
def lambdify_model(symbolic: SymbolicManifoldModel) -> ManifoldModel:
    r"""Derive :math:`\nabla\mathcal L`, :math:`\nabla^2\mathcal L`, :math:`\nabla^3\mathcal L` with SymPy and compile
    them (and :math:`\Sigma`, :math:`B`) to NumPy once; cached per model, so no SymPy runs in a hot loop.
    """
    xs, d = symbolic.variables, symbolic.dim
    gradient = sp.derive_by_array(symbolic.loss, xs)
    hessian = sp.derive_by_array(gradient, xs)
    third = sp.derive_by_array(hessian, xs)
    factor = symbolic.noise_factor
    return ManifoldModel(
        name=symbolic.name,
        dim=d,
        dim_manifold=symbolic.dim_manifold,
        gradient=_lambdify_array(xs, gradient, (d,)),
        hessian=_lambdify_array(xs, hessian, (d, d)),
        third_derivative=_lambdify_array(xs, third, (d, d, d)),
        noise_cov=_lambdify_array(xs, symbolic.noise_cov, (d, d)),
        noise_factor=None if factor is None else _lambdify_array(xs, factor, factor.shape),
        loss=_lambdify_array(xs, symbolic.loss, ()),
        noise_kind=symbolic.noise_kind,
        label_noise_constant=symbolic.label_noise_constant,
        projection=symbolic.projection,
        manifold_coordinate=symbolic.manifold_coordinate,
        symbolic=symbolic,
    )


# ---------------------------------------------------------------------------------------------------------------
# Pure geometry on arrays (batched over leading axes)
# ---------------------------------------------------------------------------------------------------------------


def _spectrum(hessian: np.ndarray, dim_manifold: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of H, the ``dim_manifold`` smallest set to exactly 0.

    The rank is fixed by dim Gamma, not by a numerical threshold: which pairs count as lambda_i + lambda_j > 0
    must not depend on rounding (:func:`check_manifold_point` validates the spectrum at the boundary).
    """
    h = np.asarray(hessian, dtype=np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (h + np.swapaxes(h, -1, -2)))
    eigenvalues[..., :dim_manifold] = 0.0
    return eigenvalues, eigenvectors


def _tangent_from_spectrum(eigenvectors: np.ndarray, dim_manifold: int) -> np.ndarray:
    kernel = eigenvectors[..., :dim_manifold]
    return kernel @ np.swapaxes(kernel, -1, -2)


def _pinv_from_spectrum(eigenvalues: np.ndarray, eigenvectors: np.ndarray, dim_manifold: int) -> np.ndarray:
    normal = eigenvectors[..., dim_manifold:]
    return (normal / eigenvalues[..., None, dim_manifold:]) @ np.swapaxes(normal, -1, -2)


def _lyapunov_from_spectrum(
    matrix: np.ndarray, eigenvalues: np.ndarray, eigenvectors: np.ndarray, dim_manifold: int
) -> np.ndarray:
    d = eigenvalues.shape[-1]
    in_eigenbasis = np.swapaxes(eigenvectors, -1, -2) @ matrix @ eigenvectors
    sums = eigenvalues[..., :, None] + eigenvalues[..., None, :]
    kernel_pair = np.zeros((d, d), dtype=bool)
    kernel_pair[:dim_manifold, :dim_manifold] = True
    weights = np.where(kernel_pair, 0.0, 1.0 / np.where(kernel_pair, 1.0, sums))
    return eigenvectors @ (weights * in_eigenbasis) @ np.swapaxes(eigenvectors, -1, -2)


def tangent_projection(hessian: np.ndarray, dim_manifold: int) -> np.ndarray:
    r"""Orthogonal projection :math:`P_T` onto :math:`T_\zeta\Gamma=\ker H` (THEORY.md 7.1); equals :math:`\partial\Phi`
    on :math:`\Gamma`. The kernel is the span of the ``dim_manifold`` eigenvectors of smallest eigenvalue.
    """
    return _tangent_from_spectrum(_spectrum(hessian, dim_manifold)[1], dim_manifold)


def normal_projection(hessian: np.ndarray, dim_manifold: int) -> np.ndarray:
    r""":math:`P_\perp=I-P_T`, the orthogonal projection onto the normal space :math:`\operatorname{range}H`."""
    return np.eye(np.shape(hessian)[-1]) - tangent_projection(hessian, dim_manifold)


def hessian_pseudo_inverse(hessian: np.ndarray, dim_manifold: int) -> np.ndarray:
    r"""Moore-Penrose inverse :math:`H^\dagger=\sum_{\lambda_i>0}\lambda_i^{-1}v_iv_i^\top` of the rank
    :math:`d-\dim\Gamma` Hessian (THEORY.md 7.3); :math:`H^\dagger H=P_\perp`.
    """
    eigenvalues, eigenvectors = _spectrum(hessian, dim_manifold)
    return _pinv_from_spectrum(eigenvalues, eigenvectors, dim_manifold)


def third_derivative_contraction(third: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    r""":math:`\nabla^3\mathcal L[M]_k=\sum_{ij}\partial_k\partial_i\partial_j\mathcal L\,M_{ij}`, i.e.
    :math:`\nabla_x\langle\nabla^2\mathcal L(x),M\rangle` with :math:`M` frozen (THEORY.md 7.2).
    """
    return np.einsum("...kij,...ij->...k", third, matrix)


def lyapunov_weighted(matrix: np.ndarray, hessian: np.ndarray, dim_manifold: int) -> np.ndarray:
    r"""The Lyapunov-weighted matrix of THEORY.md 7.2,

    .. math:: \widehat M=\sum_{i,j:\ \lambda_i+\lambda_j>0}\frac{v_i^\top Mv_j}{\lambda_i+\lambda_j}v_iv_j^\top,

    the solution of :math:`H\widehat M+\widehat MH=M-P_TMP_T` with zero tangent-tangent block (oracle 21).
    """
    eigenvalues, eigenvectors = _spectrum(hessian, dim_manifold)
    return _lyapunov_from_spectrum(np.asarray(matrix, dtype=np.float64), eigenvalues, eigenvectors, dim_manifold)


@dataclass(frozen=True)
class NoiseDecomposition:
    r""":math:`\Sigma_\parallel=P_T\Sigma P_T`, :math:`\Sigma_\diamond=\Sigma-\Sigma_\parallel` and
    :math:`\widehat\Sigma_\diamond` (THEORY.md 7.2); arrays ``(..., d, d)``.
    """

    parallel: np.ndarray
    diamond: np.ndarray
    diamond_hat: np.ndarray


def noise_decomposition(noise_cov: np.ndarray, hessian: np.ndarray, dim_manifold: int) -> NoiseDecomposition:
    r"""Split :math:`\Sigma` at :math:`\zeta\in\Gamma` (THEORY.md 7.2, oracle 21):

    .. math:: \Sigma_\parallel=P_T\Sigma P_T,\qquad\Sigma_\diamond=\Sigma-\Sigma_\parallel,\qquad
              \widehat\Sigma_\diamond=\sum_{\lambda_i+\lambda_j>0}
              \frac{v_i^\top\Sigma_\diamond v_j}{\lambda_i+\lambda_j}v_iv_j^\top .

    :math:`\widehat\Sigma_\diamond` is the stationary covariance of the normal Ornstein-Uhlenbeck fluctuation,
    :math:`H\widehat\Sigma_\diamond+\widehat\Sigma_\diamond H=\Sigma_\diamond`.
    """
    cov = np.asarray(noise_cov, dtype=np.float64)
    eigenvalues, eigenvectors = _spectrum(hessian, dim_manifold)
    tangent = _tangent_from_spectrum(eigenvectors, dim_manifold)
    parallel = tangent @ cov @ tangent
    diamond = cov - parallel
    return NoiseDecomposition(
        parallel=parallel,
        diamond=diamond,
        diamond_hat=_lyapunov_from_spectrum(diamond, eigenvalues, eigenvectors, dim_manifold),
    )


def projection_hessian(hessian: np.ndarray, third: np.ndarray, matrix: np.ndarray, dim_manifold: int) -> np.ndarray:
    r""":math:`\partial^2\Phi(\zeta)[M]` at :math:`\zeta\in\Gamma`, derived in the module docstring (THEORY.md 7.3):

    .. math:: \partial^2\Phi[M]=-H^\dagger\nabla^3\mathcal L[P_TMP_T]-P_T\nabla^3\mathcal L[\widehat M].

    ``hessian`` and ``third`` are :math:`\nabla^2\mathcal L(\zeta)`, :math:`\nabla^3\mathcal L(\zeta)`; ``matrix``
    is a symmetric :math:`M` ``(..., d, d)``; returns ``(..., d)``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    eigenvalues, eigenvectors = _spectrum(hessian, dim_manifold)
    tangent = _tangent_from_spectrum(eigenvectors, dim_manifold)
    pinv = _pinv_from_spectrum(eigenvalues, eigenvectors, dim_manifold)
    hat = _lyapunov_from_spectrum(matrix, eigenvalues, eigenvectors, dim_manifold)
    normal_part = pinv @ third_derivative_contraction(third, tangent @ matrix @ tangent)[..., None]
    tangent_part = tangent @ third_derivative_contraction(third, hat)[..., None]
    return -(normal_part + tangent_part)[..., 0]


def ito_projection(
    hessian: np.ndarray, third: np.ndarray, diffusion: np.ndarray, drift: np.ndarray, dim_manifold: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""The Itô projection :math:`P_\zeta` of THEORY.md 7.2 (with the Itô term, see THEORY.md 11):

    .. math:: P_\zeta(A\,dW+b\,dt)=\partial\Phi A\,dW+\big(\partial\Phi\,b+\tfrac12\partial^2\Phi[AA^\top]\big)dt .

    ``diffusion`` is :math:`A` ``(..., d, r)``, ``drift`` :math:`b` ``(..., d)``; returns the projected
    :math:`(A', b')`. This is Itô's formula for :math:`\Phi(\zeta+A\,dW+b\,dt)` at :math:`\zeta\in\Gamma`.
    """
    tangent = tangent_projection(hessian, dim_manifold)
    a = np.asarray(diffusion, dtype=np.float64)
    ito = 0.5 * projection_hessian(hessian, third, a @ np.swapaxes(a, -1, -2), dim_manifold)
    return tangent @ a, (tangent @ np.asarray(drift, dtype=np.float64)[..., None])[..., 0] + ito


# ---------------------------------------------------------------------------------------------------------------
# Model-level geometry: validation, Phi, dPhi, retraction
# ---------------------------------------------------------------------------------------------------------------


def check_manifold_point(
    model: ManifoldModel, zeta: np.ndarray, *, gtol: float = 1e-8, rank_rtol: float = 1e-6, name: str = "zeta"
) -> np.ndarray:
    r"""Return ``zeta`` ``(d,)`` as float64, or raise ``ValueError`` unless it is a point of :math:`\Gamma`.

    Checks (THEORY.md 7.1): :math:`\|\nabla\mathcal L(\zeta)\|\le` ``gtol``; :math:`H=\nabla^2\mathcal L(\zeta)` has
    no eigenvalue below :math:`-`\ ``rank_rtol``:math:`\cdot\lambda_{\max}` (a minimiser, not a saddle); and
    :math:`\operatorname{rank}H=d-\dim\Gamma`: exactly ``dim_manifold`` eigenvalues of modulus
    :math:`\le` ``rank_rtol``:math:`\cdot\lambda_{\max}`.
    """
    z = np.asarray(zeta, dtype=np.float64)
    if z.shape != (model.dim,) or not np.all(np.isfinite(z)):
        raise ValueError(f"{name} must be a finite vector of shape ({model.dim},), got shape {z.shape}")
    grad_norm = float(np.linalg.norm(model.gradient(z)))
    if not grad_norm <= gtol:
        raise ValueError(f"{name} is not on Gamma of model {model.name!r}: |grad L| = {grad_norm:.3g} > gtol = {gtol}")
    eigenvalues = np.linalg.eigvalsh(model.hessian(z))
    scale = max(float(np.max(np.abs(eigenvalues))), np.finfo(float).tiny)
    if eigenvalues[0] < -rank_rtol * scale:
        raise ValueError(
            f"{name} is a critical point but not a minimiser of model {model.name!r}: the Hessian has eigenvalue "
            f"{eigenvalues[0]:.3g} < 0 (eigenvalues {np.array2string(eigenvalues, precision=3)})"
        )
    rank = int(np.sum(np.abs(eigenvalues) > rank_rtol * scale))
    expected = model.dim - model.dim_manifold
    if rank != expected:
        raise ValueError(
            f"Hessian rank at {name} is {rank} (eigenvalues {np.array2string(eigenvalues, precision=3)}), but "
            f"model {model.name!r} declares dim Gamma = {model.dim_manifold} in R^{model.dim}, which needs "
            f"rank H = d - dim Gamma = {expected} on Gamma"
        )
    return z


def newton_retraction(model: ManifoldModel, x: np.ndarray, *, gtol: float = 1e-12, max_iter: int = 30) -> np.ndarray:
    r"""Map points near :math:`\Gamma` onto :math:`\Gamma` by Newton steps on the normal space, batched ``(..., d)``:

    .. math:: x\leftarrow x-H(x)^\dagger\nabla\mathcal L(x),\qquad H^\dagger\text{ of rank }d-\dim\Gamma .

    Not :math:`\Phi` off :math:`\Gamma` (they differ at second order in the distance), but a retraction with the
    same first derivative :math:`P_T` and, along :math:`\Gamma`, the same second derivative; so re-projecting
    Euler-Maruyama steps with it gives the same weak first-order scheme as re-projecting with :math:`\Phi`
    (used by :func:`integrate_slow_sde` when the model has no closed-form ``projection``).
    """
    x = np.array(x, dtype=np.float64)
    for _ in range(max_iter):
        grad = model.gradient(x)
        if np.all(np.linalg.norm(grad, axis=-1) <= gtol):
            return x
        eigenvalues, eigenvectors = _spectrum(model.hessian(x), model.dim_manifold)
        if np.any(eigenvalues[..., model.dim_manifold :] <= 0):
            break
        x = x - (_pinv_from_spectrum(eigenvalues, eigenvectors, model.dim_manifold) @ grad[..., None])[..., 0]
        if not np.all(np.isfinite(x)):
            break
    raise ValueError(
        f"newton_retraction: points are not close enough to Gamma of model {model.name!r} to be retracted "
        f"(no convergence to |grad L| <= {gtol} in {max_iter} Newton steps); take smaller steps"
    )


def _flow_event(model: ManifoldModel, gtol: float) -> Callable[[float, np.ndarray], float]:
    def reached(_t: float, y: np.ndarray) -> float:
        return float(np.linalg.norm(model.gradient(y[: model.dim]))) - gtol

    reached.terminal = True  # type: ignore[attr-defined]
    return reached


def _numeric_projection(model: ManifoldModel, x0: np.ndarray, gtol: float, t_max: float) -> np.ndarray:
    if not np.all(np.isfinite(x0)):
        raise ValueError(f"x must be finite, got {x0}")
    with np.errstate(over="raise", invalid="raise"):
        try:
            sol = solve_ivp(
                lambda _t, y: -model.gradient(y),
                (0.0, t_max),
                x0,
                method="Radau",
                jac=lambda _t, y: -model.hessian(y),
                events=_flow_event(model, gtol),
                rtol=1e-11,
                atol=1e-13,
            )
        except FloatingPointError as exc:
            raise ValueError(f"gradient flow from x = {x0} diverged: x is outside the basin of attraction") from exc
    if sol.status != 1:
        raise ValueError(
            f"gradient flow from x = {x0} did not reach |grad L| <= {gtol} by t_max = {t_max} ({sol.message}): "
            f"x is outside the basin of attraction of Gamma of model {model.name!r}, or the flow is too slow"
        )
    end = sol.y_events[0][0]
    try:
        end = newton_retraction(model, end)
        return check_manifold_point(model, end, name="the gradient-flow limit")
    except ValueError as exc:
        raise ValueError(
            f"x = {x0} is outside the basin of attraction of Gamma of model {model.name!r}: gradient flow "
            f"converged to {end}, which is not on Gamma ({exc})"
        ) from exc


def gradient_flow_projection(
    model: ManifoldModel,
    x: np.ndarray,
    *,
    method: Literal["auto", "closed_form", "numeric"] = "auto",
    gtol: float = 1e-9,
    t_max: float = 1e4,
) -> np.ndarray:
    r"""The gradient-flow projection :math:`\Phi(x)=\lim_{t\to\infty}\phi(x,t)`,
    :math:`\dot\phi=-\nabla\mathcal L(\phi)`, :math:`\phi(x,0)=x` (THEORY.md 7.1), for ``x`` ``(d,)`` or ``(N, d)``.

    ``method="closed_form"`` uses the model's ``projection``; ``"numeric"`` integrates the flow with
    ``scipy.integrate.solve_ivp`` (Radau, rtol 1e-11) until :math:`\|\nabla\mathcal L\|\le` ``gtol``, finishes with
    :func:`newton_retraction` (error second order in the remaining distance, about ``gtol**2``), and checks the
    limit with :func:`check_manifold_point`; ``"auto"`` takes the closed form when there is one. Raises
    ``ValueError`` when ``x`` is outside the basin: the flow diverges, does not converge by ``t_max``, or
    converges to a critical point that is not on :math:`\Gamma` (a saddle, or a point of the wrong rank).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[-1] != model.dim:
        raise ValueError(f"x must have shape ({model.dim},) or (N, {model.dim}), got {x.shape}")
    if method not in ("auto", "closed_form", "numeric"):
        raise ValueError(f"method must be 'auto', 'closed_form' or 'numeric', got {method!r}")
    if method == "closed_form" and model.projection is None:
        raise ValueError(f"model {model.name!r} has no closed-form projection; use method='numeric'")
    if method != "numeric" and model.projection is not None:
        return np.asarray(model.projection(x), dtype=np.float64)
    if x.ndim == 1:
        return _numeric_projection(model, x, gtol, t_max)
    return np.stack([_numeric_projection(model, row, gtol, t_max) for row in x])


def gradient_flow_jacobian(
    model: ManifoldModel, x: np.ndarray, *, tol: float = 1e-11, t_max: float = 1e4
) -> np.ndarray:
    r""":math:`\partial\Phi(x)` at any ``x`` ``(d,)`` of the basin, by the variational equation of gradient flow:

    .. math:: \dot\phi=-\nabla\mathcal L(\phi),\quad \dot J=-\nabla^2\mathcal L(\phi)J,\quad J(0)=I,\qquad
              \partial\Phi(x)=\lim_{t\to\infty}J(t),

    integrated (DOP853, rtol 1e-12) until :math:`\|\nabla\mathcal L(\phi)\|+\|\nabla^2\mathcal L(\phi)J\|\le`
    ``tol``. An independent numerical route to :math:`\partial\Phi` off :math:`\Gamma`, used to check
    :func:`projection_hessian` by finite differences; on :math:`\Gamma` it returns :math:`P_T`.
    """
    x = np.asarray(x, dtype=np.float64)
    d = model.dim
    if x.shape != (d,) or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be a finite vector of shape ({d},), got {x.shape}")

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        phi, jac = y[:d], y[d:].reshape(d, d)
        return np.concatenate([-model.gradient(phi), -(model.hessian(phi) @ jac).ravel()])

    def settled(_t: float, y: np.ndarray) -> float:
        phi, jac = y[:d], y[d:].reshape(d, d)
        return float(np.linalg.norm(model.gradient(phi)) + np.linalg.norm(model.hessian(phi) @ jac)) - tol

    settled.terminal = True  # type: ignore[attr-defined]
    y0 = np.concatenate([x, np.eye(d).ravel()])
    sol = solve_ivp(rhs, (0.0, t_max), y0, method="DOP853", events=settled, rtol=1e-12, atol=1e-14)
    if sol.status != 1:
        raise ValueError(f"variational gradient flow from x = {x} did not settle by t_max = {t_max} ({sol.message})")
    return sol.y_events[0][0][d:].reshape(d, d)


# ---------------------------------------------------------------------------------------------------------------
# The slow SDE
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowSDECoefficients:
    r"""Drift and diffusion of the slow SDE at :math:`\zeta` (THEORY.md 7.3), batched over leading axes.

    ``drift`` = ``normal_drift`` + ``regularization_drift`` ``(..., d)``:
    :math:`-\tfrac{\sigma^2}{2}H^\dagger\nabla^3\mathcal L[\Sigma_\parallel]` (keeps :math:`\zeta` on
    :math:`\Gamma`) and
    :math:`-\tfrac{\sigma^2}{2}P_T\nabla^3\mathcal L[\widehat\Sigma_\diamond]` (the implicit regularisation);
    ``diffusion`` :math:`\sigma\Sigma_\parallel^{1/2}` ``(..., d, d)``, symmetric PSD.
    """

    drift: np.ndarray
    normal_drift: np.ndarray
    regularization_drift: np.ndarray
    diffusion: np.ndarray


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[-1] == 1:
        return np.sqrt(np.clip(matrix, 0.0, None))
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (matrix + np.swapaxes(matrix, -1, -2)))
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return (eigenvectors * roots[..., None, :]) @ np.swapaxes(eigenvectors, -1, -2)


def _parallel_sqrt(kernel: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Sigma_par^{1/2} = K (K' Sigma K)^{1/2} K' for an orthonormal kernel basis K: an m x m root, not d x d."""
    kernel_t = np.swapaxes(kernel, -1, -2)
    return kernel @ _psd_sqrt(kernel_t @ cov @ kernel) @ kernel_t


def slow_sde_coefficients(model: ManifoldModel, zeta: np.ndarray, sigma: float = 1.0) -> SlowSDECoefficients:
    r"""The slow SDE of Theorem 4.5 (THEORY.md 7.3; Li-Wang-Arora 2022; Gu-Lyu-Huang-Arora 2023), explicit form:

    .. math::
        d\zeta=\sigma\Sigma_\parallel^{1/2}dW
        -\tfrac{\sigma^2}{2}H^\dagger\nabla^3\mathcal L[\Sigma_\parallel]\,dt
        -\tfrac{\sigma^2}{2}P_T\nabla^3\mathcal L[\widehat\Sigma_\diamond]\,dt,\qquad t=k\eta^2 .

    It equals
    :math:`P_\zeta(\sigma\Sigma_\parallel^{1/2}dW-\tfrac{\sigma^2}2\nabla^3\mathcal L[\widehat\Sigma_\diamond]dt)`
    with the Itô term of :func:`ito_projection`, and the Katzenberger form
    :math:`\partial\Phi\,\sigma\Sigma^{1/2}dW+\tfrac{\sigma^2}2\partial^2\Phi[\Sigma]dt` (tested). ``zeta`` ``(..., d)``
    is assumed on :math:`\Gamma` (no validation here: this is the core of the integrators).
    """
    z = np.asarray(zeta, dtype=np.float64)
    hessian, third, cov = model.hessian(z), model.third(z), model.noise_cov(z)
    m = model.dim_manifold
    eigenvalues, eigenvectors = _spectrum(hessian, m)
    tangent = _tangent_from_spectrum(eigenvectors, m)
    pinv = _pinv_from_spectrum(eigenvalues, eigenvectors, m)
    parallel = tangent @ cov @ tangent
    diamond_hat = _lyapunov_from_spectrum(cov - parallel, eigenvalues, eigenvectors, m)
    normal = -0.5 * sigma**2 * (pinv @ third_derivative_contraction(third, parallel)[..., None])[..., 0]
    regularization = -0.5 * sigma**2 * (tangent @ third_derivative_contraction(third, diamond_hat)[..., None])[..., 0]
    return SlowSDECoefficients(
        drift=normal + regularization,
        normal_drift=normal,
        regularization_drift=regularization,
        diffusion=sigma * _parallel_sqrt(eigenvectors[..., :m], cov),
    )


@dataclass(frozen=True)
class SlowSDEPath:
    r"""Slow-SDE solution on the time axis :math:`t=k\eta^2` (Theorem 4.5): ``times`` ``(n_times,)`` and ``states``
    ``(n_paths, n_times, d)`` (``n_paths = 1`` for the ODE of the label-noise case); ``zeta0`` :math:`=\Phi(x_0)`;
    ``method`` is ``"ode"`` or ``"euler_maruyama"``.
    """

    times: np.ndarray
    states: np.ndarray
    zeta0: np.ndarray
    sigma: float
    method: str


def _check_label_noise(model: ManifoldModel, zeta: np.ndarray, rtol: float = 1e-8) -> None:
    """The ODE form needs Sigma = c H on Gamma (THEORY.md 7.4): check it at zeta."""
    c = model.label_noise_constant
    hessian, cov = model.hessian(zeta), model.noise_cov(zeta)
    if c is None or np.linalg.norm(cov - c * hessian) > rtol * max(np.linalg.norm(cov), 1.0):
        raise ValueError(
            f"method='ode' needs label noise, Sigma = c H on Gamma (THEORY.md 7.4), so that the diffusion "
            f"vanishes; model {model.name!r} has label_noise_constant={c!r} and |Sigma - c H| at zeta0 = "
            f"{np.linalg.norm(cov - (c or 0.0) * hessian):.3g}. Use method='euler_maruyama'"
        )


def _time_grid(t_final: float, n_steps: int, save_every: int) -> tuple[float, np.ndarray]:
    if not (math.isfinite(t_final) and t_final > 0):
        raise ValueError(f"t_final must be a finite number in (0, inf), got {t_final!r}")
    if not (isinstance(n_steps, int | np.integer) and n_steps >= 1):
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    if not (isinstance(save_every, int | np.integer) and 1 <= save_every <= n_steps and n_steps % save_every == 0):
        raise ValueError(
            f"save_every must be an integer in [1, n_steps] dividing n_steps = {n_steps}, got {save_every!r}"
        )
    dt = t_final / n_steps
    return dt, dt * np.arange(0, n_steps + 1, save_every)


def _euler_maruyama(
    coefficients: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    retract: Callable[[np.ndarray], np.ndarray],
    zeta0: np.ndarray,
    dt: float,
    n_steps: int,
    save_every: int,
    n_paths: int,
    rng: np.random.Generator,
    lr_profile: Callable[[float], float] | None,
) -> np.ndarray:
    """Vectorised Euler-Maruyama with re-projection: Z <- R(Z + u^2 b dt + u A dW); states (n_paths, n_saved, d)."""
    z = np.repeat(zeta0[None, :], n_paths, axis=0)
    saved = [z.copy()]
    for k in range(n_steps):
        scale = 1.0 if lr_profile is None else float(lr_profile(k * dt))
        drift, diffusion = coefficients(z)
        increments = rng.standard_normal(z.shape) * math.sqrt(dt)
        z = retract(z + scale**2 * drift * dt + scale * (diffusion @ increments[..., None])[..., 0])
        if (k + 1) % save_every == 0:
            saved.append(z.copy())
    return np.stack(saved, axis=1)


def _as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy.random.Generator or an int seed for the stochastic slow SDE, got {rng!r}")


def integrate_slow_sde(
    model: ManifoldModel,
    x0: np.ndarray,
    t_final: float,
    *,
    sigma: float = 1.0,
    n_steps: int = 1000,
    save_every: int = 1,
    n_paths: int = 1,
    rng: np.random.Generator | int | None = None,
    method: Literal["auto", "ode", "euler_maruyama"] = "auto",
    lr_profile: Callable[[float], float] | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-12,
) -> SlowSDEPath:
    r"""Integrate the slow SDE of Theorem 4.5 (THEORY.md 7.3) from :math:`\zeta_0=\Phi(x_0)` over
    :math:`t\in[0,T]`, :math:`t=k\eta^2`; states saved at :math:`t=j\,\Delta t` for ``j`` a multiple of
    ``save_every``, :math:`\Delta t=T/` ``n_steps``.

    * ``"ode"`` (label noise, :math:`\Sigma=cH` on :math:`\Gamma`, so :math:`\Sigma_\parallel=0`): the deterministic
      flow :math:`\dot\zeta=-\tfrac{\sigma^2}{2}P_T\nabla^3\mathcal L[\widehat\Sigma_\diamond]
      =-\tfrac{c\sigma^2}{4}P_T\nabla\operatorname{tr}\nabla^2\mathcal L` (THEORY.md 7.4) by ``solve_ivp``
      (DOP853, ``rtol``, ``atol``; ``n_steps`` and ``save_every`` only set the output times); returns one path.
    * ``"euler_maruyama"``: ``n_paths`` paths vectorised,
      :math:`\zeta\leftarrow R\big(\zeta+b(\zeta)\Delta t+A(\zeta)\Delta W\big)` with :math:`b, A` of
      :func:`slow_sde_coefficients` and :math:`R` the model's closed-form :math:`\Phi` (else
      :func:`newton_retraction`), so paths stay on :math:`\Gamma`; weak order 1 in :math:`\Delta t`. Needs ``rng``
      (a ``numpy.random.Generator`` or an int seed).
    * ``"auto"``: ``"ode"`` when the model declares ``label_noise_constant``, else ``"euler_maruyama"``.

    ``lr_profile`` :math:`u(t)` models :math:`\eta_k=\eta\,u(k\eta^2)`: the drift scales by :math:`u^2` and the
    diffusion by :math:`u` (THEORY.md 7.3, [D by scaling]; the paper's schedule form is unverified).
    """
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma (noise scale) must be a finite number in (0, inf), got {sigma!r}")
    if not (isinstance(n_paths, int | np.integer) and n_paths >= 1):
        raise ValueError(f"n_paths must be an integer >= 1, got {n_paths!r}")
    if method not in ("auto", "ode", "euler_maruyama"):
        raise ValueError(f"method must be 'auto', 'ode' or 'euler_maruyama', got {method!r}")
    dt, times = _time_grid(float(t_final), n_steps, save_every)
    zeta0 = check_manifold_point(model, gradient_flow_projection(model, x0), name="Phi(x0)")
    if method == "auto":
        method = "ode" if model.label_noise_constant is not None else "euler_maruyama"

    if method == "ode":
        _check_label_noise(model, zeta0)

        def rhs(t: float, z: np.ndarray) -> np.ndarray:
            scale = 1.0 if lr_profile is None else float(lr_profile(t))
            return scale**2 * slow_sde_coefficients(model, z, sigma).drift

        sol = solve_ivp(rhs, (0.0, times[-1]), zeta0, method="DOP853", t_eval=times, rtol=rtol, atol=atol)
        if sol.status != 0:
            raise ValueError(f"slow-flow ODE integration failed: {sol.message}")
        states = sol.y.T[None]
        check_manifold_point(model, states[0, -1], gtol=1e-6, name="the final slow-flow state")
        return SlowSDEPath(times=times, states=states, zeta0=zeta0, sigma=sigma, method="ode")

    generator = _as_generator(rng)
    retract = model.projection if model.projection is not None else (lambda z: newton_retraction(model, z))

    def coefficients(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = slow_sde_coefficients(model, z, sigma)
        return c.drift, c.diffusion

    states = _euler_maruyama(
        coefficients, retract, zeta0, dt, int(n_steps), int(save_every), int(n_paths), generator, lr_profile
    )
    return SlowSDEPath(times=times, states=states, zeta0=zeta0, sigma=sigma, method="euler_maruyama")


def manifold_functional(
    model: ManifoldModel, x: np.ndarray, kind: Literal["hessian_trace", "coordinate"] = "hessian_trace"
) -> np.ndarray:
    r"""A scalar functional of :math:`\Phi(x)` for comparing SGD, SGDM and the slow SDE (Theorem 4.5),
    ``x`` ``(..., d)`` -> ``(...)``.

    * ``"hessian_trace"``: :math:`\operatorname{tr}\nabla^2\mathcal L(\Phi(x))` (the label-noise regulariser,
      THEORY.md 7.4); uses the closed-form :math:`\Phi` when the model has one, else one ``solve_ivp`` per point;
    * ``"coordinate"``: the model's ``manifold_coordinate`` of :math:`\Phi(x)` (e.g. :math:`s` with
      :math:`\Phi(x)=\pm(e^s,e^{-s})` for the toy of THEORY.md 7.4).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] != model.dim:
        raise ValueError(f"x must have shape (..., {model.dim}), got {x.shape}")
    if kind == "coordinate":
        if model.manifold_coordinate is None:
            raise ValueError(f"model {model.name!r} has no manifold_coordinate; use kind='hessian_trace'")
        return np.asarray(model.manifold_coordinate(x), dtype=np.float64)
    if kind != "hessian_trace":
        raise ValueError(f"kind must be 'hessian_trace' or 'coordinate', got {kind!r}")
    flat = x.reshape(-1, model.dim)
    projected = gradient_flow_projection(model, flat)
    return np.trace(model.hessian(projected), axis1=-2, axis2=-1).reshape(x.shape[:-1])


def sample_gradient_noise(model: ManifoldModel, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""One draw of the NGOS noise :math:`v` at each point ``x`` ``(..., d)`` (THEORY.md 2.1):
    :math:`\mathbb Ev=0`, :math:`\operatorname{Cov}v=\Sigma(x)`; the stochastic gradient is
    :math:`g=\nabla\mathcal L(x)+\sigma v`.

    With a ``noise_factor``: :math:`v=B(x)\xi`, :math:`\xi_j` i.i.d. Rademacher (label noise) or standard normal
    per ``noise_kind``; without one: :math:`v=\Sigma(x)^{1/2}\xi`, :math:`\xi\sim N(0,I)`.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {rng!r}")
    x = np.asarray(x, dtype=np.float64)
    factor = model.noise_factor(x) if model.noise_factor is not None else _psd_sqrt(model.noise_cov(x))
    shape = factor.shape[:-2] + factor.shape[-1:]
    if model.noise_kind == "rademacher" and model.noise_factor is not None:
        xi = rng.choice(np.array([-1.0, 1.0]), size=shape)
    else:
        xi = rng.standard_normal(shape)
    return (factor @ xi[..., None])[..., 0]
