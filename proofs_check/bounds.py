r"""A catalogue of inequalities about SGD and SGDM as executable properties, and a counterexample search.

Each :class:`Bound` states one inequality (LaTeX), its source (the paper, a classical result, or derived here),
whether it is believed true, the Hypothesis strategy of its inputs (from :mod:`theory.strategies`) and a function
returning the two sides, computed from the *exact* theory (closed-form stationary covariances, transition matrices,
SymPy-derived series): no sampling, so a counterexample is a counterexample, not noise.  The comparison is

.. math:: \text{left}\le\text{right}+\text{rtol}\cdot\max(|\text{left}|,|\text{right}|,\text{scale})

(``relation="<="``), or :math:`|\text{left}-\text{right}|\le` the same (``relation="=="``), where ``scale`` is the
magnitude of the quantities whose rounding errors enter the sides (returned by the sides function when it differs
from the sides themselves, e.g. the norm of a covariance whose small difference is compared).

:func:`search_bounds` runs every (or the selected) bound through Hypothesis at a budget of examples, with a seed
(so runs are reproducible), guided by :func:`hypothesis.target` toward the largest ratio left/right, and returns
one :class:`BoundResult` per bound: *holds within the budget* (with the examples tried and the largest ratio seen)
or *refuted* (with the shrunk, minimal counterexample and both sides' values).  ``mvm bounds`` prints them.

Entries believed false are of two kinds: negative controls (``control=True``; deliberately false statements that
show the search has the power to refute a false inequality and shrink the counterexample), and findings (a statement
one might believe, refuted by the search; kept with ``believed_true=False`` and a note, next to its correct
restatement).  Every sides function takes the :class:`proofs_check.methods.MethodSet` whose implementations it uses
(``stationary_covariance``, ``svag_coefficients``), so a wrong implementation refutes true bounds (tested with
:data:`proofs_check.methods.MUTANTS`).

Hypothesis is needed to *search* (imported when a search runs); the catalogue itself imports without it.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from proofs_check.methods import REFERENCE, MethodSet
from proofs_check.report import write_text
from theory.quadratic import FORM_STABILITY, FORMS, sde_stationary_covariance, spectral_radius, stability_threshold
from theory.quadratic import transition_matrix as _transition_matrix

__all__ = [
    "BOUNDS",
    "DEFAULT_BUDGET",
    "Bound",
    "BoundResult",
    "available_bounds",
    "format_bounds",
    "search_bound",
    "search_bounds",
    "select_bounds",
    "write_bounds_json",
]

#: Examples per bound of ``mvm bounds`` and :func:`search_bounds` by default.
DEFAULT_BUDGET = 1000
#: Relative margin of the stability entries: :math:`\eta h` at least this fraction inside or outside the edge.
STABILITY_MARGIN = 1e-6

Case = Mapping[str, Any]
Sides = tuple[float, float] | tuple[float, float, float]


@dataclass(frozen=True)
class Bound:
    r"""One inequality as an executable property.

    ``id``: stable name (``mvm bounds --only ID``).  ``statement``: the inequality in LaTeX, with its range.
    ``source``: where it comes from (paper result, classical result, THEORY.md section, or "derived here").
    ``believed_true``: what the catalogue asserts; a search that contradicts it is a failure of ``mvm bounds``.
    ``inputs``: a zero-argument factory of the Hypothesis strategy of the inputs (a dict of named values).
    ``inputs_description``: that strategy in words.  ``sides(case, methods) -> (left, right)`` or
    ``(left, right, scale)``: the exact quantities compared.  ``relation``: ``"<="`` or ``"=="``.  ``rtol``: the
    comparison tolerance for float rounding (see the module docstring).  ``left_label``/``right_label``: what the
    sides are, for reports.  ``control``: a deliberately false statement (negative control).  ``note``: what the
    search found, or why the entry is there.
    """

    id: str
    statement: str
    source: str
    believed_true: bool
    inputs: Callable[[], Any]
    inputs_description: str
    sides: Callable[[Case, MethodSet], Sides]
    left_label: str
    right_label: str
    rtol: float = 1e-9
    relation: str = "<="
    control: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if self.relation not in ("<=", "=="):
            raise ValueError(f"relation must be '<=' or '==', got {self.relation!r}")
        if not (math.isfinite(self.rtol) and self.rtol >= 0):
            raise ValueError(f"rtol must be a finite number >= 0, got {self.rtol!r}")
        if self.control and self.believed_true:
            raise ValueError(f"{self.id}: a negative control is believed false")

    def evaluate(self, case: Case, methods: MethodSet = REFERENCE) -> tuple[float, float, bool, float]:
        """``(left, right, holds, ratio)`` at one input; ``ratio`` is left/right (nan when undefined)."""
        values = self.sides(case, methods)
        if len(values) not in (2, 3):
            raise ValueError(f"{self.id}: sides must return (left, right) or (left, right, scale), got {values!r}")
        left, right = float(values[0]), float(values[1])
        scale = float(values[2]) if len(values) == 3 else 0.0
        if not (math.isfinite(left) and math.isfinite(right) and math.isfinite(scale)):
            raise ArithmeticError(f"{self.id}: non-finite side: left={left!r}, right={right!r}, scale={scale!r}")
        tolerance = self.rtol * max(abs(left), abs(right), abs(scale))
        holds = left <= right + tolerance if self.relation == "<=" else abs(left - right) <= tolerance
        return left, right, holds, _ratio(left, right, tolerance)


def _ratio(left: float, right: float, tolerance: float = 0.0) -> float:
    """left/right; nan when both sides are within the rounding tolerance of 0 (the ratio is noise there)."""
    if max(abs(left), abs(right)) <= tolerance or (left == 0 and right == 0):
        return math.nan
    return left / right if right != 0 else math.copysign(math.inf, left)


@dataclass(frozen=True)
class BoundResult:
    r"""The outcome of searching one :class:`Bound` for a counterexample.

    ``status``: ``"holds"`` (no counterexample within the budget), ``"refuted"`` (a counterexample, shrunk), or
    ``"error"`` (the sides raised or the search could not run; ``error`` says why, ``counterexample`` holds the
    shrunk input that raised).  ``passed``: the outcome agrees with ``believed_true`` (a true bound holds, a false
    one is refuted).  ``examples``: inputs tried up to and including the first counterexample (all of them when it
    holds); ``shrink_calls``: evaluations spent shrinking.  ``max_ratio``: the largest left/right seen while it
    held (for ``"=="``: the ratio farthest from 1), or left/right at the counterexample.
    """

    bound_id: str
    statement: str
    source: str
    believed_true: bool
    control: bool
    status: str
    passed: bool
    examples: int
    shrink_calls: int
    max_ratio: float
    left: float | None
    right: float | None
    counterexample: Mapping[str, Any] | None
    relation: str
    rtol: float
    left_label: str
    right_label: str
    budget: int
    seed: int
    wall_time_s: float
    error: str | None = None
    note: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """One phrase: what was found, and whether it was expected."""
        if self.status == "error":
            return "ERROR"
        if self.believed_true:
            return "holds within budget" if self.status == "holds" else "REFUTED (believed true)"
        if self.status == "refuted":
            return "refuted, as expected" + (" (control)" if self.control else " (finding)")
        return "NOT REFUTED (believed false)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite floats become strings, arrays lists)."""
        data = {key: _jsonable(value) for key, value in asdict(self).items()}
        data["verdict"] = self.verdict
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- exact quantities ---------------------------------------------------------------------------------------------


