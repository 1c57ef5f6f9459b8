r"""SDE limits of SGD, normalized SGDM and SVAG, derived from one-step moments with SymPy.

A discrete method is written as one symbolic step :math:`\Delta=x_{k+1}-x_k` that is affine in a standard
normal vector :math:`z` (:class:`IncrementModel`).  Its one-step moments are then exact:
:math:`\mathbb E\Delta=\mu`, :math:`\mathbb E\Delta\Delta^\top=\mu\mu^\top+SS^\top` with
:math:`S=\partial\Delta/\partial z`.
Two derivations turn moments into an SDE :math:`dY=b(Y)\,dt+G(Y)\,dW`, :math:`GG^\top=D`:

* :func:`derive_sme` — the stochastic modified equations of Li, Tai and E (THEORY.md 3.2, 4.1): with
  :math:`\sigma` fixed and time step :math:`h=\eta`, choose :math:`b=b_0+\eta b_1` and :math:`D=\eta D_1`
  so that the Itô–Taylor moments of the SDE over time :math:`\eta`,
  :math:`\mathbb E\tilde\Delta=\eta b+\tfrac{\eta^2}2(\nabla b)b+O(\eta^3)` and
  :math:`\mathbb E\tilde\Delta\tilde\Delta^\top=\eta^2(bb^\top+D_1)+O(\eta^3)`, match the discrete ones to
  :math:`O(\eta^{p+1})`.  Order 1 gives :math:`b_0=[\eta^1]\mathbb E\Delta`,
  :math:`D_1=[\eta^2]\mathbb E\Delta\Delta^\top-b_0b_0^\top`; order 2 adds
  :math:`b_1=[\eta^2]\mathbb E\Delta-\tfrac12(\nabla b_0)b_0`.
* :func:`derive_limit_sde` — the leading-order limit under the NGOS scaling
  :math:`\sigma^2=\tau/\eta` (:math:`\eta\sigma^2=\tau` fixed; THEORY.md 2.2):
  :math:`b=\lim\mathbb E\Delta/h`, :math:`D=\lim\operatorname{Cov}\Delta/h`.  It gives the SGD SDE, the
  SVAG limit (:math:`h=\eta/\ell`, :math:`\ell\to\infty`) and, for SGDM with :math:`1-\beta=c\eta^\alpha`,
  the underdamped :math:`(X,M)` SDE at :math:`\alpha=1` (THEORY.md 3.5) and frozen momentum at
  :math:`\alpha>1` (THEORY.md 3.6).  At :math:`\alpha<1` the momentum drift :math:`c\eta^{\alpha-1}(\nabla\mathcal L-m)`
  has no limit (momentum is a fast variable); :func:`derive_coupled_limit` then works with the coupled
  variable :math:`y=x-\frac{\eta\beta}{1-\beta}m` of THEORY.md section 8, whose step is exactly SGD's step
  with the gradient taken at :math:`x=y+\frac{\eta\beta}{1-\beta}m`; the gap has size
  :math:`\eta^{(1-\alpha)/2}\to0` (the rate of Theorem 3.5), so the limit is the SGD SDE.

Sign convention: the numerical diffusion factor is the noise slope of the discrete step per
:math:`\sqrt h` (for SGD :math:`G=-\sqrt\eta\,\sigma B`), so that the Brownian increment of a step *is*
:math:`\sqrt h\,z` for the same normal :math:`z` that drives the discrete method; in law this is the
:math:`+\sqrt\eta\,\sigma\Sigma^{1/2}dW` of THEORY.md (only :math:`GG^\top` enters the law).

Numerical SDE objects (:class:`SDE`) are built from these symbolic forms for a concrete
:class:`~theory.problems.Problem` by :func:`sgd_sde`, :func:`sgdm_sde`, :func:`svag_sde`; :func:`linear_sde`
builds an Ornstein–Uhlenbeck process from matrices directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np
import sympy as sp

from theory.params import check_learning_rate
from theory.problems import Problem, vectorize_expressions
from theory.svag import check_svag_factor
from theory.validation import check_positive, check_real

__all__ = [
    "SDE",
    "CoupledLimit",
    "DerivedSDE",
    "IncrementModel",
    "derive_coupled_limit",
    "derive_limit_sde",
    "derive_sme",
    "linear_sde",
    "sgd_increment",
    "sgd_sde",
    "sgdm_increment",
    "sgdm_sde",
    "svag_increment",
    "svag_sde",
]

eta = sp.Symbol("eta", positive=True)
sigma = sp.Symbol("sigma", positive=True)
tau = sp.Symbol("tau", positive=True)  # eta * sigma**2, held fixed by the NGOS scaling
c_sym = sp.Symbol("c", positive=True)
ell = sp.Symbol("ell", positive=True)
_eps = sp.Symbol("_eps", positive=True)


# --- symbolic one-step models ------------------------------------------------------------------------


@dataclass(frozen=True)
class IncrementModel:
    r"""One step :math:`\Delta` of a discrete method, affine in the standard normal symbols ``noise``.

    ``state`` are the state coordinates (:math:`x`, or :math:`(x,m)`), ``time_step`` the continuous time
    :math:`h` one step represents.
    """

    name: str
    state: tuple[sp.Symbol, ...]
    increment: sp.ImmutableMatrix
    noise: tuple[sp.Symbol, ...]
    time_step: sp.Expr

    @cached_property
    def moments(self) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
        r"""Exact :math:`(\mathbb E\Delta,\ \mathbb E\Delta\Delta^\top)` for Gaussian noise (affine step)."""
        at_zero = self.increment.subs(dict.fromkeys(self.noise, 0))
        slope = self.increment.jacobian(sp.Matrix(self.noise))
        residual = sp.simplify(self.increment - at_zero - slope * sp.Matrix(self.noise))
        if residual != sp.zeros(*residual.shape):
            raise ValueError(f"{self.name}: the increment must be affine in the noise symbols")
        mean = sp.ImmutableMatrix(sp.expand(at_zero))
        second = sp.ImmutableMatrix(sp.expand(at_zero * at_zero.T + slope * slope.T))
        return mean, second


def _noise_symbols(prefix: str, count: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.symbols(f"{prefix}0:{count}", real=True))


def sgd_increment(problem: Problem) -> IncrementModel:
    r"""SGD step :math:`\Delta=-\eta\big(\nabla\mathcal L(x)+\sigma B(x)z\big)`, time step :math:`\eta` (THEORY 3.2)."""
    z = _noise_symbols("z", problem.noise_dim)
    step = -eta * (problem.gradient_expr + sigma * problem.noise_factor * sp.Matrix(z))
    return IncrementModel("SGD", problem.symbols, sp.ImmutableMatrix(step), z, eta)


def _momentum_symbols(problem: Problem) -> tuple[sp.Symbol, ...]:
    return tuple(sp.symbols(f"m0:{problem.dim}", real=True))


def sgdm_increment(problem: Problem, alpha: sp.Expr | float) -> IncrementModel:
    r"""Normalized SGDM step (paper eq. (3)) with :math:`1-\beta=c\eta^\alpha`, time step :math:`h=\eta`.

    .. math:: \Delta m=(1-\beta)(g-m),\qquad \Delta x=-\eta\big(m+(1-\beta)(g-m)\big),\qquad
              g=\nabla\mathcal L(x)+\sigma B(x)z .
    """
    m = sp.Matrix(_momentum_symbols(problem))
    z = _noise_symbols("z", problem.noise_dim)
    one_minus_beta = c_sym * eta ** sp.nsimplify(alpha)
    gradient = problem.gradient_expr + sigma * problem.noise_factor * sp.Matrix(z)
    dm = one_minus_beta * (gradient - m)
    dx = -eta * (m + dm)
    return IncrementModel(f"SGDM(alpha={alpha})", (*problem.symbols, *m), sp.ImmutableMatrix(dx.col_join(dm)), z, eta)


def svag_increment(problem: Problem) -> IncrementModel:
    r"""SVAG step (Definition 5.1; THEORY.md 6.1).

    .. math:: \Delta=-\frac\eta\ell\big(\nabla\mathcal L+\sigma B(r_1z^{(1)}+r_2z^{(2)})\big),

    :math:`r_{1,2}=(1\pm\sqrt{2\ell-1})/2`, time step :math:`h=\eta/\ell`.
    """
    z1 = _noise_symbols("z", problem.noise_dim)
    z2 = _noise_symbols("w", problem.noise_dim)
    root = sp.sqrt(2 * ell - 1)
    r1, r2 = (1 + root) / 2, (1 - root) / 2
    noise = problem.noise_factor * (r1 * sp.Matrix(z1) + r2 * sp.Matrix(z2))
    step = -(eta / ell) * (problem.gradient_expr + sigma * noise)
    return IncrementModel("SVAG", problem.symbols, sp.ImmutableMatrix(step), (*z1, *z2), eta / ell)


# --- derivations ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DerivedSDE:
    r"""Symbolic :math:`dY=b\,dt+G\,dW` with :math:`D=GG^\top`, over ``state``; may contain :math:`\eta,\sigma,c`."""

    name: str
    state: tuple[sp.Symbol, ...]
    drift: sp.ImmutableMatrix
    diffusion_covariance: sp.ImmutableMatrix


def _coefficient(matrix: sp.Matrix, power: int) -> sp.ImmutableMatrix:
    return sp.ImmutableMatrix(matrix.applyfunc(lambda entry: sp.expand(entry).coeff(eta, power)))


def derive_sme(model: IncrementModel, order: int = 1) -> DerivedSDE:
    r"""Stochastic modified equation of order 1 or 2 by one-step moment matching (Li, Tai, E; THEORY.md 3.2, 4.1).

    See the module docstring for the matching conditions.  For SGD this yields
    :math:`dX=-\nabla\mathcal L\,dt+\sqrt\eta\,\sigma\Sigma^{1/2}dW` (order 1) and
    :math:`dX=-\nabla\big(\mathcal L+\tfrac\eta4\|\nabla\mathcal L\|^2\big)dt+\sqrt\eta\,\sigma\Sigma^{1/2}dW`
    (order 2).  Requires time step :math:`\eta` and moments polynomial in :math:`\eta`.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if sp.simplify(model.time_step - eta) != 0:
        raise ValueError(f"derive_sme needs time step eta, got {model.time_step}")
    mean, second = model.moments
    for matrix, low in ((mean, 1), (second, 2)):
        for power in range(low):
            if _coefficient(matrix, power) != sp.zeros(*matrix.shape):
                raise ValueError(f"{model.name}: moments must be O(eta^{low}) for an SME")
    b0 = _coefficient(mean, 1)
    d1 = sp.ImmutableMatrix(sp.expand(_coefficient(second, 2) - b0 * b0.T))
    drift = b0
    if order == 2:
        jacobian = b0.jacobian(sp.Matrix(model.state))
        b1 = sp.expand(_coefficient(mean, 2) - jacobian * b0 / 2)
        drift = sp.ImmutableMatrix(b0 + eta * b1)
    return DerivedSDE(f"{model.name} SME{order}", model.state, drift, sp.ImmutableMatrix(eta * d1))


