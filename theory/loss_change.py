r"""Lemma 2.4: the one-step expected loss change of SGD, split into descent, curvature and noise terms.

For SGD :math:`x_{k+1}=x_k-\eta g_k` with an NGOS gradient :math:`g=\nabla\mathcal L(x)+\sigma v`,
:math:`\mathbb Ev=0`, :math:`\operatorname{Cov}v=\Sigma` (THEORY.md 2.1, 2.3),

.. math::
    \mathbb E[\mathcal L(x_{k+1})\mid x_k]=\mathcal L(x_k)-\eta\|\nabla\mathcal L\|^2
    +\frac{\eta^2}{2}\Big(
    \underbrace{\nabla\mathcal L^\top\nabla^2\mathcal L\,\nabla\mathcal L}_{\text{curvature-induced}}
    +\underbrace{\sigma^2\operatorname{tr}(\nabla^2\mathcal L\,\Sigma)}_{\text{noise-induced}}\Big)
    +O\big(\eta^3(1+\sigma^3)\big).

The expansion is derived here with SymPy for a generic smooth loss (:func:`derive_one_step_expansion`);
the lemma's wording in the paper is reconstructed ([R]), the expansion itself is [D].  Under SVAG
(Definition 5.1) with frozen :math:`x`, :math:`\ell` steps at :math:`\eta/\ell` with noise covariance
:math:`\ell\sigma^2\Sigma` keep the descent and noise terms and divide the curvature term by :math:`\ell`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy as sp

from theory.params import check_learning_rate
from theory.svag import check_svag_factor

__all__ = ["LossChangeTerms", "derive_one_step_expansion", "lemma_2_4_terms", "svag_lemma_2_4_terms"]


@dataclass(frozen=True)
class LossChangeTerms:
    r"""The three terms of Lemma 2.4 (already multiplied by :math:`-\eta` and :math:`\eta^2/2`)."""

    descent: float
    curvature: float
    noise: float

    @property
    def total(self) -> float:
        """Second-order prediction of :math:`\\mathbb E[\\mathcal L(x_{k+1})]-\\mathcal L(x_k)`."""
        return self.descent + self.curvature + self.noise

    @property
    def curvature_to_noise(self) -> float:
        """Regime indicator: > 1 means curvature-induced instability dominates (momentum can matter)."""
        return self.curvature / self.noise if self.noise > 0 else float("inf")


def _as_arrays(grad, hess, noise_cov) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.atleast_1d(np.asarray(grad, dtype=np.float64))
    h = np.atleast_2d(np.asarray(hess, dtype=np.float64))
    c = np.atleast_2d(np.asarray(noise_cov, dtype=np.float64))
    d = g.shape[0]
    if g.ndim != 1 or h.shape != (d, d) or c.shape != (d, d):
        raise ValueError(f"need grad (d,), hess (d, d), noise_cov (d, d); got {g.shape}, {h.shape}, {c.shape}")
    for name, arr in (("grad", g), ("hess", h), ("noise_cov", c)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite")
    return g, h, c


def lemma_2_4_terms(grad, hess, noise_cov, eta: float) -> LossChangeTerms:
    r"""Lemma 2.4's terms at one point, with ``noise_cov`` the total gradient-noise covariance :math:`\sigma^2\Sigma`.

    .. math:: -\eta\|\nabla\mathcal L\|^2,\qquad \tfrac{\eta^2}{2}\nabla\mathcal L^\top H\nabla\mathcal L,
              \qquad \tfrac{\eta^2}{2}\operatorname{tr}(H\,\sigma^2\Sigma)
    """
    eta = check_learning_rate(eta, "eta (learning rate)")
    g, h, c = _as_arrays(grad, hess, noise_cov)
    return LossChangeTerms(
        descent=float(-eta * g @ g),
        curvature=float(0.5 * eta**2 * g @ h @ g),
        noise=float(0.5 * eta**2 * np.trace(h @ c)),
    )


def svag_lemma_2_4_terms(grad, hess, noise_cov, eta: float, ell: float) -> LossChangeTerms:
    r"""Lemma 2.4's terms summed over :math:`\ell` SVAG steps at frozen :math:`x` (THEORY.md 2.3).

    Each step has learning rate :math:`\eta/\ell` and noise covariance :math:`\ell\sigma^2\Sigma`, so

    .. math:: \ell\cdot\Big(-\tfrac{\eta}{\ell}\|\nabla\mathcal L\|^2
              +\tfrac{\eta^2}{2\ell^2}\big(\nabla\mathcal L^\top H\nabla\mathcal L
              +\ell\operatorname{tr}(H\sigma^2\Sigma)\big)\Big)
              =-\eta\|\nabla\mathcal L\|^2+\tfrac{\eta^2}{2\ell}\nabla\mathcal L^\top H\nabla\mathcal L
              +\tfrac{\eta^2}{2}\operatorname{tr}(H\sigma^2\Sigma).
    """
    ell = check_svag_factor(ell)
    per_step = lemma_2_4_terms(grad, hess, ell * np.asarray(noise_cov, dtype=np.float64), eta / ell)
    return LossChangeTerms(ell * per_step.descent, ell * per_step.curvature, ell * per_step.noise)


@cache
def derive_one_step_expansion(dim: int = 2) -> dict[str, sp.Expr]:
    r"""SymPy derivation of :math:`\mathbb E\,\mathcal L(x-\eta g)` to second order for a generic smooth loss.

    :math:`\mathcal L` is an undefined function of ``dim`` variables; the noise :math:`v` has
    :math:`\mathbb Ev=0`, :math:`\mathbb Evv^\top=\Sigma` (symbols) and vanishing third moments (symmetric
    noise), so the :math:`\eta^3` coefficient holds only :math:`\nabla\mathcal L` terms and
    :math:`\sigma^2` terms.  Returns the Taylor coefficients ``order0``, ``order1``, ``order2``, ``order3``
    of :math:`\mathbb E\,\mathcal L(x-\eta g)` in :math:`\eta`, and the lemma's ``descent``, ``curvature``
    and ``noise`` terms written from the gradient and Hessian of :math:`\mathcal L`.
    """
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    xs = sp.symbols(f"x1:{dim + 1}", real=True)
    vs = sp.symbols(f"v1:{dim + 1}", real=True)
    eta, sigma = sp.symbols("eta sigma", positive=True)
    cov = sp.Matrix(dim, dim, lambda i, j: sp.Symbol(f"Sigma{min(i, j) + 1}{max(i, j) + 1}", real=True))
    loss = sp.Function("L")(*xs)
    grad = sp.Matrix([sp.diff(loss, x) for x in xs])
    hess = sp.hessian(loss, xs)
    # The step direction is frozen while differentiating: d^n/d eta^n L(x - eta u) = (-u . grad)^n L,
    # with u a constant vector, substituted by the stochastic gradient only afterwards.
    us = sp.symbols(f"u1:{dim + 1}", real=True)
    stochastic_gradient = {u: grad[i] + sigma * vs[i] for i, u in enumerate(us)}
    coefficients = []
    term = loss
    for order in range(4):
        at_gradient = sp.expand((term / sp.factorial(order)).subs(stochastic_gradient, simultaneous=True))
        coefficients.append(_expect(at_gradient, vs, cov))
        term = -sum(u * sp.diff(term, x) for u, x in zip(us, xs, strict=True))
    return {
        "order0": coefficients[0],
        "order1": coefficients[1] * eta,
        "order2": coefficients[2] * eta**2,
        "order3": coefficients[3] * eta**3,
        "descent": -eta * (grad.T * grad)[0],
        "curvature": eta**2 / 2 * (grad.T * hess * grad)[0],
        "noise": eta**2 / 2 * sigma**2 * (hess * cov).trace(),
    }


def _expect(expr: sp.Expr, vs: tuple[sp.Symbol, ...], cov: sp.Matrix) -> sp.Expr:
    """Expectation of a polynomial in the noise ``vs``: E v_i = 0, E v_i v_j = cov_ij, odd moments 0.

    Fourth and higher moments never reach the second-order coefficient; in the third-order coefficient
    only moments up to order three appear, so mapping degree >= 3 monomials to 0 is exact up to order 3.
    """
    poly = sp.Poly(expr, *vs)
    total = sp.Integer(0)
    for powers, coeff in poly.terms():
        degree = sum(powers)
        if degree == 0:
            total += coeff
        elif degree == 2:
            idx = [i for i, p in enumerate(powers) for _ in range(p)]
            total += coeff * cov[idx[0], idx[1]]
    return sp.simplify(total)