def _quadratic_case(problem: Any) -> dict[str, Any]:
    return {"H": problem.H, "Sigma": problem.Sigma, "eta": problem.eta, "beta": problem.beta}


def _stable_quadratics(method: str, *, commuting: bool | None, eta_h_max: float | None = None, max_beta=0.999):
    def factory() -> Any:
        from theory.strategies import momenta, stable_quadratics

        return stable_quadratics(
            method,
            max_dim=4,
            commuting=commuting,
            betas=momenta(max_value=max_beta),
            eta_h_max=eta_h_max,
        ).map(_quadratic_case)

    return factory


def _loss(H: np.ndarray, C: np.ndarray) -> float:
    return 0.5 * float(np.sum(H * C))  # tr(H C) / 2 for symmetric H, C


def _covariances(case: Case, methods: MethodSet) -> tuple[np.ndarray, np.ndarray]:
    """(C_SGD, C_SGDM) at the same eta."""
    H, Sigma, eta, beta = case["H"], case["Sigma"], case["eta"], case["beta"]
    return methods.stationary_covariance(H, Sigma, eta, 0.0), methods.stationary_covariance(H, Sigma, eta, beta)


def _loss_sides(case: Case, methods: MethodSet) -> Sides:
    C_sgd, C_sgdm = _covariances(case, methods)
    return _loss(case["H"], C_sgdm), _loss(case["H"], C_sgd)


#: Relative regularisation of the generalized eigenproblem of :func:`_psd_sides` (singular noise makes
#: :math:`C_{\rm SGD}` singular).
_PENCIL_EPS = 1e-12


def _psd_sides(case: Case, methods: MethodSet) -> Sides:
    r"""The worst direction: :math:`w` maximising :math:`w^\top C_{\rm SGDM}w/w^\top C_{\rm SGD}w` (the largest
    generalized eigenvalue of the pencil, :math:`C_{\rm SGD}` regularised by :math:`10^{-12}\|C_{\rm SGD}\|`);
    :math:`C_{\rm SGD}-C_{\rm SGDM}\succeq0` iff the ratio is at most 1 there."""
    C_sgd, C_sgdm = _covariances(case, methods)
    scale = float(np.linalg.norm(C_sgd, 2))
    w = scipy.linalg.eigh(C_sgdm, C_sgd + _PENCIL_EPS * scale * np.eye(len(C_sgd)))[1][:, -1]
    w = w / np.linalg.norm(w)
    return float(w @ C_sgdm @ w), float(w @ C_sgd @ w), scale


def _worst(lefts: np.ndarray, rights: np.ndarray, tolerance: float) -> int:
    """Index of the worst pair: the largest violation if any, else the largest ratio left/right among the pairs
    above the rounding tolerance (ratios of rounding noise mean nothing)."""
    excess = lefts - rights
    if np.max(excess) > tolerance:
        return int(np.argmax(excess))
    meaningful = np.maximum(np.abs(lefts), np.abs(rights)) > tolerance
    if not np.any(meaningful & (rights > 0)):
        return int(np.argmax(excess))
    ratios = np.where(meaningful & (rights > 0), lefts / np.where(rights > 0, rights, 1.0), -np.inf)
    return int(np.argmax(ratios))


