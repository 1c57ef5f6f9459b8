r"""SymPy derivations for SGD and SGDM on noisy quadratics (THEORY.md 3.5, 4.3, 5.2-5.6; oracles 6-19).

Everything is *derived* here from the update rules, not typed in: transition matrices are built from the
updates, characteristic polynomials are :math:`\det(rI-A)`, stability thresholds come from the Jury conditions
(with a Sturm-sequence proof that the chosen bound is the binding one for every :math:`\beta\in(0,1)`),
stationary moments are solutions of Stein / continuous Lyapunov equations, and series come from
:meth:`sympy.Expr.series`.  The numeric module :mod:`theory.quadratic` hand-writes the resulting closed forms;
the tests check the two against each other symbolically.

Derivations are cached (:func:`functools.cache`), so a repeated call in one process is instant.

Symbols: ``eta`` (effective learning rate :math:`\eta`), ``beta``, ``gamma`` (PyTorch rate
:math:`\gamma=\eta(1-\beta)`) are those of :mod:`theory.forms`; ``h``, ``h_i``, ``h_j`` curvatures, ``s`` the
1-D noise standard deviation (:math:`s^2=\operatorname{Var}\xi`), ``S_ij`` a rotated noise entry, ``eta_h``
the product :math:`\eta h`, ``r`` the variable of characteristic polynomials.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from theory.forms import beta, eta, gamma
from theory.quadratic import FORMS

__all__ = [
    "MODELS",
    "StabilityDerivation",
    "beta",
    "characteristic_polynomial_symbolic",
    "covariance_ratio_series",
    "critical_damping_symbolic",
    "derive_stability",
    "eta",
    "eta_h",
    "format_series",
    "format_stability",
    "format_stationary",
    "format_transition",
    "gamma",
    "h",
    "h_i",
    "h_j",
    "prove_regime_identity",
    "r",
    "s",
    "sde_stationary_covariance_symbolic",
    "sde_stationary_pair_symbolic",
    "series_coefficients",
    "sgd_minus_sgdm_series",
    "sgd_transient_risk_symbolic",
    "sme_gap_series",
    "stability_threshold_symbolic",
    "stationary_covariance_symbolic",
    "stationary_moments_1d_symbolic",
    "stationary_pair_symbolic",
    "stationary_series",
    "stationary_variance_symbolic",
    "transition_matrix_symbolic",
    "underdamped_stationary_symbolic",
]

h, h_i, h_j = sp.symbols("h h_i h_j", positive=True)
s = sp.Symbol("s", positive=True)
S_ij = sp.Symbol("S_ij", real=True)
eta_h = sp.Symbol("eta_h", real=True)
r = sp.Symbol("r")
t = sp.Symbol("t", nonnegative=True, integer=True)

_METHOD_FORM = {"sgd": "sgd", "heavy_ball": "normalized", "nesterov": "nesterov"}
#: 1-D models of :func:`stationary_variance_symbolic`.
MODELS: tuple[str, ...] = ("sgd", "sgdm", "sme1", "sme2", "underdamped")


# --- transition matrices, characteristic polynomials, stability ----------------------------------------------


@cache
def transition_matrix_symbolic(form: str = "normalized", curvature: sp.Expr = h) -> tuple[sp.Matrix, sp.Matrix]:
    r"""Transition :math:`A` and noise input :math:`b` of one eigen-direction: :math:`z_{k+1}=Az_k+b\,\xi_k`.

    Built by differentiating one step of the update rule with :math:`g=\text{curvature}\cdot x+\xi` with respect
    to the state and the noise, so the matrices are derived, not typed.  Forms and states as in
    :func:`theory.quadratic.transition_matrix` (``"normalized"`` is paper eq. (3) in :math:`(\eta,\beta)`;
    PyTorch forms use :math:`\gamma=\eta(1-\beta)`).
    """
    x, y, xi = sp.symbols("x y xi")
    g = curvature * x + xi
    lr = eta * (1 - beta)  # PyTorch gamma
    if form == "sgd":
        new = [x - eta * g]
        state = [x]
    elif form == "normalized":
        m_new = beta * y + (1 - beta) * g
        new, state = [x - eta * m_new, m_new], [x, y]
    elif form == "pytorch":
        b_new = beta * y + g
        new, state = [x - lr * b_new, b_new], [x, y]
    elif form == "polyak":
        new, state = [x - lr * g + beta * (x - y), x], [x, y]
    elif form == "nesterov":
        m_new = beta * y + (1 - beta) * g
        new, state = [x - eta * ((1 - beta) * g + beta * m_new), m_new], [x, y]
    elif form == "pytorch_nesterov":
        b_new = beta * y + g
        new, state = [x - lr * (g + beta * b_new), b_new], [x, y]
    else:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    A = sp.Matrix([[sp.expand(sp.diff(e, z)) for z in state] for e in new])
    b = sp.Matrix([sp.expand(sp.diff(e, xi)) for e in new])
    return A, b


@cache
def characteristic_polynomial_symbolic(form: str = "normalized") -> sp.Expr:
    r""":math:`\det(rI-A)` of one eigen-direction, written in :math:`\eta h` (``eta_h``) and :math:`\beta`.

    Heavy ball: :math:`r^2-(1+\beta-\gamma h)r+\beta`; Nesterov: :math:`r^2-(1+\beta)(1-\gamma h)r+\beta(1-\gamma
    h)` with :math:`\gamma h=(1-\beta)\eta h` (THEORY.md 1.4, oracle 16).
    """
    A, _ = transition_matrix_symbolic(form)
    poly = (r * sp.eye(A.shape[0]) - A).det()
    return sp.collect(sp.expand(sp.simplify(poly.subs(h, eta_h / eta))), r)


def _sign_on_unit_interval(expr: sp.Expr) -> int:
    """+1 or -1 if the rational function ``expr`` of beta has one sign on (0, 1); ValueError otherwise.

    Proof by Sturm sequences: neither numerator nor denominator has a root strictly inside (0, 1).
    """
    numerator, denominator = sp.fraction(sp.factor(sp.together(expr)))
    for part in (numerator, denominator):
        poly = sp.Poly(part, beta)
        if poly.degree() <= 0:
            continue
        inside = poly.count_roots(0, 1) - int(poly.eval(0) == 0) - int(poly.eval(1) == 0)
        if inside != 0:
            raise ValueError(f"{expr} changes sign for beta in (0, 1)")
    value = expr.subs(beta, sp.Rational(1, 2))
    return 1 if value > 0 else -1


@dataclass(frozen=True)
class StabilityDerivation:
    r"""Jury-criterion derivation of the linear stability interval :math:`\text{lower}<\eta h<\text{threshold}`."""

    method: str
    polynomial: sp.Expr
    jury_conditions: tuple[sp.Expr, ...]
    lower: sp.Expr
    threshold: sp.Expr

    @property
    def threshold_pytorch(self) -> sp.Expr:
        r"""The same bound on PyTorch's :math:`\gamma h=(1-\beta)\eta h` (SGD has no momentum: :math:`\gamma=\eta`)."""
        if self.method == "sgd":
            return self.threshold
        return sp.factor(sp.simplify(self.threshold * (1 - beta)))