def _leading_limit(expr: sp.Expr, variable: sp.Symbol, at_infinity: bool) -> sp.Expr:
    """Limit of a sum of monomials in ``variable`` (rational powers) as it tends to 0 or infinity."""
    expr = sp.expand(expr)
    powers = [p for term in sp.Add.make_args(expr) for p in (term.as_coeff_exponent(variable)[1],)]
    denominators = [sp.Rational(p).q for p in powers if p.is_Rational] or [1]
    q = int(sp.ilcm(*denominators)) if len(denominators) > 1 else denominators[0]
    substituted = sp.expand(expr.subs(variable, (1 / _eps if at_infinity else _eps) ** q))
    limit = sp.Integer(0)
    for term in sp.Add.make_args(substituted):
        coefficient, power = term.as_coeff_exponent(_eps)
        if power.free_symbols or not power.is_Rational:
            raise ValueError(f"cannot take the limit of {term}")
        if power < 0 and sp.simplify(coefficient) != 0:
            raise ValueError(f"no finite limit: term {term} diverges")
        if power == 0:
            limit += coefficient
    return sp.simplify(limit)


def derive_limit_sde(model: IncrementModel, variable: sp.Symbol = eta, at_infinity: bool = False) -> DerivedSDE:
    r"""Leading-order SDE :math:`b=\lim\mathbb E\Delta/h`, :math:`D=\lim\operatorname{Cov}\Delta/h` (THEORY.md 3.3-6.2).

    Taken as ``variable`` tends to 0 (or to infinity with ``at_infinity``, e.g. SVAG's :math:`\ell`),
    under the NGOS scaling :math:`\sigma^2=\tau/\eta`; the result is written back with
    :math:`\tau=\eta\sigma^2`.  Raises ``ValueError`` when a coefficient has no finite limit (SGDM at
    :math:`\alpha<1`: use :func:`derive_coupled_limit`).
    """
    mean, second = model.moments
    scaling = {sigma: sp.sqrt(tau / eta)}
    h = model.time_step
    drift_ratio = (mean / h).subs(scaling)
    cov_ratio = ((second - mean * mean.T) / h).subs(scaling)
    try:
        drift = drift_ratio.applyfunc(lambda e: _leading_limit(e, variable, at_infinity))
        cov = cov_ratio.applyfunc(lambda e: _leading_limit(e, variable, at_infinity))
    except ValueError as exc:
        raise ValueError(f"{model.name}: one-step moments have no SDE limit ({exc})") from exc
    back = {tau: eta * sigma**2}
    return DerivedSDE(
        f"{model.name} limit", model.state, sp.ImmutableMatrix(drift.subs(back)), sp.ImmutableMatrix(cov.subs(back))
    )