def _eigendirection_sides(case: Case, methods: MethodSet) -> Sides:
    C_sgd, C_sgdm = _covariances(case, methods)
    V = np.linalg.eigh(case["H"])[1]
    sgdm, sgd = np.einsum("ji,jk,ki->i", V, C_sgdm, V), np.einsum("ji,jk,ki->i", V, C_sgd, V)
    scale = float(np.linalg.norm(C_sgd, 2))
    i = _worst(sgdm, sgd, 1e-10 * scale)
    return float(sgdm[i]), float(sgd[i]), scale


@cache
def _series_functions() -> tuple[Callable, Callable, Callable]:
    """(c1(h, s, beta), c2(h, s, beta), K(beta)): the SymPy series coefficients and the derived remainder constant."""
    import sympy as sp

    from theory.forms import beta
    from theory.quadratic_symbolic import h, s, series_coefficients
    from theory.series_remainder import series_remainder_bound

    c1, c2 = series_coefficients("sgdm", 2)
    constant = series_remainder_bound(2, sp.Rational(1, 2), "sgdm").constant
    return (
        sp.lambdify((h, s, beta), c1, "numpy"),
        sp.lambdify((h, s, beta), c2, "numpy"),
        sp.lambdify((beta,), constant, "numpy"),
    )


def _series_sides(case: Case, methods: MethodSet) -> Sides:
    H, Sigma, eta, beta = case["H"], case["Sigma"], case["eta"], case["beta"]
    c1, c2, constant = _series_functions()
    C = methods.stationary_covariance(H, Sigma, eta, beta)
    h, V = np.linalg.eigh(H)
    s2 = np.clip(np.einsum("ji,jk,ki->i", V, Sigma, V), 0.0, None)  # S_ii = (V' Sigma V)_ii
    variance = np.einsum("ji,jk,ki->i", V, C, V)
    s = np.sqrt(s2)
    remainder = np.abs(variance - c1(h, s, beta) * eta - c2(h, s, beta) * eta**2)
    bound = constant(beta) * h * s2 * eta**3
    scale = float(np.max(np.abs(variance)))
    i = _worst(remainder, bound, 1e-11 * scale)
    return float(remainder[i]), float(bound[i]), scale


def _sme_distances(case: Case, methods: MethodSet) -> tuple[float, float, float]:
    H, Sigma, eta = case["H"], case["Sigma"], case["eta"]
    C = methods.stationary_covariance(H, Sigma, eta, 0.0)
    first = float(np.linalg.norm(C - sde_stationary_covariance(H, Sigma, eta, order=1)))
    second = float(np.linalg.norm(C - sde_stationary_covariance(H, Sigma, eta, order=2)))
    return first, second, float(np.linalg.norm(C))


def _sme1_closer_sides(case: Case, methods: MethodSet) -> Sides:
    return _sme_distances(case, methods)


def _sme2_closer_sides(case: Case, methods: MethodSet) -> Sides:
    first, second, scale = _sme_distances(case, methods)
    return second, first, scale


def _same_gamma_sides(case: Case, methods: MethodSet) -> Sides:
    # case["eta"] is read as PyTorch's gamma: SGD at gamma, eq. (3) at eta = gamma / (1 - beta).
    H, Sigma, gamma, beta = case["H"], case["Sigma"], case["eta"], case["beta"]
    sgdm = methods.stationary_covariance(H, Sigma, gamma / (1.0 - beta), beta)
    return float(np.trace(sgdm)), float(np.trace(methods.stationary_covariance(H, Sigma, gamma, 0.0)))


def _sgd_below_sme1_sides(case: Case, methods: MethodSet) -> Sides:
    H, Sigma, eta = case["H"], case["Sigma"], case["eta"]
    exact = float(np.trace(methods.stationary_covariance(H, Sigma, eta, 0.0)))
    return exact, float(np.trace(sde_stationary_covariance(H, Sigma, eta, order=1)))


def _stability_inputs(inside: bool) -> Callable[[], Any]:
    def factory() -> Any:
        from hypothesis import strategies as st

        from theory.strategies import momenta

        margin = STABILITY_MARGIN
        curvature = st.one_of(st.sampled_from((1.0, 0.5, 2.0)), st.floats(0.01, 100.0, allow_subnormal=False))
        if inside:
            offsets = st.one_of(st.sampled_from((0.5, 0.25, 0.9)), st.floats(margin, 1.0 - margin))
        else:  # beyond the edge (offset > 0: eta h = T (1 + offset)), or negative curvature (offset < 0)
            offsets = st.one_of(
                st.sampled_from((0.5, 1.0, -0.5)),
                st.floats(margin, 10.0, allow_subnormal=False),
                st.floats(-10.0, -margin, allow_subnormal=False),
            )

        @st.composite
        def draw(draw_: Any) -> dict[str, Any]:
            form = draw_(st.sampled_from(FORMS))
            method = FORM_STABILITY[form]
            beta = 0.0 if method == "sgd" else draw_(momenta(max_value=0.99))
            threshold = float(stability_threshold(beta, method))
            h, offset = draw_(curvature), draw_(offsets)
            if inside:
                eta_h = offset * threshold
            elif offset > 0:
                eta_h = (1.0 + offset) * threshold
            else:
                eta_h, h = -offset * threshold, -h
            return {"form": form, "beta": beta, "h": h, "eta": abs(eta_h / h), "eta_h": eta_h * np.sign(h)}

        return draw()

    return factory