@cache
def derive_stability(method: str = "heavy_ball") -> StabilityDerivation:
    r"""Stability interval in :math:`\eta h` from the Jury conditions, valid for every :math:`\beta\in(0,1)`.

    A monic quadratic :math:`p(r)=r^2+a_1r+a_0` has both roots inside the unit circle iff :math:`p(1)>0`,
    :math:`p(-1)>0` and :math:`|a_0|<1`; a linear :math:`r+a_0` iff :math:`|a_0|<1`.  Each condition here is
    affine in :math:`\eta h`, so it is a half-line whose end and direction are found symbolically; the sign of
    each slope and the order of competing ends are proved constant on :math:`\beta\in(0,1)` by Sturm sequences.
    THEORY.md 5.3; oracle 15.
    """
    if method not in _METHOD_FORM:
        raise ValueError(f"method must be one of {tuple(_METHOD_FORM)}, got {method!r}")
    poly = sp.Poly(characteristic_polynomial_symbolic(_METHOD_FORM[method]), r)
    coeffs = poly.all_coeffs()
    a0 = coeffs[-1]
    conditions = [1 - a0, 1 + a0]
    if poly.degree() == 2:
        conditions += [poly.eval(1), poly.eval(-1)]
    conditions = [sp.factor(c) for c in conditions]
    lowers, uppers = [], []
    for condition in conditions:
        affine = sp.Poly(sp.expand(condition), eta_h)
        if affine.degree() > 1:
            raise ValueError(f"Jury condition {condition} is not affine in eta*h")
        if affine.degree() <= 0:
            if _sign_on_unit_interval(condition) < 0:
                raise ValueError(f"Jury condition {condition} > 0 fails for beta in (0, 1)")
            continue
        slope, intercept = affine.all_coeffs()
        end = sp.factor(-intercept / slope)
        (uppers if _sign_on_unit_interval(slope) < 0 else lowers).append(end)

    def binding(ends: list[sp.Expr], smallest: bool) -> sp.Expr:
        best = ends[0]
        for end in ends[1:]:
            below = _sign_on_unit_interval(end - best) < 0
            if below == smallest:
                best = end
        return best

    return StabilityDerivation(
        method=method,
        polynomial=poly.as_expr(),
        jury_conditions=tuple(conditions),
        lower=binding(lowers, smallest=False),
        threshold=binding(uppers, smallest=True),
    )


