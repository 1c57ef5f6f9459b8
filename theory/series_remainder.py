r"""An explicit bound on the remainder of the :math:`\eta`-series of the stationary variance (SymPy-derived).

On :math:`\mathcal L=\tfrac h2x^2` with additive noise of variance :math:`s^2`, normalized SGDM (paper eq. (3); SGD
at :math:`\beta=0`) has the exact stationary variance :math:`V(\eta)` of
:func:`theory.quadratic_symbolic.stationary_variance_symbolic` and the series of
:func:`theory.quadratic_symbolic.stationary_series` (THEORY.md 5.5).  With :math:`T_n(\eta)` the series up to
:math:`\eta^n`, this module derives a constant :math:`K_n(\beta)` such that

.. math:: |V(\eta)-T_n(\eta)|\le K_n(\beta)\,h^{n-1}s^2\,\eta^{n+1}\qquad\text{for }0<\eta h\le u_{\max},

and proves it, in three steps, from the derived expressions (nothing is typed in):

1. :math:`\rho=(V-T_n)/(h^{n-1}s^2\eta^{n+1})` depends on :math:`\eta` and :math:`h` only through :math:`u=\eta h`
   (checked: after :math:`\eta=u/h` no :math:`h`, :math:`s` or :math:`\eta` is left);
2. :math:`\rho(0,\beta)\ge0` and :math:`\partial\rho/\partial u\ge0` on the box :math:`[0,u_{\max}]\times[0,1]` of
   :math:`(u,\beta)`: each factor of the factored expression is an even power, or multilinear in :math:`(u,\beta)`
   with one sign at the four vertices (hence on the box), and the signs multiply to :math:`\ge0`;
3. so :math:`0\le\rho\le\rho(u_{\max})=K_n` for :math:`0<u\le u_{\max}`: :math:`|V-T_n|=V-T_n` and the
   supremum is attained at :math:`u_{\max}`.

For :math:`n=2`, :math:`u_{\max}=\tfrac12` (the catalogue's ``series_remainder`` of :mod:`proofs_check.bounds`):
:math:`\rho=\frac{r^2}{8(1-ru/2)}`, :math:`r=\frac{1-\beta}{1+\beta}`, and

.. math:: K_2(\beta)=\frac{(1-\beta)^2}{2(1+\beta)(3+5\beta)},\qquad K_2(0)=\tfrac16 .

The bound is attained at :math:`\eta h=u_{\max}`: it cannot be improved on that range, and it fails beyond it
(the negative control ``control.series_bound_whole_region``).  For a matrix :math:`H` and any :math:`\Sigma` the
diagonal of the stationary covariance in the eigenbasis of :math:`H` is the 1-D variance with :math:`h=h_i`,
:math:`s^2=S_{ii}=(V^\top\Sigma V)_{ii}`, so the bound applies per eigen-direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from theory.forms import beta, eta
from theory.quadratic_symbolic import h, s, stationary_series, stationary_variance_symbolic
from theory.validation import check_positive_int

__all__ = ["SeriesRemainderBound", "series_remainder_bound"]

#: :math:`u=\eta h`, the variable of the remainder ratio.
eta_h = sp.Symbol("u", nonnegative=True)


@dataclass(frozen=True)
class SeriesRemainderBound:
    r"""The derived bound :math:`|V-T_n|\le K_n(\beta)h^{n-1}s^2\eta^{n+1}` on :math:`0<\eta h\le u_{\max}`.

    ``ratio`` is :math:`\rho(u,\beta)=(V-T_n)/(h^{n-1}s^2\eta^{n+1})` in the symbols ``u`` (:data:`eta_h`) and
    ``beta``; ``constant`` is :math:`K_n(\beta)=\rho(u_{\max},\beta)`; ``model`` is ``"sgdm"`` (eq. (3); SGD at
    :math:`\beta=0`) or ``"sgd"`` (then ``constant`` does not depend on :math:`\beta`).
    """

    model: str
    order: int
    eta_h_max: sp.Expr
    ratio: sp.Expr
    constant: sp.Expr

    def __call__(self, beta_value: float = 0.0) -> float:
        """:math:`K_n(\\beta)` as a float."""
        return float(self.constant.subs(beta, beta_value))

    def latex(self) -> str:
        """The statement in LaTeX."""
        n = self.order
        power = "" if n == 1 else ("h" if n == 2 else f"h^{{{n - 1}}}")
        return (
            rf"|V(\eta)-T_{{{n}}}(\eta)|\le K_{{{n}}}\,{power}s^2\eta^{{{n + 1}}},\quad "
            rf"K_{{{n}}}={sp.latex(self.constant)},\quad 0<\eta h\le{sp.latex(self.eta_h_max)}"
        )


def _sign_on_box(factor: sp.Expr, box: dict[sp.Symbol, tuple[sp.Expr, sp.Expr]]) -> int:
    """+1 (>= 0) or -1 (<= 0) for a polynomial factor on the box; decided exactly for multilinear factors, whose
    extremes on a box are at its vertices.  0 if the factor changes sign there."""
    poly = sp.Poly(factor, *box)
    if any(degree > 1 for degree in poly.degree_list()):
        raise NotImplementedError(f"the sign of the non-multilinear factor {factor} on the box is not decided here")
    vertices: list[dict[sp.Symbol, sp.Expr]] = [{}]
    for symbol, (low, high) in box.items():
        vertices = [{**v, symbol: end} for v in vertices for end in (low, high)]
    values = [sp.nsimplify(factor.subs(v)) for v in vertices]
    if all(value >= 0 for value in values):
        return 1
    if all(value <= 0 for value in values):
        return -1
    return 0


def _nonnegative_rational(expr: sp.Expr, box: dict[sp.Symbol, tuple[sp.Expr, sp.Expr]]) -> bool:
    """Whether a rational function is >= 0 on the box (where defined), from the signs of its factors."""
    numerator, denominator = sp.fraction(sp.factor(sp.together(expr)))
    sign = 1
    for part in (numerator, denominator):
        coefficient, factors = sp.factor_list(part, *box)
        sign *= 1 if coefficient > 0 else -1
        for base, exponent in factors:
            if exponent % 2:
                sign *= _sign_on_box(base, box)
    return sign > 0


@cache
def series_remainder_bound(
    order: int = 2, eta_h_max: object = sp.Rational(1, 2), model: str = "sgdm"
) -> SeriesRemainderBound:
    r"""Derive and prove :math:`K_n` with :math:`|V-T_n|\le K_nh^{n-1}s^2\eta^{n+1}` for :math:`0<\eta h\le u_{\max}`.

    ``order`` :math:`n\ge1` is the last power of :math:`\eta` kept in the series; ``eta_h_max`` is :math:`u_{\max}`,
    in :math:`(0,2)` (SGD's stability threshold, the smallest of all :math:`\beta`); ``model`` ``"sgdm"`` (paper eq.
    (3); :math:`\beta` symbolic) or ``"sgd"``.  Raises ``ValueError`` for bad arguments and ``ArithmeticError`` if
    a step of the proof fails (the ratio depends on more than :math:`\eta h`, or is not monotone).  Cached.
    """
    order = check_positive_int(order, "order (last power of eta kept)")
    if model not in ("sgd", "sgdm"):
        raise ValueError(f"model must be 'sgd' or 'sgdm', got {model!r}")
    u_max = sp.nsimplify(eta_h_max)
    if not (u_max.is_number and 0 < u_max < 2):
        raise ValueError(f"eta_h_max must be a number in (0, 2) (SGD's stability threshold), got {eta_h_max!r}")
    variance = stationary_variance_symbolic(model)
    series = stationary_series(model, order).removeO()
    scale = h ** (order - 1) * s**2 * eta ** (order + 1)
    ratio = sp.factor(sp.simplify(((variance - series) / scale).subs(eta, eta_h / h)))
    stray = ratio.free_symbols - {eta_h, beta}
    if stray:
        raise ArithmeticError(f"the remainder ratio depends on more than eta*h and beta: {sorted(map(str, stray))}")
    box = {eta_h: (sp.Integer(0), u_max), beta: (sp.Integer(0), sp.Integer(1))}
    if model == "sgd":
        box.pop(beta)
    if not _nonnegative_rational(sp.diff(ratio, eta_h), box):
        raise ArithmeticError("the remainder ratio is not non-decreasing in eta*h on the range")
    if not _nonnegative_rational(ratio.subs(eta_h, 0), {k: v for k, v in box.items() if k is not eta_h}):
        raise ArithmeticError("the remainder is negative at eta*h -> 0 (so |V - T_n| is not V - T_n)")
    constant = sp.factor(ratio.subs(eta_h, u_max))
    return SeriesRemainderBound(model, order, u_max, ratio, constant)