def _radii(case: Case) -> tuple[float, float]:
    """Spectral radius of the transition matrix (numerical eigenvalues) and of the characteristic polynomial."""
    form, beta, h, eta = case["form"], case["beta"], case["h"], case["eta"]
    A = _transition_matrix([[h]], eta, beta, form).transition
    matrix = float(np.max(np.abs(np.linalg.eigvals(A))))
    formula = float(spectral_radius(eta * h, beta, FORM_STABILITY[form]))
    return matrix, formula


def _stability_inside_sides(case: Case, methods: MethodSet) -> Sides:
    return max(_radii(case)), 1.0


def _stability_outside_sides(case: Case, methods: MethodSet) -> Sides:
    return 1.0, min(_radii(case))


def _svag_inputs() -> Any:
    from theory.strategies import svag_factors

    return svag_factors().map(lambda ell: {"ell": ell})


def _svag_sum_sides(case: Case, methods: MethodSet) -> Sides:
    r1, r2 = methods.svag_coefficients(case["ell"])
    return r1 + r2, 1.0, abs(r1) + abs(r2)


def _svag_square_sides(case: Case, methods: MethodSet) -> Sides:
    r1, r2 = methods.svag_coefficients(case["ell"])
    return r1 * r1 + r2 * r2, case["ell"]


# --- the catalogue ----------------------------------------------------------------------------------------------


def _quadratic_inputs(method: str, commuting: bool | None, eta_h_max: float | None = None, extra: str = "") -> str:
    region = "T(beta)" if eta_h_max is None else f"min(T(beta), {eta_h_max:g})"
    cap = "" if eta_h_max is None else f", eta_h_max={eta_h_max:g}"
    return (
        f"stable_quadratics({method!r}, max_dim=4, commuting={commuting}, betas=momenta(max_value=0.999){cap}): "
        "d = 1..4, largest eigenvalue of H and of Sigma 1, condition numbers <= 100, Sigma possibly singular, "
        f"eta*h_max = min(q {region}, (1 - 1e-3) T(beta)), q in [1e-3, 1]{extra}"
    )


_LOSS = r"\tfrac12\operatorname{tr}(HC_{\rm SGDM}(\eta,\beta))\le\tfrac12\operatorname{tr}(HC_{\rm SGD}(\eta))"
_PSD = r"C_{\rm SGD}(\eta)-C_{\rm SGDM}(\eta,\beta)\succeq0"
_SGD_REGION = r"0<\eta h_i<2,\ 0\le\beta<1"
_LOSS_NOTE = (
    "holds: tr(HC) = sum_i h_i S_ii f(h_i, h_i) with S = V' Sigma V depends only on the diagonal of S in H's "
    "eigenbasis, so the 1-D ratio 1 + 2 beta/(1+beta) * eta h/(2 - eta h) >= 1 applies direction by direction; "
    "commuting or not makes no difference."
)