def stability_threshold_symbolic(method: str = "heavy_ball") -> sp.Expr:
    r"""SymPy counterpart of :func:`theory.quadratic.stability_threshold`: the supremum of stable :math:`\eta h`."""
    return derive_stability(method).threshold


@cache
def critical_damping_symbolic() -> tuple[sp.Expr, ...]:
    r"""Values of :math:`\gamma h` where the heavy-ball discriminant vanishes: :math:`(1\mp\sqrt\beta)^2` (oracle 17).

    Between them the roots are complex (underdamped); the smaller one is critical damping.
    """
    gamma_h = sp.Symbol("gamma_h", positive=True)
    poly = characteristic_polynomial_symbolic("normalized").subs(eta_h, gamma_h / (1 - beta))
    discriminant = sp.discriminant(sp.expand(poly), r)
    return tuple(sorted(sp.solve(discriminant, gamma_h), key=lambda root: root.subs(beta, sp.Rational(1, 4))))


# --- stationary moments ----------------------------------------------------------------------------------------


def _solve_stein(A_i: sp.Matrix, A_j: sp.Matrix, forcing: sp.Matrix) -> sp.Matrix:
    """Solve P = A_i P A_j^T + forcing for a general (non-symmetric) P by a linear solve."""
    rows, cols = A_i.shape[0], A_j.shape[0]
    unknowns = sp.symbols(f"p0:{rows * cols}")
    P = sp.Matrix(rows, cols, unknowns)
    solution = sp.solve(list(P - A_i * P * A_j.T - forcing), unknowns, dict=True)
    if len(solution) != 1:
        raise ValueError("Stein equation has no unique solution")
    return P.subs(solution[0]).applyfunc(sp.factor)


@cache
def stationary_pair_symbolic(form: str = "normalized") -> sp.Matrix:
    r"""Stationary cross-moment matrix of eigen-directions :math:`i,j` per unit rotated noise :math:`S_{ij}`.

    Solves the :math:`2\times2` Stein equation :math:`P=A(h_i)PA(h_j)^\top+bb^\top` with the transition of
    :func:`transition_matrix_symbolic` (default: paper eq. (3), state :math:`(x,m)`), so
    :math:`P_{ab}=\mathbb E[z_{i,a}z_{j,b}]/S_{ij}`.  The numeric closed form
    :func:`theory.quadratic.stationary_pair_factors` is this matrix's :math:`(x,x)`, :math:`(x,m)`, :math:`(m,m)`
    entries (tested).
    """
    A_i, b = transition_matrix_symbolic(form, h_i)
    A_j, _ = transition_matrix_symbolic(form, h_j)
    return _solve_stein(A_i, A_j, b * b.T)


@cache
def stationary_moments_1d_symbolic(form: str = "normalized") -> sp.Matrix:
    r"""Stationary second moments of the state of one form in 1-D (:math:`\mathcal L=\tfrac h2x^2`, noise :math:`s^2`).

    For ``"polyak"`` the state is :math:`(x_k,x_{k-1})`, so :math:`v=x_k-x_{k-1}` has
    :math:`\mathbb Ev^2=P_{00}-2P_{01}+P_{11}` and :math:`\mathbb E[xv]=P_{00}-P_{01}` (THEORY.md 5.4, oracle 8).
    """
    A, b = transition_matrix_symbolic(form)
    P = _solve_stein(A, A, s**2 * b * b.T)
    return P.applyfunc(lambda e: sp.factor(sp.simplify(e)))


