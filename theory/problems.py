r"""Analytic test problems: loss, derivatives and a Gaussian gradient-noise model with known covariance.

Each :class:`Problem` is a SymPy loss :math:`\mathcal L(x)` on :math:`\mathbb R^d` and a noise factor
:math:`B(x)\in\mathbb R^{d\times r}`; the stochastic gradient oracle is the NGOS of THEORY.md 2.1 with
Gaussian noise,

.. math:: g=\nabla\mathcal L(x)+\sigma\,B(x)\,z,\qquad z\sim N(0,I_r),\qquad
          \operatorname{Cov}g=\sigma^2\Sigma(x),\quad \Sigma(x)=B(x)B(x)^\top .

The gradient, Hessian and third-derivative tensor are *derived* from the symbolic loss with
:func:`sympy.diff` once, lambdified once, and cached on the instance; nothing downstream hand-types a
derivative.  Numerical evaluation is vectorised over paths: every method takes ``x`` of shape ``(N, d)``.
When the Hessian is constant (quadratics) the gradient is evaluated as the affine map it is (one matrix
product); when :math:`B` is constant the noise is one matrix product as well.

Constructors: :func:`noisy_quadratic`, :func:`log_cosh_well` (1-D), :func:`quartic_well` (1-D),
:func:`double_well_2d` (2-D, non-convex), :func:`linear_regression` (label noise and feature-sampling
noise with the exact per-example covariance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import sympy as sp

from theory.validation import as_real_array, check_real

__all__ = [
    "Problem",
    "double_well_2d",
    "linear_regression",
    "log_cosh_well",
    "noisy_quadratic",
    "quartic_well",
    "vectorize_expressions",
]


def vectorize_expressions(exprs: sp.Matrix | sp.Array | sp.Expr, symbols: tuple[sp.Symbol, ...]) -> Callable:
    """Lambdify ``exprs`` once into a function of ``x`` with shape ``(N, len(symbols))``.

    The result has shape ``(N, *exprs.shape)`` (``(N,)`` for a scalar).  Constant entries are broadcast,
    so a constant Hessian still returns one matrix per path.
    """
    shape = tuple(exprs.shape) if hasattr(exprs, "shape") else ()
    flat = list(sp.flatten(exprs)) if shape else [exprs]
    compiled = sp.lambdify(symbols, flat, modules="numpy", cse=True)

    def evaluate(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n = x.shape[0]
        values = compiled(*(x[:, i] for i in range(x.shape[1])))
        out = np.empty((n, len(flat)))
        for j, value in enumerate(values):
            out[:, j] = value
        return out.reshape((n, *shape))

    return evaluate


def _as_float_matrix(values: np.ndarray) -> sp.ImmutableMatrix:
    return sp.ImmutableMatrix(np.asarray(values, dtype=np.float64).tolist())


def _check_points(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x must have shape (n_paths, {dim}), got {x.shape}")
    return x


@dataclass(frozen=True, eq=False)
class Problem:
    r"""A smooth loss with Gaussian gradient noise :math:`g=\nabla\mathcal L(x)+\sigma B(x)z` (THEORY.md 2.1).

    ``symbols`` are the coordinates :math:`x_1,\dots,x_d`; ``loss`` is :math:`\mathcal L` and
    ``noise_factor`` the :math:`d\times r` matrix :math:`B(x)` with :math:`\Sigma=BB^\top` the noise
    covariance per unit :math:`\sigma^2`.  Instances compare by identity (they cache compiled functions).
    """

    name: str
    symbols: tuple[sp.Symbol, ...]
    loss: sp.Expr
    noise_factor: sp.ImmutableMatrix
    description: str = ""
    parameters: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.symbols) == 0:
            raise ValueError("a problem needs at least one coordinate symbol")
        factor = sp.ImmutableMatrix(self.noise_factor)
        if factor.shape[0] != len(self.symbols):
            raise ValueError(
                f"noise_factor must have {len(self.symbols)} rows (one per coordinate), got {factor.shape}"
            )
        stray = (sp.sympify(self.loss).free_symbols | factor.free_symbols) - set(self.symbols)
        if stray:
            raise ValueError(
                f"loss and noise_factor may depend only on {self.symbols}; also found {sorted(map(str, stray))}"
            )
        object.__setattr__(self, "noise_factor", factor)

    # --- symbolic, derived -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return len(self.symbols)

    @property
    def noise_dim(self) -> int:
        return self.noise_factor.shape[1]

    @cached_property
    def gradient_expr(self) -> sp.ImmutableMatrix:
        r""":math:`\nabla\mathcal L` as a :math:`d\times1` matrix, derived with :func:`sympy.diff`."""
        return sp.ImmutableMatrix([sp.diff(self.loss, s) for s in self.symbols])

    @cached_property
    def hessian_expr(self) -> sp.ImmutableMatrix:
        r""":math:`\nabla^2\mathcal L`, derived."""
        return sp.ImmutableMatrix(sp.hessian(self.loss, self.symbols))

    @cached_property
    def third_derivative_expr(self) -> sp.ImmutableDenseNDimArray:
        r""":math:`\partial_i\partial_j\partial_k\mathcal L` as a :math:`d\times d\times d` array, derived."""
        return sp.ImmutableDenseNDimArray(sp.derive_by_array(sp.Array(self.hessian_expr), self.symbols))

    @cached_property
    def noise_covariance_expr(self) -> sp.ImmutableMatrix:
        r""":math:`\Sigma(x)=B(x)B(x)^\top`."""
        return sp.ImmutableMatrix(sp.simplify(self.noise_factor * self.noise_factor.T))

    @cached_property
    def has_constant_hessian(self) -> bool:
        return not self.hessian_expr.free_symbols

    @cached_property
    def has_constant_noise(self) -> bool:
        return not self.noise_factor.free_symbols

    # --- numeric, vectorised over paths -----------------------------------------------------------

    @cached_property
    def _loss_fn(self) -> Callable:
        return vectorize_expressions(sp.sympify(self.loss), self.symbols)

    @cached_property
    def _gradient_fn(self) -> Callable:
        if self.has_constant_hessian:
            hessian_t = np.array(self.hessian_expr.T.tolist(), dtype=np.float64)
            offset = np.array(self.gradient_expr.subs(dict.fromkeys(self.symbols, 0)).T.tolist(), dtype=np.float64)[0]
            if np.any(offset != 0.0):
                return lambda x: x @ hessian_t + offset
            return lambda x: x @ hessian_t
        evaluate = vectorize_expressions(self.gradient_expr, self.symbols)
        return lambda x: evaluate(x)[:, :, 0]

    @cached_property
    def _hessian_fn(self) -> Callable:
        return vectorize_expressions(self.hessian_expr, self.symbols)

    @cached_property
    def _third_fn(self) -> Callable:
        return vectorize_expressions(self.third_derivative_expr, self.symbols)

    @cached_property
    def _factor_fn(self) -> Callable:
        return vectorize_expressions(self.noise_factor, self.symbols)

    @cached_property
    def constant_noise_factor(self) -> np.ndarray | None:
        """:math:`B` as a float array when it does not depend on :math:`x`, else ``None``."""
        if not self.has_constant_noise:
            return None
        return np.array(self.noise_factor.tolist(), dtype=np.float64)

    @cached_property
    def _noise_apply_fn(self) -> Callable:
        constant = self.constant_noise_factor
        if constant is not None:
            factor_t = constant.T.copy()
            return lambda x, z: z @ factor_t
        zs = sp.symbols(f"_z0:{self.noise_dim}", real=True)
        product = vectorize_expressions(self.noise_factor * sp.Matrix(zs), (*self.symbols, *zs))
        return lambda x, z: product(np.concatenate([x, z], axis=1))[:, :, 0]

    def value(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\mathcal L(x)` for ``x`` of shape ``(N, d)``; returns ``(N,)``."""
        return self._loss_fn(_check_points(x, self.dim))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\nabla\mathcal L(x)`, shape ``(N, d)``."""
        return self._gradient_fn(_check_points(x, self.dim))

    def hessian(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\nabla^2\mathcal L(x)`, shape ``(N, d, d)``."""
        return self._hessian_fn(_check_points(x, self.dim))

    def third_derivative(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\nabla^3\mathcal L(x)`, shape ``(N, d, d, d)``."""
        return self._third_fn(_check_points(x, self.dim))

    def noise_factor_at(self, x: np.ndarray) -> np.ndarray:
        """:math:`B(x)`, shape ``(N, d, r)``."""
        return self._factor_fn(_check_points(x, self.dim))

    def noise_covariance(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\Sigma(x)=B(x)B(x)^\top`, shape ``(N, d, d)``."""
        factor = self.noise_factor_at(x)
        return factor @ np.swapaxes(factor, 1, 2)

    def apply_noise_factor(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """:math:`B(x)z` row by row, ``x`` of shape ``(N, d)``, ``z`` of shape ``(N, r)``; unvalidated (hot path)."""
        return self._noise_apply_fn(x, z)

    def stochastic_gradient(self, x: np.ndarray, z: np.ndarray, sigma: float) -> np.ndarray:
        r"""NGOS sample :math:`\nabla\mathcal L(x)+\sigma B(x)z` for standard normal ``z`` of shape ``(N, r)``."""
        x = _check_points(x, self.dim)
        z = np.asarray(z, dtype=np.float64)
        if z.shape != (x.shape[0], self.noise_dim):
            raise ValueError(f"z must have shape ({x.shape[0]}, {self.noise_dim}), got {z.shape}")
        return self._gradient_fn(x) + sigma * self._noise_apply_fn(x, z)


def _coordinates(dim: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.symbols(f"x0:{dim}", real=True))


def _symmetric_sqrt(matrix: np.ndarray, name: str) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    if values.min() < -1e-12 * max(1.0, abs(values).max()):
        raise ValueError(f"{name} must be positive semi-definite; smallest eigenvalue {values.min():.3g}")
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _check_square(matrix: np.ndarray | float, name: str, dim: int | None = None) -> np.ndarray:
    array = np.atleast_2d(as_real_array(matrix, name))
    if array.ndim != 2 or array.shape[0] != array.shape[1] or (dim is not None and array.shape[0] != dim):
        expected = f"({dim}, {dim})" if dim is not None else "square"
        raise ValueError(f"{name} must be a {expected} matrix, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    if not np.allclose(array, array.T, rtol=0, atol=1e-12 * max(1.0, abs(array).max())):
        raise ValueError(f"{name} must be symmetric")
    return array


def _check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    return check_real(value, name, low=0.0, low_open=not allow_zero)


def noisy_quadratic(hessian: np.ndarray | float, noise_covariance: np.ndarray | float | None = None) -> Problem:
    r"""Noisy quadratic :math:`\mathcal L=\tfrac12x^\top Hx`, additive noise, covariance :math:`\Sigma` (THEORY.md 5.1).

    ``noise_covariance`` defaults to the identity; the factor is the symmetric square root
    :math:`B=\Sigma^{1/2}` (so :math:`r=d`).  A scalar gives the 1-D problem :math:`\tfrac h2x^2`.
    """
    hess = _check_square(hessian, "hessian (H)")
    dim = hess.shape[0]
    cov = np.eye(dim) if noise_covariance is None else _check_square(noise_covariance, "noise_covariance (Sigma)", dim)
    xs = _coordinates(dim)
    vector = sp.Matrix(xs)
    loss = sp.expand((vector.T * _as_float_matrix(hess) * vector)[0, 0] / 2)
    return Problem(
        name=f"noisy_quadratic(d={dim})",
        symbols=xs,
        loss=loss,
        noise_factor=_as_float_matrix(_symmetric_sqrt(cov, "noise_covariance (Sigma)")),
        description="L = x^T H x / 2, additive Gaussian gradient noise with covariance Sigma",
        parameters={"H": hess.tolist(), "Sigma": cov.tolist()},
    )


def log_cosh_well(scale: float = 1.0, noise: float = 1.0, noise_modulation: float = 0.5) -> Problem:
    r"""1-D log-cosh well :math:`\mathcal L=\log\cosh(ax)/a^2` with state-dependent noise.

    Noise factor :math:`B(x)=s\sqrt{1+\kappa\tanh^2(ax)}` (``noise`` :math:`s`, ``noise_modulation``
    :math:`\kappa\ge0`).  Quadratic near 0 (:math:`\mathcal L''(0)=1`), linear growth far out, bounded
    gradient and noise: SGD on it never diverges, which makes it the standard non-linear 1-D problem.
    """
    a = _check_positive(scale, "scale (a)")
    s = _check_positive(noise, "noise (s)", allow_zero=True)
    kappa = _check_positive(noise_modulation, "noise_modulation (kappa)", allow_zero=True)
    (x,) = _coordinates(1)
    loss = sp.log(sp.cosh(sp.Float(a) * x)) / sp.Float(a) ** 2
    factor = sp.Float(s) * sp.sqrt(1 + sp.Float(kappa) * sp.tanh(sp.Float(a) * x) ** 2)
    return Problem(
        name="log_cosh_well",
        symbols=(x,),
        loss=loss,
        noise_factor=sp.ImmutableMatrix([[factor]]),
        description="L = log(cosh(a x)) / a^2, B(x) = s sqrt(1 + kappa tanh(a x)^2)",
        parameters={"scale": a, "noise": s, "noise_modulation": kappa},
    )


def quartic_well(curvature: float = 1.0, noise: float = 1.0) -> Problem:
    r"""1-D quartic well :math:`\mathcal L=x^4/4+hx^2/2` with additive noise :math:`s`.

    The gradient grows cubically, so SGD with a large step or a far start diverges: the test problem
    for divergence detection.
    """
    h = _check_positive(curvature, "curvature (h)", allow_zero=True)
    s = _check_positive(noise, "noise (s)", allow_zero=True)
    (x,) = _coordinates(1)
    return Problem(
        name="quartic_well",
        symbols=(x,),
        loss=x**4 / 4 + sp.Float(h) * x**2 / 2,
        noise_factor=sp.ImmutableMatrix([[sp.Float(s)]]),
        description="L = x^4/4 + h x^2/2, additive noise s",
        parameters={"curvature": h, "noise": s},
    )


def double_well_2d(coupling: float = 1.0, noise: float = 1.0, correlation: float = 0.3) -> Problem:
    r"""2-D non-convex loss :math:`\mathcal L=\tfrac14(x_0^2-1)^2+\tfrac\kappa2(x_1-\tfrac12x_0^2)^2`.

    Two minima at :math:`(\pm1,\tfrac12)`, a saddle at the origin, curved valleys.  Additive noise with
    covariance :math:`s^2\begin{pmatrix}1&\rho\\\rho&1\end{pmatrix}` (Cholesky factor).
    """
    kappa = _check_positive(coupling, "coupling (kappa)")
    s = _check_positive(noise, "noise (s)", allow_zero=True)
    rho = float(correlation)
    if not (np.isfinite(rho) and -1.0 < rho < 1.0):
        raise ValueError(f"correlation (rho) must lie in (-1, 1), got {correlation!r}")
    x0, x1 = _coordinates(2)
    loss = (x0**2 - 1) ** 2 / 4 + sp.Float(kappa) * (x1 - x0**2 / 2) ** 2 / 2
    factor = s * np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
    return Problem(
        name="double_well_2d",
        symbols=(x0, x1),
        loss=loss,
        noise_factor=_as_float_matrix(factor),
        description="L = (x0^2-1)^2/4 + kappa (x1 - x0^2/2)^2 / 2, correlated additive noise",
        parameters={"coupling": kappa, "noise": s, "correlation": rho},
    )


def linear_regression(
    feature_covariance: np.ndarray | float, w_star: np.ndarray | float, label_noise: float = 1.0
) -> Problem:
    r"""Population linear regression with label noise and single-example gradients.

    Model: features :math:`a\sim N(0,A)`, labels :math:`y=a^\top w_*+\varepsilon`,
    :math:`\varepsilon\sim N(0,s^2)`; loss :math:`\mathcal L(w)=\tfrac12\mathbb E(a^\top w-y)^2
    =\tfrac12u^\top Au+\tfrac{s^2}2` with :math:`u=w-w_*`.  The single-example gradient
    :math:`a(a^\top w-y)=aa^\top u-a\varepsilon` has mean :math:`Au` and, by Isserlis' theorem,

    .. math:: \Sigma(w)=Auu^\top A+(u^\top Au+s^2)\,A=BB^\top,\qquad
              B(w)=\big[\,Au\ \big|\ \sqrt{u^\top Au+s^2}\,A^{1/2}\,\big]\in\mathbb R^{d\times(d+1)} .

    The noise model of this problem is Gaussian with that exact covariance (an NGOS: only the first two
    moments matter for the SDE limit); the test checks :math:`\Sigma` against sampled examples.
    """
    cov = _check_square(feature_covariance, "feature_covariance (A)")
    dim = cov.shape[0]
    target = np.atleast_1d(np.asarray(w_star, dtype=np.float64))
    if target.shape != (dim,) or not np.all(np.isfinite(target)):
        raise ValueError(f"w_star must be a finite vector of length {dim}, got shape {target.shape}")
    s = _check_positive(label_noise, "label_noise (s)", allow_zero=True)
    ws = _coordinates(dim)
    u = sp.Matrix(ws) - _as_float_matrix(target[:, None])
    a_mat = _as_float_matrix(cov)
    quad = sp.expand((u.T * a_mat * u)[0, 0])
    loss = quad / 2 + sp.Float(s) ** 2 / 2
    root = _as_float_matrix(_symmetric_sqrt(cov, "feature_covariance (A)"))
    factor = (a_mat * u).row_join(sp.sqrt(quad + sp.Float(s) ** 2) * root)
    return Problem(
        name=f"linear_regression(d={dim})",
        symbols=ws,
        loss=loss,
        noise_factor=sp.ImmutableMatrix(factor),
        description="population least squares, Gaussian features A, label noise s, single-example gradients",
        parameters={"A": cov.tolist(), "w_star": target.tolist(), "label_noise": s},
    )