def _build_catalogue() -> tuple[Bound, ...]:
    bounds = [
        Bound(
            id="sgdm_loss_le_sgd.commuting",
            statement=rf"{_LOSS}\quad({_SGD_REGION},\ H\Sigma=\Sigma H)",
            source="derived here from the 1-D ratio of THEORY.md 5.4 / claim 8 (theory.quadratic.regime_loss_ratio)",
            believed_true=True,
            inputs=_stable_quadratics("sgd", commuting=True),
            inputs_description=_quadratic_inputs("sgd", True),
            sides=_loss_sides,
            left_label="SGDM stationary loss tr(H C_SGDM)/2",
            right_label="SGD stationary loss tr(H C_SGD)/2",
            note=_LOSS_NOTE,
        ),
        Bound(
            id="sgdm_loss_le_sgd.noncommuting",
            statement=rf"{_LOSS}\quad({_SGD_REGION},\ \text{{any PSD }}\Sigma)",
            source="derived here (open question of issue #16: does the 1-D result extend to non-commuting H, Sigma?)",
            believed_true=True,
            inputs=_stable_quadratics("sgd", commuting=False),
            inputs_description=_quadratic_inputs("sgd", False),
            sides=_loss_sides,
            left_label="SGDM stationary loss tr(H C_SGDM)/2",
            right_label="SGD stationary loss tr(H C_SGD)/2",
            note=_LOSS_NOTE,
        ),
        Bound(
            id="psd_gap.commuting",
            statement=rf"{_PSD}\quad({_SGD_REGION},\ H\Sigma=\Sigma H)",
            source="derived here: per eigen-direction the 1-D variances (THEORY.md 5.4)",
            believed_true=True,
            inputs=_stable_quadratics("sgd", commuting=True),
            inputs_description=_quadratic_inputs("sgd", True),
            sides=_psd_sides,
            left_label="w' C_SGDM w at the w maximising w' C_SGDM w / w' C_SGD w",
            right_label="w' C_SGD w",
            rtol=1e-10,
        ),
        Bound(
            id="psd_gap.noncommuting",
            statement=rf"{_PSD}\quad({_SGD_REGION},\ \text{{any PSD }}\Sigma)",
            source="open question of issue #16; refuted by this search (finding)",
            believed_true=False,
            inputs=_stable_quadratics("sgd", commuting=False),
            inputs_description=_quadratic_inputs("sgd", False),
            sides=_psd_sides,
            left_label="w' C_SGDM w at the w maximising w' C_SGDM w / w' C_SGD w",
            right_label="w' C_SGD w",
            rtol=1e-10,
            note=(
                "FALSE for non-commuting (H, Sigma). In H's eigenbasis C_SGD - C_SGDM = S o G (Hadamard product) with "
                "G_ij = f_SGD(h_i, h_j) - f_SGDM(h_i, h_j); to leading order in eta, G_ij is proportional to "
                "1 - 2(1+beta) h_i h_j/(h_i+h_j)^2, whose 2x2 minors are negative whenever h_i != h_j and beta > 0, so "
                "a noise covariance correlating two directions of different curvature makes the gap indefinite. "
                "Shrunk counterexample (mvm bounds, seed 0): H = diag(1, 1/2), Sigma = R diag(1, 1/2) R' with R the "
                "rotation by 1 rad, eta = 1/2, beta = 0.99: w'C_SGDM w / w'C_SGD w = 1.078 along the worst w. "
                "Restated correctly as psd_gap.commuting and psd_gap.eigendirections (and the trace form "
                "sgdm_loss_le_sgd.noncommuting)."
            ),
        ),
        Bound(
            id="psd_gap.eigendirections",
            statement=(
                r"v_i^\top C_{\rm SGDM}(\eta,\beta)v_i\le v_i^\top C_{\rm SGD}(\eta)v_i"
                rf"\ \text{{for every eigenvector }}v_i\text{{ of }}H\quad({_SGD_REGION},\ \text{{any PSD }}\Sigma)"
            ),
            source="derived here: (V'CV)_ii is the 1-D variance with s^2 = S_ii (restatement of psd_gap.noncommuting)",
            believed_true=True,
            inputs=_stable_quadratics("sgd", commuting=None),
            inputs_description=_quadratic_inputs("sgd", None),
            sides=_eigendirection_sides,
            left_label="v_i' C_SGDM v_i (worst eigen-direction)",
            right_label="v_i' C_SGD v_i",
            rtol=1e-10,
            note="Equivalently tr(F (C_SGD - C_SGDM)) >= 0 for every PSD F commuting with H (F = H: the loss).",
        ),
        Bound(
            id="series_remainder",
            statement=(
                r"\big|(V^\top C_{\rm SGDM}V)_{ii}-c_1\eta-c_2\eta^2\big|\le K(\beta)\,h_iS_{ii}\,\eta^3,\ "
                r"K(\beta)=\frac{(1-\beta)^2}{2(1+\beta)(3+5\beta)}\quad(0<\eta h_i\le\tfrac12,\ 0\le\beta<1)"
            ),
            source=(
                "derived here (theory.series_remainder.series_remainder_bound: SymPy, monotone remainder ratio); "
                "c_1, c_2 from theory.quadratic_symbolic.series_coefficients (THEORY.md 5.5); K(0) = 1/6"
            ),
            believed_true=True,
            inputs=_stable_quadratics("heavy_ball", commuting=None, eta_h_max=0.5),
            inputs_description=_quadratic_inputs("heavy_ball", None, eta_h_max=0.5),
            sides=_series_sides,
            left_label="|remainder after the eta^2 term| (worst eigen-direction)",
            right_label="K(beta) h_i S_ii eta^3",
            rtol=1e-11,
            note="The constant is attained at eta h = 1/2 (ratio 1): it cannot be improved on this range.",
        ),
        Bound(
            id="stability.inside",
            statement=(
                r"\rho(A)<1\ \text{for }0<\eta h<T(\beta):\ T=2\ (\text{SGD}),\ \frac{2(1+\beta)}{1-\beta}\ "
                r"(\text{heavy ball}),\ \frac{2(1+\beta)}{(1-\beta)(1+2\beta)}\ (\text{Nesterov})"
            ),
            source="THEORY.md 5.3 (Jury conditions; Cohen et al. 2021 for SGD and heavy ball)",
            believed_true=True,
            inputs=_stability_inputs(inside=True),
            inputs_description=(
                "form in theory.quadratic.FORMS, beta in momenta(max_value=0.99) (0 for SGD), h in {1, 0.5, 2} or "
                "[0.01, 100], eta h = q T(beta) with q in [1e-6, 1 - 1e-6]"
            ),
            sides=_stability_inside_sides,
            left_label="spectral radius (max of transition_matrix eigenvalues and spectral_radius)",
            right_label="1",
            rtol=1e-10,
        ),
        Bound(
            id="stability.outside",
            statement=r"\rho(A)\ge1\ \text{for }\eta h\ge T(\beta)\ \text{or}\ \eta h\le0",
            source="THEORY.md 5.3 (Jury conditions; Cohen et al. 2021, footnote on negative curvature)",
            believed_true=True,
            inputs=_stability_inputs(inside=False),
            inputs_description=(
                "form, beta, |h| as in stability.inside; eta h = (1 + q) T(beta) with q in [1e-6, 10], or "
                "eta h = -q T(beta) (negative curvature) with q in [1e-6, 10]"
            ),
            sides=_stability_outside_sides,
            left_label="1",
            right_label="spectral radius (min of transition_matrix eigenvalues and spectral_radius)",
            rtol=1e-10,
        ),
        Bound(
            id="sme1_closer_than_sme2",
            statement=(
                r"\|C_{\rm SGD}(\eta)-P_{\rm SME1}\|_F\le\|C_{\rm SGD}(\eta)-P_{\rm SME2}\|_F\quad"
                r"(0<\eta h_i<2,\ \text{any PSD }\Sigma)"
            ),
            source=(
                "THEORY.md 4.3 (1-D); derived here for matrices: in H's eigenbasis f - f_2 = (f - f_1) + (f_1 - f_2) "
                "with both terms > 0 entrywise"
            ),
            believed_true=True,
            inputs=_stable_quadratics("sgd", commuting=None),
            inputs_description=_quadratic_inputs("sgd", None, extra=" (beta unused)"),
            sides=_sme1_closer_sides,
            left_label="||C_SGD - P_SME1||_F",
            right_label="||C_SGD - P_SME2||_F",
            rtol=1e-11,
            note="Restatement of sme2_closer_than_sme1, which is false at every stable eta.",
        ),
        Bound(
            id="sme2_closer_than_sme1",
            statement=(
                r"\|C_{\rm SGD}(\eta)-P_{\rm SME2}\|_F\le\|C_{\rm SGD}(\eta)-P_{\rm SME1}\|_F\quad"
                r"(0<\eta h_i<2,\ \text{any PSD }\Sigma)"
            ),
            source="the natural expectation from weak orders (Li, Tai, E); THEORY.md 4.3 says otherwise",
            believed_true=False,
            inputs=_stable_quadratics("sgd", commuting=None),
            inputs_description=_quadratic_inputs("sgd", None, extra=" (beta unused)"),
            sides=_sme2_closer_sides,
            left_label="||C_SGD - P_SME2||_F",
            right_label="||C_SGD - P_SME1||_F",
            rtol=1e-11,
            note=(
                "FALSE at every stable eta, not only somewhere: exact > SME1 > SME2 entrywise in H's eigenbasis "
                "(1-D: eta s^2/(h(2 - eta h)) > eta s^2/(2h) > eta s^2/(h(2 + eta h))), so SME2's eta^2 correction "
                "points the wrong way (THEORY.md 4.3). Its higher weak order is about finite horizons. Shrunk "
                "counterexample: H = Sigma = [1], eta = 1: ||C - P_SME2|| = 2/3 > ||C - P_SME1|| = 1/2."
            ),
        ),
        Bound(
            id="svag.sum",
            statement=r"r_1(\ell)+r_2(\ell)=1\quad(\ell\ge1)",
            source="Definition 5.1 (SVAG; Li, Malladi, Arora 2021, THEORY.md 6.2)",
            believed_true=True,
            inputs=_svag_inputs,
            inputs_description="svag_factors(): ell in {1, 2, 4, 8}, an integer in [1, 1024], or a float in [1, 1e4]",
            sides=_svag_sum_sides,
            left_label="r1 + r2",
            right_label="1",
            relation="==",
            rtol=1e-12,
        ),
        Bound(
            id="svag.square_sum",
            statement=r"r_1(\ell)^2+r_2(\ell)^2=\ell\quad(\ell\ge1)",
            source="Definition 5.1 (SVAG; Li, Malladi, Arora 2021, THEORY.md 6.2)",
            believed_true=True,
            inputs=_svag_inputs,
            inputs_description="svag_factors(): ell in {1, 2, 4, 8}, an integer in [1, 1024], or a float in [1, 1e4]",
            sides=_svag_square_sides,
            left_label="r1^2 + r2^2",
            right_label="ell",
            relation="==",
            rtol=1e-12,
        ),
        Bound(
            id="control.same_gamma_variance",
            statement=(
                r"\operatorname{tr}C_{\rm SGDM}\big(\tfrac{\gamma}{1-\beta},\beta\big)\le\operatorname{tr}"
                r"C_{\rm SGD}(\gamma)\quad(0<\gamma h_i<2)"
            ),
            source="negative control: false by a factor near 1/(1-beta) (THEORY.md 5.4, Zhang et al. 2019)",
            believed_true=False,
            control=True,
            inputs=_stable_quadratics("sgd", commuting=None),
            inputs_description=_quadratic_inputs("sgd", None, extra=" (eta read as PyTorch's gamma)"),
            sides=_same_gamma_sides,
            left_label="tr C_SGDM at eta = gamma/(1-beta) (the same PyTorch learning rate)",
            right_label="tr C_SGD at gamma",
        ),
        Bound(
            id="control.sgd_below_sme1",
            statement=r"\operatorname{tr}C_{\rm SGD}(\eta)\le\operatorname{tr}P_{\rm SME1}(\eta)\quad(0<\eta h_i<2)",
            source="negative control: false, the exact variance exceeds SME1's by eta^2 s^2/4 + ... (THEORY.md 4.3)",
            believed_true=False,
            control=True,
            inputs=_stable_quadratics("sgd", commuting=None),
            inputs_description=_quadratic_inputs("sgd", None),
            sides=_sgd_below_sme1_sides,
            left_label="tr C_SGD",
            right_label="tr P_SME1 = tr of eta Sigma / (2H) (Lyapunov)",
        ),
        Bound(
            id="control.series_bound_whole_region",
            statement=(
                r"\big|(V^\top C_{\rm SGDM}V)_{ii}-c_1\eta-c_2\eta^2\big|\le K(\beta)\,h_iS_{ii}\,\eta^3\quad"
                r"(0<\eta h_i<\tfrac{2(1+\beta)}{1-\beta})"
            ),
            source="negative control: series_remainder's constant used beyond eta h = 1/2 (false for any eta h > 1/2)",
            believed_true=False,
            control=True,
            inputs=_stable_quadratics("heavy_ball", commuting=None),
            inputs_description=_quadratic_inputs("heavy_ball", None),
            sides=_series_sides,
            left_label="|remainder after the eta^2 term| (worst eigen-direction)",
            right_label="K(beta) h_i S_ii eta^3",
            rtol=1e-11,
        ),
    ]
    ids = [b.id for b in bounds]
    if len(set(ids)) != len(ids):
        raise AssertionError(f"duplicate bound ids in {ids}")
    return tuple(bounds)