@cache
def sde_stationary_pair_symbolic(order: int = 1) -> sp.Expr:
    r"""Stationary :math:`\mathbb E[\tilde X_i\tilde X_j]/S_{ij}` of SME1/SME2 from the continuous Lyapunov equation.

    Per pair, :math:`dP_{ij}/dt=-(k_i+k_j)P_{ij}+\eta S_{ij}` with drift rate :math:`k=h` (SME1) or
    :math:`k=h+\tfrac\eta2h^2` (SME2), so :math:`P_{ij}=\eta S_{ij}/(k_i+k_j)` (THEORY.md 4.1, 4.3).
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    rate = {1: lambda c: c, 2: lambda c: c + eta * c**2 / 2}[order]
    p = sp.Symbol("p")
    (solution,) = sp.solve(sp.Eq(-(rate(h_i) + rate(h_j)) * p + eta, 0), p)
    return sp.factor(solution)


@cache
def underdamped_stationary_symbolic() -> sp.Matrix:
    r"""Stationary covariance of :math:`dX=V\,dt,\ dV=-(\nu V+aX)\,dt+\sqrt q\,dW` (THEORY.md 3.5; oracle 12).

    Solves :math:`KP+PK^\top+Q=0` for :math:`K=\begin{pmatrix}0&1\\-a&-\nu\end{pmatrix}`,
    :math:`Q=\operatorname{diag}(0,q)`: :math:`\operatorname{Var}X=\frac q{2a\nu}`, :math:`\operatorname{Var}V=
    \frac q{2\nu}`, :math:`\operatorname{Cov}=0`.  Symbols ``nu``, ``a``, ``q`` (positive).
    """
    nu, a, q = sp.symbols("nu a q", positive=True)
    K = sp.Matrix([[0, 1], [-a, -nu]])
    p00, p01, p11 = sp.symbols("p00 p01 p11")
    P = sp.Matrix([[p00, p01], [p01, p11]])
    equations = K * P + P * K.T + sp.diag(0, q)
    solution = sp.solve([equations[0, 0], equations[0, 1], equations[1, 1]], [p00, p01, p11], dict=True)[0]
    return P.subs(solution)


@cache
def stationary_variance_symbolic(model: str = "sgdm") -> sp.Expr:
    r"""Stationary :math:`\operatorname{Var}x` in 1-D, :math:`\mathcal L=\tfrac h2x^2`, additive noise :math:`s^2`.

    * ``"sgd"``: :math:`\frac{\eta s^2}{h(2-\eta h)}` (oracle 6); ``"sgdm"``: paper eq. (3),
      :math:`\frac{\eta s^2(1+\beta)}{h(2(1+\beta)-\eta h(1-\beta))}` (THEORY.md 5.4);
    * ``"sme1"``, ``"sme2"``: :math:`\frac{\eta s^2}{2h}`, :math:`\frac{\eta s^2}{h(2+\eta h)}` (oracle 11);
    * ``"underdamped"``: the :math:`\alpha=1` SDE with :math:`1-\beta=c\eta`, i.e. :math:`\nu=c`,
      :math:`a=ch`, :math:`q=c^2\eta s^2` in :func:`underdamped_stationary_symbolic`: :math:`\frac{\eta s^2}{2h}`
      for every :math:`c` (oracle 12).
    """
    if model == "sgd":
        return sp.factor(stationary_moments_1d_symbolic("sgd")[0, 0])
    if model == "sgdm":
        return sp.factor(stationary_moments_1d_symbolic("normalized")[0, 0])
    if model in ("sme1", "sme2"):
        return sp.factor(sde_stationary_pair_symbolic(int(model[-1])).subs({h_i: h, h_j: h}) * s**2)
    if model == "underdamped":
        nu, a, q = sp.symbols("nu a q", positive=True)
        c = sp.Symbol("c", positive=True)
        return sp.simplify(underdamped_stationary_symbolic()[0, 0].subs({nu: c, a: c * h, q: c**2 * eta * s**2}))
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


@cache
def prove_regime_identity(var_sgd: sp.Expr | None = None, var_sgdm: sp.Expr | None = None) -> bool:
    r"""Prove :math:`\operatorname{Var}_{\rm SGD}/\operatorname{Var}_{\rm SGDM}=1+\frac{2\beta}{1+\beta}R`,
    :math:`R=\frac{\eta h}{2-\eta h}`, at equal :math:`\eta` on :math:`\tfrac h2x^2` (Lemma 2.4's regime; claim 8).

    ``var_sgd`` and ``var_sgdm`` are the stationary variances in the symbols ``eta``, ``h``, ``s``, ``beta`` of this
    module; by default the derived ones of :func:`stationary_variance_symbolic` (``"sgd"``, ``"sgdm"``: Stein
    equations of the update rules, THEORY.md 5.4).  Returns whether SymPy reduces the difference of the two sides to
    zero identically in :math:`\eta,h,s,\beta`, so a wrong variance formula gives ``False``.  The numeric value
    is :func:`theory.quadratic.regime_loss_ratio`.
    """
    var_sgd = stationary_variance_symbolic("sgd") if var_sgd is None else sp.sympify(var_sgd)
    var_sgdm = stationary_variance_symbolic("sgdm") if var_sgdm is None else sp.sympify(var_sgdm)
    lemma_ratio = eta * h / (2 - eta * h)
    return bool(sp.simplify(var_sgd / var_sgdm - (1 + 2 * beta / (1 + beta) * lemma_ratio)) == 0)


def _symmetric_unknowns(n: int) -> tuple[sp.Matrix, tuple[sp.Symbol, ...]]:
    """A symmetric n x n matrix of fresh unknowns (n (n + 1) / 2 of them)."""
    unknowns = sp.symbols(f"p0:{n * (n + 1) // 2}")
    entries = iter(unknowns)
    P = sp.zeros(n, n)
    for i in range(n):
        for j in range(i, n):
            P[i, j] = P[j, i] = next(entries)
    return P, unknowns


def _solve_symmetric(P: sp.Matrix, unknowns: tuple[sp.Symbol, ...], residual: sp.Matrix) -> sp.Matrix:
    """Substitute the unique solution of residual == 0 (upper triangle) into P."""
    n = P.shape[0]
    solution = sp.solve([residual[i, j] for i in range(n) for j in range(i, n)], unknowns, dict=True)
    if len(solution) != 1:
        raise ValueError("Lyapunov equation has no unique solution (is the system stable?)")
    return P.subs(solution[0]).applyfunc(sp.simplify)


def _as_immutable(matrix: object) -> sp.ImmutableMatrix:
    return sp.ImmutableMatrix(sp.Matrix(matrix).applyfunc(sp.nsimplify))


def stationary_covariance_symbolic(H: object, Sigma: object, eta_value: object, beta_value: object = 0) -> sp.Matrix:
    r"""Exact stationary :math:`\operatorname{Cov}x` of paper eq. (3) for given (rational or symbolic) matrices.

    Solves the Stein equation :math:`P=APA^\top+B\Sigma B^\top` of the :math:`2d`-dimensional :math:`(x,m)` system
    as a linear system in rational arithmetic (floats are converted with :func:`sympy.nsimplify`) and returns the
    :math:`x` block.  SymPy counterpart of :func:`theory.quadratic.stationary_covariance` (oracles 13, 14).
    """
    return _stationary_covariance_exact(
        _as_immutable(H), _as_immutable(Sigma), sp.nsimplify(eta_value), sp.nsimplify(beta_value)
    )


@cache
def _stationary_covariance_exact(
    H: sp.ImmutableMatrix, Sigma: sp.ImmutableMatrix, eta_value: sp.Expr, beta_value: sp.Expr
) -> sp.Matrix:
    d = H.shape[0]
    eye = sp.eye(d)
    gamma_value = eta_value * (1 - beta_value)
    A = sp.BlockMatrix(
        [[eye - gamma_value * H, -eta_value * beta_value * eye], [(1 - beta_value) * H, beta_value * eye]]
    ).as_explicit()
    B = sp.BlockMatrix([[-gamma_value * eye], [(1 - beta_value) * eye]]).as_explicit()
    P, unknowns = _symmetric_unknowns(2 * d)
    return _solve_symmetric(P, unknowns, P - A * P * A.T - B * Sigma * B.T)[:d, :d]


def sde_stationary_covariance_symbolic(H: object, Sigma: object, eta_value: object, order: int = 1) -> sp.Matrix:
    r"""Exact stationary covariance of SME1/SME2: solves :math:`KP+PK=\eta\Sigma`, :math:`K=H` or
    :math:`H+\tfrac\eta2H^2`, in rational arithmetic.  Counterpart of
    :func:`theory.quadratic.sde_stationary_covariance`."""
    H_exact, Sigma_exact, eta_exact = _as_immutable(H), _as_immutable(Sigma), sp.nsimplify(eta_value)
    drift = H_exact if order == 1 else H_exact + eta_exact * H_exact * H_exact / 2
    P, unknowns = _symmetric_unknowns(H_exact.shape[0])
    return _solve_symmetric(P, unknowns, drift * P + P * drift - eta_exact * Sigma_exact)


# --- series in eta ---------------------------------------------------------------------------------------------


def _pair_expression(model: str) -> sp.Expr:
    if model == "sgd":
        return stationary_pair_symbolic("sgd")[0, 0]
    if model == "sgdm":
        return stationary_pair_symbolic("normalized")[0, 0]
    if model in ("sme1", "sme2"):
        return sde_stationary_pair_symbolic(int(model[-1]))
    raise ValueError(f"model must be one of ('sgd', 'sgdm', 'sme1', 'sme2') for pair=True, got {model!r}")


def _check_order(order: int) -> int:
    if int(order) != order or order < 1:
        raise ValueError(f"order must be an integer >= 1 (highest power of eta kept), got {order!r}")
    return int(order)


def _eta_series(expr: sp.Expr, order: int) -> sp.Expr:
    """Series of ``expr`` in eta to eta**order, each coefficient factored, plus the O(eta**(order+1)) term."""
    truncated = sp.series(expr, eta, 0, order + 1).removeO()
    terms = [sp.factor(sp.expand(truncated).coeff(eta, n)) * eta**n for n in range(order + 1)]
    return sp.Add(*terms) + sp.Order(eta ** (order + 1), (eta, 0))


@cache
def stationary_series(model: str = "sgdm", order: int = 3, pair: bool = False) -> sp.Expr:
    r"""Series in :math:`\eta` of the exact stationary variance, up to :math:`\eta^{\text{order}}` and an :math:`O`.

    ``pair=False``: 1-D :math:`\operatorname{Var}x` of :func:`stationary_variance_symbolic` (THEORY.md 5.5:
    SGD :math:`\frac{\eta s^2}{2h}\sum_n(\frac{\eta h}2)^n`, SGDM the same with :math:`\eta h\to r\eta h`,
    :math:`r=\frac{1-\beta}{1+\beta}`).  ``pair=True``: the eigenbasis entry :math:`\mathbb E[\tilde x_i\tilde
    x_j]/S_{ij}` for ``"sgd"``, ``"sgdm"``, ``"sme1"``, ``"sme2"``.  Coefficients are exact in :math:`\beta`.
    """
    order = _check_order(order)
    expr = _pair_expression(model) if pair else stationary_variance_symbolic(model)
    return _eta_series(expr, order)


def series_coefficients(model: str = "sgdm", order: int = 3, pair: bool = False) -> tuple[sp.Expr, ...]:
    r"""Coefficients :math:`(c_1,\dots,c_{\text{order}})` of :math:`\eta^1,\dots,\eta^{\text{order}}` in
    :func:`stationary_series` (the :math:`\eta^0` term is zero)."""
    series = stationary_series(model, order, pair).removeO()
    return tuple(sp.factor(series.coeff(eta, n)) for n in range(1, _check_order(order) + 1))


@cache
def sgd_minus_sgdm_series(order: int = 3, pair: bool = False) -> sp.Expr:
    r"""Series of :math:`\operatorname{Var}_{\rm SGD}-\operatorname{Var}_{\rm SGDM}` at equal :math:`\eta`.

    The :math:`O(\eta)` terms cancel (both equal the SDE's :math:`\frac{\eta s^2}{2h}`); the leading term is
    :math:`\frac{\beta}{2(1+\beta)}\eta^2s^2` in 1-D (THEORY.md 5.5, oracle 18; claim 4).
    """
    order = _check_order(order)
    difference = (
        _pair_expression("sgd") - _pair_expression("sgdm")
        if pair
        else (stationary_variance_symbolic("sgd") - stationary_variance_symbolic("sgdm"))
    )
    return _eta_series(difference, order)


@cache
def covariance_ratio_series(order: int = 2) -> sp.Expr:
    r"""Series of the eigenbasis ratio :math:`\mathbb E_{\rm SGDM}[\tilde x_i\tilde x_j]/\mathbb E_{\rm SGD}[\tilde
    x_i\tilde x_j]` in :math:`\eta` (independent of :math:`S_{ij}`): :math:`1+c_1\eta+O(\eta^2)` with
    :math:`c_1=-\frac{\beta(h_i^2+h_j^2-2\beta h_ih_j)}{(1-\beta^2)(h_i+h_j)}`; 1-D: :math:`-\frac{\beta h}{1+\beta}`.
    """
    ratio = _pair_expression("sgdm") / _pair_expression("sgd")
    return _eta_series(sp.simplify(ratio), _check_order(order))


@cache
def sme_gap_series(order: int = 4, model: str = "sgd") -> tuple[sp.Expr, sp.Expr]:
    r"""Series of (exact discrete − SME1, exact discrete − SME2) stationary :math:`\operatorname{Var}x` in 1-D.

    For SGD: :math:`\frac{\eta^2s^2}4+\frac{\eta^3hs^2}8+O(\eta^4)` and :math:`\frac{\eta^2s^2}2+O(\eta^4)`
    (THEORY.md 4.3, oracle 11).  SME2 moves the :math:`\eta^2` term the wrong way.
    """
    order = _check_order(order)
    exact = stationary_variance_symbolic(model)
    return tuple(_eta_series(exact - stationary_variance_symbolic(sme), order) for sme in ("sme1", "sme2"))


# --- transients ------------------------------------------------------------------------------------------------


@cache
def sgd_transient_risk_symbolic() -> tuple[sp.Expr, sp.Expr]:
    r"""NQM transient risk of SGD per dimension (THEORY.md 5.6, oracle 19), with its proof by induction.

    With :math:`\mathcal L=\tfrac h2x^2`, noise variance :math:`v` (``sigma2``; :math:`c_i/B` in the NQM) and
    :math:`\rho=(1-\eta h)^2`, the second moment obeys :math:`s_{t+1}=\rho s_t+\eta^2v`.  Returns
    ``(risk, residual)`` where

    .. math:: \mathbb E\mathcal L_t=\rho^t\,\mathbb E\mathcal L_0+\frac{\eta v}{2(2-\eta h)}\big(1-\rho^t\big)

    (``L0`` is :math:`\mathbb E\mathcal L_0`, ``t`` the step) and ``residual`` is
    :math:`\mathbb E\mathcal L_{t+1}-\rho\,\mathbb E\mathcal L_t-\tfrac h2\eta^2v`, which simplifies to zero;
    the base case :math:`t=0` gives :math:`\mathbb E\mathcal L_0`.
    """
    sigma2, loss0 = sp.symbols("sigma2 L0", positive=True)
    rho = (1 - eta * h) ** 2
    # Solve the affine recursion for the loss L_t = h s_t / 2: fixed point plus geometric decay.
    fixed_point = sp.solve(sp.Eq(sp.Symbol("L"), rho * sp.Symbol("L") + h * eta**2 * sigma2 / 2), sp.Symbol("L"))[0]
    risk = rho**t * loss0 + sp.factor(fixed_point) * (1 - rho**t)
    residual = sp.simplify(risk.subs(t, t + 1) - rho * risk - h * eta**2 * sigma2 / 2)
    return risk, residual


# --- text for `mvm derive` ---------------------------------------------------------------------------------------


_LATEX_NAMES = {eta_h: r"\eta h", S_ij: "S_{ij}"}


def _latex(expr: object) -> str:
    return sp.latex(expr, symbol_names=_LATEX_NAMES)


def _show(expr: object, latex: bool) -> str:
    return _latex(expr) if latex else sp.sstr(expr)


def format_stability(latex: bool = False) -> str:
    """Stability thresholds, characteristic polynomials and critical damping (``mvm derive stability``)."""
    lines = []
    for method in ("sgd", "heavy_ball", "nesterov"):
        derivation = derive_stability(method)
        if latex:
            lines.append(
                rf"\text{{{method.replace('_', ' ')}}}:\quad {_latex(derivation.polynomial)}=0,\qquad "
                rf"{_latex(derivation.lower)}<\eta h<{_latex(derivation.threshold)}"
                rf"\quad(\gamma h<{_latex(derivation.threshold_pytorch)})"
            )
        else:
            lines.append(f"{method}: characteristic polynomial {sp.sstr(derivation.polynomial)}")
            lines.append(
                f"  stable iff {sp.sstr(derivation.lower)} < eta*h < {sp.sstr(derivation.threshold)}"
                f"   (PyTorch gamma*h < {sp.sstr(derivation.threshold_pytorch)})"
            )
    low, high = critical_damping_symbolic()
    if latex:
        lines.append(rf"\text{{complex roots (heavy ball)}}:\quad {_latex(low)}<\gamma h<{_latex(high)}")
    else:
        lines.append(f"heavy ball: complex roots for {sp.sstr(low)} < gamma*h < {sp.sstr(high)}")
    return "\n".join(lines)


def format_transition(latex: bool = False, form: str | None = None) -> str:
    """Transition matrices and noise inputs of one eigen-direction (``mvm derive transition``)."""
    lines = []
    for name in (form,) if form else FORMS:
        A, b = transition_matrix_symbolic(name)
        poly = characteristic_polynomial_symbolic(name)
        if latex:
            lines.append(
                rf"\text{{{name.replace('_', ' ')}}}:\quad A={_latex(A)},\quad b={_latex(b)},"
                rf"\quad \det(rI-A)={_latex(poly)}"
            )
        else:
            lines.append(
                f"{name}: z_(k+1) = A z_k + b xi_k,  A = {sp.sstr(A.tolist())},  b = {sp.sstr(b.T.tolist()[0])}"
            )
            lines.append(f"  det(rI - A) = {sp.sstr(poly)}")
    return "\n".join(lines)


def _labelled(rows: list[tuple[str, str, object]], latex: bool) -> str:
    """One line per (plain label, LaTeX label, expression)."""
    if latex:
        return "\n".join(rf"{tex} = {_latex(expr)}" for _, tex, expr in rows)
    return "\n".join(f"{text} = {sp.sstr(expr)}" for text, _, expr in rows)


_MODEL_LATEX = {"sgd": "SGD", "sgdm": "SGDM", "sme1": "SME1", "sme2": "SME2", "underdamped": "underdamped"}


def format_stationary(latex: bool = False) -> str:
    """Stationary variances in 1-D and the eigenbasis pair formula (``mvm derive stationary``)."""
    rows = [
        (
            f"{model}: Var x",
            rf"\operatorname{{Var}}x_{{\mathrm{{{_MODEL_LATEX[model]}}}}}",
            stationary_variance_symbolic(model),
        )
        for model in MODELS
    ]
    pair = stationary_pair_symbolic("normalized")
    rows += [
        ("SGDM pair (i, j): E[x_i x_j] / S_ij", r"\mathbb E[\tilde x_i\tilde x_j]/S_{ij}", pair[0, 0]),
        ("SGDM pair (i, j): E[x_i m_j] / S_ij", r"\mathbb E[\tilde x_i\tilde m_j]/S_{ij}", pair[0, 1]),
        ("SGDM pair (i, j): E[m_i m_j] / S_ij", r"\mathbb E[\tilde m_i\tilde m_j]/S_{ij}", pair[1, 1]),
        (
            "SME1 pair (i, j): E[X_i X_j] / S_ij",
            r"\mathbb E[\tilde X_i\tilde X_j]/S_{ij}",
            sde_stationary_pair_symbolic(1),
        ),
    ]
    return _labelled(rows, latex)


def format_series(latex: bool = False, order: int = 3) -> str:
    """Series in eta of the stationary variances and their gaps (``mvm derive series --order N``)."""
    order = _check_order(order)
    gap1, gap2 = sme_gap_series(max(order, 2))
    rows = [
        (
            f"{model}: Var x",
            rf"\operatorname{{Var}}x_{{\mathrm{{{_MODEL_LATEX[model]}}}}}",
            stationary_series(model, order),
        )
        for model in ("sgd", "sgdm", "sme2")
    ]
    rows += [
        ("SGD - SGDM", r"\mathrm{SGD}-\mathrm{SGDM}", sgd_minus_sgdm_series(max(order, 2))),
        ("SGD - SME1", r"\mathrm{SGD}-\mathrm{SME1}", gap1),
        ("SGD - SME2", r"\mathrm{SGD}-\mathrm{SME2}", gap2),
        ("SGDM / SGD, pair (i, j)", r"\mathrm{SGDM}/\mathrm{SGD}\ (i,j)", covariance_ratio_series(max(order - 1, 1))),
    ]
    return _labelled(rows, latex)