@dataclass(frozen=True)
class CoupledLimit:
    r"""SGDM at :math:`\alpha<1` through the coupled variable :math:`y=x-\kappa m`, :math:`\kappa=\eta\beta/(1-\beta)`.

    ``coupled_step_residual`` is :math:`\Delta y+\eta g` (zero: the step of :math:`y` is SGD's),
    ``gap_scale`` the typical size :math:`\kappa\sqrt{\operatorname{Var}m}` of :math:`x-y` at frozen
    :math:`x`, ``gap_exponent`` its power of :math:`\eta` under :math:`\sigma=\eta^{-1/2}`, and ``sde`` the
    limit of the :math:`y` process.
    """

    alpha: sp.Expr
    coupled_step_residual: sp.ImmutableMatrix
    momentum_variance_factor: sp.Expr
    gap_scale: sp.Expr
    gap_exponent: sp.Expr
    sde: DerivedSDE


def derive_coupled_limit(problem: Problem, alpha: float) -> CoupledLimit:
    r"""SDE limit of SGDM with :math:`1-\beta=c\eta^\alpha`, :math:`0\le\alpha<1` (Theorem 3.5; THEORY.md 3.3, 8).

    1. With :math:`\kappa=\eta\beta/(1-\beta)`, :math:`y=x-\kappa m` obeys :math:`\Delta y=-\eta g` exactly.
    2. At frozen :math:`x`, :math:`m_{k+1}=\beta m_k+(1-\beta)g_k` has stationary variance
       :math:`v\,\sigma^2\Sigma` with :math:`v=(1-\beta)^2/(1-\beta^2)` (solved from :math:`v=\beta^2v+(1-\beta)^2`).
    3. The gap :math:`x-y=\kappa m` is of size :math:`\kappa\sqrt v\,\sigma\propto\eta^{(1-\alpha)/2}` under
       :math:`\sigma=\eta^{-1/2}`, so for :math:`\alpha<1` the gradient at :math:`x` tends to the gradient at
       :math:`y` and the :math:`y` process has the SGD limit
       :math:`dY=-\nabla\mathcal L\,dt+\sqrt\eta\sigma\Sigma^{1/2}dW`.
    """
    alpha_sym = sp.nsimplify(alpha)
    if not (0 <= alpha_sym < 1):
        raise ValueError(f"alpha must lie in [0, 1) for the coupled limit, got {alpha!r}")
    model = sgdm_increment(problem, alpha_sym)
    d = problem.dim
    beta = 1 - c_sym * eta**alpha_sym
    kappa = eta * beta / (1 - beta)
    dx, dm = model.increment[:d, 0], model.increment[d:, 0]
    z = sp.Matrix(model.noise)
    gradient = problem.gradient_expr + sigma * problem.noise_factor * z
    residual = sp.ImmutableMatrix(sp.simplify(dx - kappa * dm + eta * gradient))
    v = sp.Symbol("v", positive=True)
    (variance_factor,) = sp.solve(sp.Eq(v, beta**2 * v + (1 - beta) ** 2), v)
    gap = sp.simplify((kappa * sp.sqrt(variance_factor) * sigma).subs(sigma, eta ** sp.Rational(-1, 2)))
    exponent = sp.simplify(sp.limit(sp.log(gap) / sp.log(eta), eta, 0))
    sde = derive_limit_sde(sgd_increment(problem))
    return CoupledLimit(alpha_sym, residual, sp.simplify(variance_factor), gap, exponent, sde)