#: The catalogue, in report order.
BOUNDS: tuple[Bound, ...] = _build_catalogue()


def available_bounds(catalogue: Sequence[Bound] = BOUNDS) -> tuple[str, ...]:
    """The ids of the catalogue, in order."""
    return tuple(b.id for b in catalogue)


def select_bounds(only: Iterable[str] | None = None, catalogue: Sequence[Bound] = BOUNDS) -> list[Bound]:
    """The bounds named in ``only`` (all when None), in catalogue order; ``ValueError`` listing the known ids."""
    if only is None:
        return list(catalogue)
    wanted = list(only)
    known = available_bounds(catalogue)
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise ValueError(f"unknown bound id(s) {unknown}; known: {', '.join(known)}")
    return [b for b in catalogue if b.id in wanted]


# --- the search ---------------------------------------------------------------------------------------------------


class _Violation(AssertionError):
    """Raised inside the property when an input violates the bound (Hypothesis then shrinks it)."""


@dataclass
class _Record:
    calls: int = 0
    first_failure: int | None = None
    max_ratio: float = math.nan
    last: tuple[Case, float | None, float | None, str | None] | None = None

    def see(self, ratio: float, relation: str) -> None:
        if not math.isfinite(ratio):
            return
        score = abs(ratio - 1.0) if relation == "==" else ratio
        best = abs(self.max_ratio - 1.0) if relation == "==" else self.max_ratio
        if math.isnan(self.max_ratio) or score > best:
            self.max_ratio = ratio

    def fail(self, case: Case, left: float | None, right: float | None, error: str | None) -> None:
        if self.first_failure is None:
            self.first_failure = self.calls
        self.last = (case, left, right, error)


