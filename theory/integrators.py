r"""SDE integrators vectorised over paths: Euler–Maruyama, a weak order-2 scheme, exact linear sampling.

Each integrator is a frozen :class:`~theory.simulate.Method` config, so it runs under
:func:`theory.simulate.simulate` and shares normal draws with SGD/SGDM in
:func:`theory.simulate.run_lockstep` (common random numbers).  A step of size :math:`\Delta` receives a
standard normal :math:`z` and uses the Brownian increment :math:`\Delta W=\sqrt\Delta\,z`.

* :class:`EulerMaruyama` — :math:`Y_{k+1}=Y_k+b(Y_k)\Delta+G(Y_k)\Delta W_k`, weak order 1.  Linear SDEs run
  as one matrix product per step (elementwise when :math:`A` and :math:`G` are diagonal), with the noise
  of a whole block scaled in one operation: this is the performance-critical loop of ``bench/bench_sde.py``.
* :class:`WeakOrder2` — the simplified order-2.0 weak Taylor scheme (Kloeden & Platen, *Numerical
  Solution of SDEs*, eq. 14.2.7) with Gaussian increments, for commutative noise
  (:math:`L^{j_1}b^{j_2}=L^{j_2}b^{j_1}`, which makes the auxiliary :math:`V_{j_1j_2}` terms cancel):

  .. math::
      Y_{k+1}=Y_k+a\Delta+\sum_jb^j\Delta W^j+\tfrac12L^0a\,\Delta^2
      +\tfrac12\sum_j\big(L^0b^j+L^ja\big)\Delta W^j\Delta
      +\tfrac12\sum_{j_1,j_2}L^{j_1}b^{j_2}\big(\Delta W^{j_1}\Delta W^{j_2}-\delta_{j_1j_2}\Delta\big),

  with :math:`L^0=a\cdot\nabla+\tfrac12\sum_{k,l}(GG^\top)_{kl}\partial_k\partial_l` and :math:`L^j=b^j\cdot\nabla`
  (:math:`b^j` the :math:`j`-th column of :math:`G`); all derivatives derived with SymPy.
* :class:`ExactLinear` — exact transition of :math:`dY=(AY+a)dt+G\,dW`: :math:`Y_{k+1}=e^{A\Delta}Y_k+c+\xi_k`,
  :math:`\xi_k\sim N(0,Q)` with :math:`Q=\int_0^\Delta e^{As}GG^\top e^{A^\top s}ds` by Van Loan's block
  exponential.  :math:`\xi_k` is sampled **conditionally on the Brownian increment** of the step,
  :math:`\xi=K\Delta W/\Delta+R^{1/2}\zeta`, :math:`K=\operatorname{Cov}(\xi,\Delta W)=\int_0^\Delta e^{Au}du\,G`,
  :math:`R=Q-KK^\top/\Delta`, so the exact sampler is coupled to Euler–Maruyama on the same path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg
import sympy as sp

from theory.problems import vectorize_expressions
from theory.sde import SDE
from theory.simulate import Method
from theory.validation import check_positive

__all__ = ["EulerMaruyama", "ExactLinear", "LinearTransition", "WeakOrder2", "linear_transition"]


def _check_sde(sde: SDE) -> SDE:
    if not isinstance(sde, SDE):
        raise ValueError(f"sde must be a theory.sde.SDE, got {type(sde).__name__}")
    return sde


def _is_diagonal(matrix: np.ndarray) -> bool:
    return matrix.shape[0] == matrix.shape[1] and not np.any(matrix - np.diag(np.diag(matrix)))


class _Integrator(Method):
    sde: SDE
    dt: float

    def _validate(self) -> None:
        _check_sde(self.sde)
        object.__setattr__(self, "dt", check_positive(self.dt, "dt (time step)"))

    @property
    def name(self) -> str:
        return f"{type(self).__name__} on {self.sde.name}"

    @property
    def time_step(self) -> float:
        return self.dt

    @property
    def noise_dim(self) -> int:
        return self.sde.noise_dim

    @property
    def observed_dim(self) -> int:
        return self.sde.observed_dim

    def parameters(self) -> dict:
        return {"dt": self.dt, **self.sde.parameters}

    def initial_state(self, x0: np.ndarray) -> np.ndarray:
        extra = self.sde.dim - x0.shape[1]
        if extra == 0:
            return np.array(x0, dtype=np.float64, order="C", copy=True)
        return np.ascontiguousarray(np.concatenate([x0, np.zeros((x0.shape[0], extra))], axis=1))


@dataclass(frozen=True, eq=False)
class EulerMaruyama(_Integrator):
    r"""Euler–Maruyama :math:`Y_{k+1}=Y_k+b(Y_k)\Delta+G(Y_k)\sqrt\Delta\,z_k` (weak order 1)."""

    sde: SDE
    dt: float

    def __post_init__(self) -> None:
        self._validate()

    @cached_property
    def _linear_plan(self):
        r"""How to run a linear SDE: ``("noise", M, S)`` in noise coordinates, or ``("kicks", M, S, shift)``.

        Rows evolve as :math:`y_{k+1}=y_kM+z_kS+\Delta a` with :math:`M=I+\Delta A^\top`,
        :math:`S=\sqrt\Delta\,G^\top` (vectors instead of matrices when diagonal).  When :math:`a=0` and
        :math:`S` is square and well conditioned, :math:`u=yS^{-1}` obeys :math:`u_{k+1}=u_k(SMS^{-1})+z_k`: the
        normals are added as drawn, with no pass to scale them (the loop touches each normal once).
        """
        linear = self.sde.linear_coefficients
        if linear is None:
            return None
        a_mat, offset, g_mat = linear
        n = a_mat.shape[0]
        root = math.sqrt(self.dt)
        diagonal = _is_diagonal(a_mat) and _is_diagonal(g_mat)
        if diagonal:
            propagator, noise = 1.0 + self.dt * np.diag(a_mat), root * np.diag(g_mat)
        else:
            propagator, noise = np.eye(n) + self.dt * a_mat.T, root * g_mat.T
        if not np.any(offset) and g_mat.shape == (n, n):
            if diagonal and np.all(noise != 0):
                return "noise", propagator, noise
            if not diagonal and np.linalg.cond(noise) < 1e6:
                inverse = np.linalg.inv(noise)
                return "noise", noise @ propagator @ inverse, (inverse, noise)
        return "kicks", propagator, noise, (self.dt * offset if np.any(offset) else None)

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        plan = self._linear_plan
        if plan is not None:
            if plan[0] == "noise":
                self._advance_in_noise_coordinates(state, z, *plan[1:])
            else:
                self._advance_linear(state, z, owns_noise, *plan[1:])
            return
        dt, root = self.dt, math.sqrt(self.dt)
        constant = self.sde.constant_diffusion
        drift, noise = self.sde._drift_fn, self.sde._noise_fn
        if constant is not None:
            kicks = z @ (root * constant.T)
            for j in range(z.shape[0]):
                state += dt * drift(state)
                state += kicks[j]
            return
        for j in range(z.shape[0]):
            increment = noise(state, z[j])
            increment *= root
            increment += dt * drift(state)
            state += increment

    @staticmethod
    def _advance_in_noise_coordinates(state, z, propagator, noise) -> None:
        if propagator.ndim == 1:
            state /= noise
            for j in range(z.shape[0]):
                state *= propagator
                state += z[j]
            state *= noise
            return
        inverse, forward = noise
        state[...] = state @ inverse
        scratch = np.empty_like(state)
        for j in range(z.shape[0]):
            np.matmul(state, propagator, out=scratch)
            np.add(scratch, z[j], out=state)
        state[...] = state @ forward

    @staticmethod
    def _advance_linear(state, z, owns_noise, propagator, noise, shift) -> None:
        # Scale the whole block of normals once; then each step is one product and one add.
        if noise.ndim == 1:
            if owns_noise:
                z *= noise
                kicks = z
            else:
                kicks = z * noise
        else:
            kicks = z @ noise
        if shift is not None:
            kicks += shift
        if propagator.ndim == 1:
            for j in range(kicks.shape[0]):
                state *= propagator
                state += kicks[j]
            return
        scratch = np.empty_like(state)
        for j in range(kicks.shape[0]):
            np.matmul(state, propagator, out=scratch)
            np.add(scratch, kicks[j], out=state)


def _generator_terms(sde: SDE):
    """Symbolic :math:`a`, columns :math:`b^j`, and the operators :math:`L^0`, :math:`L^j` of Kloeden-Platen."""
    ys = sp.Matrix(sde.symbols)
    a = sp.Matrix(sde.drift)
    columns = [sp.Matrix(sde.diffusion[:, j]) for j in range(sde.noise_dim)]
    covariance = sp.Matrix(sde.diffusion) * sp.Matrix(sde.diffusion).T

    def l_zero(f: sp.Matrix) -> sp.Matrix:
        jac = f.jacobian(ys)
        second = sp.Matrix(
            [
                sum(
                    (sp.hessian(f[i], ys)[k, l] * covariance[k, l] for k in range(len(ys)) for l in range(len(ys))),
                    sp.S.Zero,
                )
                for i in range(f.shape[0])
            ]
        )
        return jac * a + second / 2

    def l_j(j: int, f: sp.Matrix) -> sp.Matrix:
        return f.jacobian(ys) * columns[j]

    return a, columns, l_zero, l_j


@dataclass(frozen=True, eq=False)
class WeakOrder2(_Integrator):
    r"""Simplified order-2.0 weak Taylor scheme (Kloeden–Platen 14.2.7) for commutative noise; see the module docstring.

    Raises ``ValueError`` at construction when the noise is not commutative.
    """

    sde: SDE
    dt: float

    def __post_init__(self) -> None:
        self._validate()
        self._increment  # noqa: B018 - builds (and checks commutativity) at construction

    @cached_property
    def _increment(self):
        from theory.sde import _vanishes

        a, columns, l_zero, l_j = _generator_terms(self.sde)
        r = self.sde.noise_dim
        mixed = {(j1, j2): l_j(j1, columns[j2]) for j1 in range(r) for j2 in range(r)}
        for j1 in range(r):
            for j2 in range(j1):
                if not all(_vanishes(e) for e in mixed[(j1, j2)] - mixed[(j2, j1)]):
                    raise ValueError(
                        f"WeakOrder2 needs commutative noise (L^j1 b^j2 = L^j2 b^j1); {self.sde.name} violates it "
                        f"for columns {j1}, {j2}: use EulerMaruyama"
                    )
        ws = sp.symbols(f"_dw0:{r}", real=True)
        h = sp.Float(self.dt)
        increment = a * h + l_zero(a) * h**2 / 2
        for j in range(r):
            increment += columns[j] * ws[j] + (l_zero(columns[j]) + l_j(j, a)) * ws[j] * h / 2
            for j2 in range(r):
                kronecker = h if j == j2 else 0
                increment += mixed[(j, j2)] * (ws[j] * ws[j2] - kronecker) / 2
        evaluate = vectorize_expressions(sp.Matrix(increment), (*self.sde.symbols, *ws))
        return lambda y, w: evaluate(np.concatenate([y, w], axis=1))[:, :, 0]

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        increment, root = self._increment, math.sqrt(self.dt)
        for j in range(z.shape[0]):
            state += increment(state, root * z[j])


@dataclass(frozen=True)
class LinearTransition:
    r"""Exact transition of :math:`dY=(AY+a)dt+G\,dW` over :math:`\Delta`.

    :math:`Y'=\Phi Y+c+\xi`, :math:`\xi\sim N(0,Q)`;

    ``brownian_cross`` is :math:`K=\operatorname{Cov}(\xi,W_\Delta)`.
    """

    propagator: np.ndarray
    offset: np.ndarray
    covariance: np.ndarray
    brownian_cross: np.ndarray


def linear_transition(sde: SDE, dt: float) -> LinearTransition:
    r"""Transition mean map and covariance of a linear SDE by matrix exponentials (Van Loan 1978).

    .. math:: \exp\Big(\begin{bmatrix}-A&GG^\top\\0&A^\top\end{bmatrix}\Delta\Big)
              =\begin{bmatrix}\cdot&F_{12}\\0&F_{22}\end{bmatrix},
              \quad \Phi=F_{22}^\top,\quad Q=\Phi F_{12};\qquad
              \exp\Big(\begin{bmatrix}A&I\\0&0\end{bmatrix}\Delta\Big)=\begin{bmatrix}\Phi&\Psi\\0&I\end{bmatrix},
              \quad c=\Psi a,\quad K=\Psi G .
    """
    _check_sde(sde)
    dt = check_positive(dt, "dt (time step)")
    linear = sde.linear_coefficients
    if linear is None:
        raise ValueError(f"{sde.name} is not linear (state-dependent drift Jacobian or diffusion)")
    a_mat, offset, g_mat = linear
    n = a_mat.shape[0]
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n] = -a_mat
    block[:n, n:] = g_mat @ g_mat.T
    block[n:, n:] = a_mat.T
    exp_block = scipy.linalg.expm(block * dt)
    propagator = exp_block[n:, n:].T
    covariance = propagator @ exp_block[:n, n:]
    integral = np.zeros((2 * n, 2 * n))
    integral[:n, :n] = a_mat
    integral[:n, n:] = np.eye(n)
    psi = scipy.linalg.expm(integral * dt)[:n, n:]
    covariance = (covariance + covariance.T) / 2
    return LinearTransition(propagator, psi @ offset, covariance, psi @ g_mat)


@dataclass(frozen=True, eq=False)
class ExactLinear(_Integrator):
    r"""Exact sampling of a linear SDE, coupled to the Brownian path.

    See the module docstring and :func:`linear_transition`.
    """

    sde: SDE
    dt: float

    def __post_init__(self) -> None:
        self._validate()
        self._plan  # noqa: B018 - raises now if the SDE is not linear

    @cached_property
    def _plan(self):
        transition = linear_transition(self.sde, self.dt)
        root = math.sqrt(self.dt)
        residual = transition.covariance - transition.brownian_cross @ transition.brownian_cross.T / self.dt
        values, vectors = np.linalg.eigh((residual + residual.T) / 2)
        residual_root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
        return (
            transition.propagator.T.copy(),
            transition.offset,
            (transition.brownian_cross / root).T.copy(),
            residual_root.T.copy(),
        )

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        propagator_t, offset, cross_t, residual_t = self._plan
        kicks = z @ cross_t
        kicks += aux.standard_normal(kicks.shape) @ residual_t
        kicks += offset
        scratch = np.empty_like(state)
        for j in range(z.shape[0]):
            np.matmul(state, propagator_t, out=scratch)
            np.add(scratch, kicks[j], out=state)