# --- numerical SDE objects -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SDE:
    r"""An autonomous Itô SDE :math:`dY=b(Y)\,dt+G(Y)\,dW` on :math:`\mathbb R^n` with :math:`W\in\mathbb R^r`.

    ``drift`` is :math:`n\times1`, ``diffusion`` :math:`n\times r`, both SymPy expressions of ``symbols``
    with numbers substituted for every parameter.  The first ``observed_dim`` coordinates are the
    parameter :math:`x` (the rest, if any, the momentum).  Numerical evaluation is vectorised over paths
    and compiled once; linear SDEs (constant drift Jacobian and diffusion) are detected and evaluated as
    matrix products.
    """

    name: str
    symbols: tuple[sp.Symbol, ...]
    drift: sp.ImmutableMatrix
    diffusion: sp.ImmutableMatrix
    observed_dim: int = 0
    parameters: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        drift = sp.ImmutableMatrix(self.drift)
        diffusion = sp.ImmutableMatrix(self.diffusion)
        n = len(self.symbols)
        if drift.shape != (n, 1):
            raise ValueError(f"drift must have shape ({n}, 1), got {drift.shape}")
        if diffusion.shape[0] != n:
            raise ValueError(f"diffusion must have {n} rows, got {diffusion.shape}")
        stray = (drift.free_symbols | diffusion.free_symbols) - set(self.symbols)
        if stray:
            raise ValueError(f"{self.name}: unsubstituted parameters {sorted(map(str, stray))} in drift/diffusion")
        object.__setattr__(self, "drift", drift)
        object.__setattr__(self, "diffusion", diffusion)
        observed = self.observed_dim or n
        if not (0 < observed <= n):
            raise ValueError(f"observed_dim must lie in [1, {n}], got {self.observed_dim}")
        object.__setattr__(self, "observed_dim", observed)

    @property
    def dim(self) -> int:
        return len(self.symbols)

    @property
    def noise_dim(self) -> int:
        return self.diffusion.shape[1]

    @cached_property
    def linear_coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        r""":math:`(A, a, G)` with :math:`b(y)=Ay+a` and constant :math:`G`, or ``None`` if the SDE is not linear."""
        jacobian = self.drift.jacobian(sp.Matrix(self.symbols))
        if jacobian.free_symbols or self.diffusion.free_symbols:
            return None
        offset = self.drift.subs(dict.fromkeys(self.symbols, 0))
        return (
            np.array(jacobian.tolist(), dtype=np.float64),
            np.array(offset.T.tolist(), dtype=np.float64)[0],
            np.array(self.diffusion.tolist(), dtype=np.float64),
        )

    @cached_property
    def constant_diffusion(self) -> np.ndarray | None:
        """:math:`G` as an array when it does not depend on the state, else ``None``."""
        if self.diffusion.free_symbols:
            return None
        return np.array(self.diffusion.tolist(), dtype=np.float64)

    @cached_property
    def _drift_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        linear = self.linear_coefficients
        if linear is not None:
            a_t, offset = linear[0].T.copy(), linear[1]
            if np.any(offset != 0.0):
                return lambda y: y @ a_t + offset
            return lambda y: y @ a_t
        evaluate = vectorize_expressions(self.drift, self.symbols)
        return lambda y: evaluate(y)[:, :, 0]

    @cached_property
    def _noise_fn(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        constant = self.constant_diffusion
        if constant is not None:
            g_t = constant.T.copy()
            return lambda y, w: w @ g_t
        ws = _noise_symbols("_w", self.noise_dim)
        product = vectorize_expressions(self.diffusion * sp.Matrix(ws), (*self.symbols, *ws))
        return lambda y, w: product(np.concatenate([y, w], axis=1))[:, :, 0]

    def drift_at(self, y: np.ndarray) -> np.ndarray:
        """:math:`b(y)` for ``y`` of shape ``(N, n)``."""
        return self._drift_fn(y)

    @cached_property
    def _diffusion_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        return vectorize_expressions(self.diffusion, self.symbols)

    def diffusion_at(self, y: np.ndarray) -> np.ndarray:
        """:math:`G(y)`, shape ``(N, n, r)``."""
        return self._diffusion_fn(y)

    def apply_diffusion(self, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """:math:`G(y)w` row by row, ``w`` of shape ``(N, r)``."""
        return self._noise_fn(y, w)


def _substitute(matrix: sp.Matrix, values: dict) -> sp.ImmutableMatrix:
    return sp.ImmutableMatrix(matrix.subs({k: sp.Float(v) for k, v in values.items()}))


def _canonical_sigma(eta_value: float, sigma_value: float | None) -> float:
    if sigma_value is None:
        return eta_value**-0.5
    return check_real(sigma_value, "sigma (noise scale)", low=0.0)


def _vanishes(expr: sp.Expr, tolerance: float = 1e-10) -> bool:
    """True when ``expr`` simplifies to 0 up to float round-off in its numeric coefficients."""
    terms = sp.Add.make_args(sp.expand(sp.simplify(expr)))
    return all(
        term == 0 or (term.as_coeff_Mul()[0].is_Float and abs(term.as_coeff_Mul()[0]) < tolerance) for term in terms
    )


def _check_factor(derived: DerivedSDE, factor: sp.Matrix) -> None:
    """The diffusion factor must reproduce the derived covariance: :math:`GG^\\top=D`."""
    gap = factor * factor.T - derived.diffusion_covariance
    if not all(_vanishes(entry) for entry in gap):
        raise AssertionError(f"{derived.name}: diffusion factor does not reproduce D (residual {gap})")


@cache
def _sgd_forms(problem: Problem, order: int) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
    derived = derive_sme(sgd_increment(problem), order)
    factor = -sp.sqrt(eta) * sigma * problem.noise_factor
    _check_factor(derived, factor)
    return derived.drift, sp.ImmutableMatrix(factor)


def sgd_sde(problem: Problem, eta_value: float, sigma_value: float | None = None, order: int = 1) -> SDE:
    r"""SME of SGD (THEORY.md 4.1), derived by :func:`derive_sme`, with time :math:`t=k\eta`.

    .. math:: dX=-\nabla\Big(\mathcal L+[p=2]\,\tfrac\eta4\|\nabla\mathcal L\|^2\Big)dt-\sqrt\eta\,\sigma\,B(X)\,dW

    ``sigma_value=None`` is the canonical :math:`\sigma=\eta^{-1/2}` (THEORY.md 2.2).  The factor carries the
    sign of the noise in the SGD step (:math:`-\eta\sigma Bz`), so that :math:`W` *is* the Brownian path of
    the discrete normals, :math:`\Delta W=\sqrt\eta\,z`, and common random numbers couple SGD and the
    SDE positively; in law it is THEORY.md's :math:`+\sqrt\eta\sigma\Sigma^{1/2}dW` (only :math:`GG^\top` matters).
    """
    eta_value = check_learning_rate(eta_value, "eta (learning rate)")
    sigma_value = _canonical_sigma(eta_value, sigma_value)
    drift, factor = _sgd_forms(problem, order)
    values = {eta: eta_value, sigma: sigma_value}
    return SDE(
        f"SGD SME{order} on {problem.name}",
        problem.symbols,
        _substitute(drift, values),
        _substitute(factor, values),
        parameters={"eta": eta_value, "sigma": sigma_value, "order": order},
    )


def svag_sde(problem: Problem, eta_value: float, sigma_value: float | None = None, ell_value: float = 1.0) -> SDE:
    r"""SDE that SVAG converges to as :math:`\ell\to\infty` (THEORY.md 6.2-6.3), derived by :func:`derive_limit_sde`.

    It is the first-order SGD SME for every :math:`\ell`: :math:`dX=-\nabla\mathcal L\,dt+\sqrt\eta\,\sigma B\,dW`.
    """
    check_svag_factor(ell_value)
    derived = _svag_forms(problem)
    sde = sgd_sde(problem, eta_value, sigma_value, order=1)
    if sp.simplify(derived.drift + problem.gradient_expr) != sp.zeros(problem.dim, 1):
        raise AssertionError("SVAG limit drift differs from the SGD SME drift")
    return SDE(f"SVAG limit on {problem.name}", sde.symbols, sde.drift, sde.diffusion, parameters=sde.parameters)


@cache
def _svag_forms(problem: Problem) -> DerivedSDE:
    derived = derive_limit_sde(svag_increment(problem), variable=ell, at_infinity=True)
    _check_factor(derived, -sp.sqrt(eta) * sigma * problem.noise_factor)
    return derived


_coupled_limit = cache(derive_coupled_limit)


@cache
def _sgdm_forms(problem: Problem, alpha: sp.Rational) -> tuple[sp.ImmutableMatrix, sp.ImmutableMatrix]:
    derived = derive_limit_sde(sgdm_increment(problem, alpha))
    d = problem.dim
    if alpha == 1:
        factor = sp.zeros(d, problem.noise_dim).col_join(c_sym * sp.sqrt(eta) * sigma * problem.noise_factor)
    else:
        factor = sp.zeros(2 * d, problem.noise_dim)
    _check_factor(derived, factor)
    return derived.drift, sp.ImmutableMatrix(factor)


def sgdm_sde(
    problem: Problem,
    eta_value: float,
    alpha: float,
    c: float = 1.0,
    sigma_value: float | None = None,
) -> SDE:
    r"""SDE limit of normalized SGDM with :math:`1-\beta=c\,\eta^\alpha`, time :math:`t=k\eta` (THEORY.md 3.3-3.6).

    * :math:`\alpha<1`: the SGD SDE :math:`dX=-\nabla\mathcal L\,dt+\sqrt\eta\sigma B\,dW` (Theorem 3.5; via
      :func:`derive_coupled_limit`); the state is :math:`x` alone.
    * :math:`\alpha=1`: :math:`dX=-M\,dt,\ dM=c(\nabla\mathcal L(X)-M)\,dt+c\sqrt\eta\,\sigma B(X)\,dW`
      (THEORY.md 3.5); state :math:`(x,m)`.
    * :math:`\alpha>1`: :math:`dX=-M\,dt,\ dM=0` (frozen momentum, THEORY.md 3.6); state :math:`(x,m)`.
    """
    eta_value = check_learning_rate(eta_value, "eta (learning rate)")
    alpha_value = check_real(alpha, "alpha (momentum-scaling index)", low=0.0)
    c = check_positive(c, "c (momentum scaling constant)")
    sigma_value = _canonical_sigma(eta_value, sigma_value)
    alpha_sym = sp.nsimplify(alpha_value)
    if alpha_sym < 1:
        _coupled_limit(problem, alpha_sym)  # the derivation that licenses the SGD SDE
        sde = sgd_sde(problem, eta_value, sigma_value, order=1)
        params = {**sde.parameters, "alpha": alpha_value, "c": c}
        return SDE(
            f"SGDM(alpha={alpha_value}) limit = SGD SDE on {problem.name}",
            sde.symbols,
            sde.drift,
            sde.diffusion,
            parameters=params,
        )
    drift, factor = _sgdm_forms(problem, alpha_sym)
    values = {eta: eta_value, sigma: sigma_value, c_sym: c}
    return SDE(
        f"SGDM(alpha={alpha_value}) limit on {problem.name}",
        (*problem.symbols, *_momentum_symbols(problem)),
        _substitute(drift, values),
        _substitute(factor, values),
        observed_dim=problem.dim,
        parameters={"eta": eta_value, "sigma": sigma_value, "alpha": alpha_value, "c": c},
    )


def linear_sde(
    drift_matrix: np.ndarray, diffusion: np.ndarray, offset: np.ndarray | None = None, name: str = "linear SDE"
) -> SDE:
    r"""Linear (Ornstein–Uhlenbeck) SDE :math:`dY=(AY+a)\,dt+G\,dW` from matrices.

    ``drift_matrix`` :math:`A` is :math:`n\times n`, ``diffusion`` :math:`G` is :math:`n\times r`,
    ``offset`` :math:`a` defaults to 0.  Example: :math:`A=-\theta I`, :math:`G=sI` is the isotropic OU process.
    """
    a_mat = np.atleast_2d(np.asarray(drift_matrix, dtype=np.float64))
    n = a_mat.shape[0]
    if a_mat.shape != (n, n) or not np.all(np.isfinite(a_mat)):
        raise ValueError(f"drift_matrix must be a finite square matrix, got shape {a_mat.shape}")
    g_mat = np.asarray(diffusion, dtype=np.float64)
    if g_mat.ndim == 0:
        g_mat = g_mat * np.eye(n)
    g_mat = np.atleast_2d(g_mat)
    if g_mat.shape[0] != n or g_mat.ndim != 2 or not np.all(np.isfinite(g_mat)):
        raise ValueError(f"diffusion must be a finite ({n}, r) matrix, got shape {g_mat.shape}")
    a_vec = np.zeros(n) if offset is None else np.asarray(offset, dtype=np.float64).reshape(-1)
    if a_vec.shape != (n,) or not np.all(np.isfinite(a_vec)):
        raise ValueError(f"offset must be a finite vector of length {n}, got shape {a_vec.shape}")
    ys = tuple(sp.symbols(f"y0:{n}", real=True))
    drift = sp.ImmutableMatrix(a_mat.tolist()) * sp.Matrix(ys) + sp.ImmutableMatrix(a_vec[:, None].tolist())
    return SDE(name, ys, sp.ImmutableMatrix(drift), sp.ImmutableMatrix(g_mat.tolist()))