def _bound_seed(seed: int, bound_id: str) -> int:
    return zlib.crc32(f"{seed}:{bound_id}".encode())


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (examples per bound), got {budget!r}")
    return int(budget)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def search_bound(
    bound: Bound, *, budget: int = DEFAULT_BUDGET, seed: int = 0, methods: MethodSet = REFERENCE
) -> BoundResult:
    """Search one bound for a counterexample with Hypothesis (see :func:`search_bounds`)."""
    try:
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings, target
        from hypothesis import seed as hypothesis_seed
    except ImportError as exc:
        raise ImportError("searching bounds needs Hypothesis: pip install 'hypothesis>=6.100'") from exc
    budget, seed = _check_budget(budget), _check_seed(seed)
    record = _Record()

    @hypothesis_seed(_bound_seed(seed, bound.id))
    @settings(
        max_examples=budget,
        database=None,
        derandomize=False,
        deadline=None,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.target, Phase.shrink),
        print_blob=False,
    )
    @given(bound.inputs())
    def check(case: Case) -> None:
        record.calls += 1
        try:
            left, right, holds, ratio = bound.evaluate(case, methods)
        except Exception as exc:
            record.fail(case, None, None, f"{type(exc).__name__}: {exc}")
            raise
        if not holds:
            record.fail(case, left, right, None)
            raise _Violation(f"{bound.id}: left={left!r} > right={right!r}")
        if record.first_failure is None:
            record.see(ratio, bound.relation)
        if math.isfinite(ratio):
            target(abs(ratio - 1.0) if bound.relation == "==" else ratio, label="left/right")

    start = time.perf_counter()
    status, error = "holds", None
    try:
        check()
    except _Violation:
        status = "refuted"
    except Exception as exc:  # the sides raised on some input, or Hypothesis could not run the search
        status = "error"
        error = record.last[3] if record.last is not None and record.last[3] else f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - start
    left = right = None
    counterexample = None
    max_ratio = record.max_ratio
    if status != "holds" and record.last is not None:
        case, left, right, _ = record.last
        counterexample = dict(case)
        if left is not None and right is not None:
            max_ratio = _ratio(left, right)
    examples = record.calls if record.first_failure is None else record.first_failure
    passed = status != "error" and (status == "holds") == bound.believed_true
    return BoundResult(
        bound_id=bound.id,
        statement=bound.statement,
        source=bound.source,
        believed_true=bound.believed_true,
        control=bound.control,
        status=status,
        passed=passed,
        examples=examples,
        shrink_calls=record.calls - examples,
        max_ratio=max_ratio,
        left=left,
        right=right,
        counterexample=counterexample,
        relation=bound.relation,
        rtol=bound.rtol,
        left_label=bound.left_label,
        right_label=bound.right_label,
        budget=budget,
        seed=seed,
        wall_time_s=wall,
        error=error,
        note=bound.note,
        details={"inputs": bound.inputs_description},
    )


def search_bounds(
    only: Iterable[str] | None = None,
    budget: int = DEFAULT_BUDGET,
    seed: int = 0,
    *,
    methods: MethodSet = REFERENCE,
    catalogue: Sequence[Bound] = BOUNDS,
    on_result: Callable[[BoundResult], None] | None = None,
) -> list[BoundResult]:
    r"""Search every bound of the catalogue (or those in ``only``) for a counterexample; one result per bound.

    Each bound gets ``budget`` examples (Hypothesis' ``max_examples``: generation plus targeting toward the largest
    left/right), drawn from a seed derived from ``seed`` and the bound's id (no example database), so a run is
    reproducible.  A counterexample is shrunk to a minimal one.  ``methods`` supplies the implementations the
    sides use (:class:`proofs_check.methods.MethodSet`); ``on_result`` is called after each bound.  Raises
    ``ValueError`` for unknown ids (listing the known ones), a budget below 1 or a negative seed.
    """
    selected = select_bounds(only, catalogue)
    budget, seed = _check_budget(budget), _check_seed(seed)
    results = []
    for bound in selected:
        result = search_bound(bound, budget=budget, seed=seed, methods=methods)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


# --- reports ------------------------------------------------------------------------------------------------------


def _format_value(value: Any) -> str:
    """Scalars to 10 significant digits; arrays on one line, entries to 6 (below 1e-12 of the largest shown as 0)."""
    if isinstance(value, np.ndarray):
        cutoff = 1e-12 * float(np.max(np.abs(value))) if value.size else 0.0

        def entry(x: float) -> str:
            return f"{(0.0 if abs(x) < cutoff else x):.6g}"

        def nested(a: np.ndarray) -> str:
            return "[" + ", ".join(nested(row) if a.ndim > 1 else entry(row) for row in a) + "]"

        return nested(value)
    if isinstance(value, float | np.floating):
        return f"{float(value):.10g}"
    return str(value)


def _format_ratio(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def format_bounds(results: Sequence[BoundResult]) -> str:
    """Terminal report: one row per bound, then each counterexample with both sides, then a summary line."""
    from tabulate import tabulate

    rows = [
        [
            r.bound_id,
            "true" if r.believed_true else ("false (control)" if r.control else "false"),
            r.verdict,
            str(r.examples) + (f" (+{r.shrink_calls} shrinking)" if r.shrink_calls else ""),
            _format_ratio(r.max_ratio),
            f"{r.wall_time_s:.1f}",
        ]
        for r in results
    ]
    headers = ["bound", "believed", "verdict", "examples", "max left/right", "time [s]"]
    lines = [tabulate(rows, headers=headers, tablefmt="simple")]
    for r in results:
        if r.status == "holds":
            continue
        lines.append("")
        title = "counterexample (shrunk)" if r.status == "refuted" else "error"
        lines.append(f"{r.bound_id}: {title}")
        if r.counterexample is not None:
            for key, value in r.counterexample.items():
                lines.append(f"    {key} = {_format_value(value)}")
        if r.status == "refuted":
            relation = "<=" if r.relation == "<=" else "=="
            lines.append(f"    left  = {r.left:.10g}   [{r.left_label}]")
            lines.append(f"    right = {r.right:.10g}   [{r.right_label}]")
            lines.append(f"    left/right = {_format_ratio(r.max_ratio)}; the bound says left {relation} right")
        if r.error:
            lines.append(f"    {r.error}")
    unexpected = [r for r in results if not r.passed]
    refuted = sum(r.status == "refuted" and not r.believed_true for r in results)
    lines.append("")
    lines.append(
        f"{len(results)} bounds: {sum(r.status == 'holds' and r.believed_true for r in results)} hold, "
        f"{refuted} refuted as expected, {len(unexpected)} unexpected"
        + (f" ({', '.join(r.bound_id for r in unexpected)})" if unexpected else "")
    )
    return "\n".join(lines)


def write_bounds_json(results: Sequence[BoundResult], path: str | os.PathLike[str]) -> Path:
    """Write the results as a JSON list of dicts, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_text(json.dumps([r.to_dict() for r in results], indent=2), target)
