r"""Public Hypothesis strategies for property-based tests of bounds about SGD and SGDM.

Use them to test your own inequality against the exact theory (docs/guide/bounds.md, "Test your own bound";
``tests/examples/test_my_bound.py``)::

    from hypothesis import given
    from theory.strategies import stable_quadratics

    @given(stable_quadratics("sgd", commuting=False))
    def test_my_bound(p):            # p: theory.quadratic.QuadraticProblem (H, Sigma, eta, beta, basis)
        ...

Hypothesis is imported lazily, inside the functions: ``import theory`` and ``import theory.strategies`` work
without it, and a strategy function called without Hypothesis installed raises ``ImportError`` saying what to
install.  The strategies are not re-exported by :mod:`theory`; import them from this module.

Every strategy draws bounded, finite floats (no NaN, no inf, no subnormals) and *shrinks toward simple cases*:
dimension 1, the identity rotation, commuting noise, equal eigenvalues, round numbers (``beta = 0``, a learning
rate at half the stable range, ``ell = 1``).  A shrunk counterexample is therefore as small and as round as the
inequality allows.  The distributions are stated per function; none is uniform over anything canonical (Hypothesis
biases toward boundaries and simple values by design), so use these to *search*, not to estimate probabilities.

Conventions (DESIGN.md 2): ``eta`` is the effective learning rate of paper eq. (3), stability thresholds are
suprema of ``eta * h`` (:func:`theory.quadratic.stability_threshold`), SGD is ``beta = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from theory.params import MomentumParams
from theory.quadratic import STABILITY_METHODS, QuadraticProblem, check_problem, stability_threshold

if TYPE_CHECKING:  # only for annotations: Hypothesis stays an optional dependency
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "ANALYTIC_KINDS",
    "NON_COMMUTING_THRESHOLD",
    "ROUND_FRACTIONS",
    "ROUND_MOMENTA",
    "alpha_regimes",
    "analytic_problems",
    "eigenvalues",
    "hessians",
    "momenta",
    "momentum_schedules",
    "noise_covariances",
    "quadratic_pairs",
    "rotations",
    "stable_hyperparameters",
    "stable_quadratics",
    "svag_factors",
]

#: Momentum values tried first (and shrunk to, in this order): SGD, then the usual choices.
ROUND_MOMENTA: tuple[float, ...] = (0.0, 0.5, 0.9, 0.99)
#: Fractions of the stable range of ``eta * h`` tried first (and shrunk to, in this order).
ROUND_FRACTIONS: tuple[float, ...] = (0.5, 0.25, 0.1, 0.75, 0.9, 1.0)
#: Eigenvalue ratios (to the largest) tried first, shrunk to in this order.
_ROUND_RATIOS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1, 0.01)
#: Kinds of :func:`analytic_problems`, in shrinking order.
ANALYTIC_KINDS: tuple[str, ...] = (
    "quartic_well",
    "log_cosh_well",
    "double_well_2d",
    "noisy_quadratic",
    "linear_regression",
)


def _st() -> Any:
    """``hypothesis.strategies``, imported on first use."""
    try:
        from hypothesis import strategies
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(
            "theory.strategies needs Hypothesis: pip install 'hypothesis>=6.100' (or this package's [test] extra)"
        ) from exc
    return strategies


def _floats(low: float, high: float) -> SearchStrategy[float]:
    return _st().floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _log_uniform(low: float, high: float) -> SearchStrategy[float]:
    """:math:`10^u`, :math:`u` uniform-ish on :math:`[\\log_{10}low,\\log_{10}high]`, clipped into the range."""
    return _floats(math.log10(low), math.log10(high)).map(lambda u: float(min(max(10.0**u, low), high)))


def _round_or(values: Sequence[float], low: float, high: float, *extra: SearchStrategy[float]) -> SearchStrategy[float]:
    """Round values inside [low, high] first (the shrink target is the first of them), then the continuous ones."""
    st = _st()
    inside = [v for v in values if low <= v <= high]
    branches = ([st.sampled_from(inside)] if inside else []) + [*extra, _floats(low, high)]
    return st.one_of(*branches)


def _check_range(name: str, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name}: need finite bounds with {low!r} <= {high!r}")


def _check_dims(min_dim: int, max_dim: int) -> None:
    if isinstance(min_dim, bool) or isinstance(max_dim, bool) or not (1 <= int(min_dim) <= int(max_dim) <= 64):
        raise ValueError(f"dimensions: need integers 1 <= min_dim <= max_dim <= 64, got {min_dim!r}, {max_dim!r}")


def _check_condition(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 1.0):
        raise ValueError(f"{name} (a condition number) must be a finite number >= 1, got {value!r}")
    return value


# --- scalars ---------------------------------------------------------------------------------------------------


def momenta(*, min_value: float = 0.0, max_value: float = 0.99) -> SearchStrategy[float]:
    r"""Momentum coefficients :math:`\beta\in[\text{min\_value},\text{max\_value}]\subset[0,1)`.

    Distribution: one of :data:`ROUND_MOMENTA` inside the range (0, 0.5, 0.9, 0.99), or a float in the range
    (Hypothesis' float distribution: endpoints and simple values often, otherwise spread over the interval).
    Shrinks to the smallest round value in range (0 by default: SGD).
    """
    _check_range("momenta", min_value, max_value)
    if not (0.0 <= min_value and max_value < 1.0):
        raise ValueError(f"momenta: need 0 <= min_value <= max_value < 1, got {min_value!r}, {max_value!r}")
    return _round_or(ROUND_MOMENTA, min_value, max_value)


def svag_factors(*, max_value: float = 1e4) -> SearchStrategy[float]:
    r"""SVAG factors :math:`\ell\in[1,\text{max\_value}]` (Definition 5.1), as floats.

    Distribution: one of 1, 2, 4, 8 (the paper's sweep), an integer in :math:`[1,\min(1024,\text{max\_value})]`, or a
    float in :math:`[1,\text{max\_value}]`.  Shrinks to :math:`\ell=1` (plain SGD).
    """
    st = _st()
    _check_range("svag_factors", 1.0, max_value)
    integers = st.integers(1, int(min(1024, max_value))).map(float)
    return _round_or((1.0, 2.0, 4.0, 8.0), 1.0, max_value, integers)


# --- matrices ----------------------------------------------------------------------------------------------------


def _ratios(max_condition: float, allow_zero: bool) -> SearchStrategy[float]:
    """Eigenvalue ratios to the largest: round values in range [and 0 when allowed], log-uniform, then any float.

    Every branch costs Hypothesis the same number of choices (branch, value), so shrinking, which prefers shorter
    choice sequences, compares by value: 1 is the simplest ratio and 0 (a singular matrix) is not "cheaper".
    """
    st = _st()
    low = 1.0 / _check_condition("max_condition", max_condition)
    rounds = [v for v in _ROUND_RATIOS if low <= v <= 1.0] + ([0.0] if allow_zero else [])
    return st.one_of(st.sampled_from(rounds), *([_log_uniform(low, 1.0)] if low < 1.0 else []), _floats(low, 1.0))


def _check_largest(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _spectrum(largest: float, ratios: Sequence[float], dim: int) -> np.ndarray:
    return largest * np.array(sorted([1.0, *ratios[: dim - 1]], reverse=True), dtype=np.float64)


def eigenvalues(
    dim: int, *, max_condition: float = 100.0, largest: float = 1.0, allow_zero: bool = False
) -> SearchStrategy[np.ndarray]:
    r"""Sorted (descending) eigenvalues of length ``dim`` with the largest exactly ``largest`` (> 0).

    The others are ``largest`` times a ratio in :math:`[1/\text{max\_condition},1]`: one of 1, 0.5, 0.25, 0.1, 0.01
    (those inside the range), or log-uniform on the range, or any float in it; with ``allow_zero`` also exactly 0
    (a singular matrix).  So the condition number (of the non-zero part) is at most ``max_condition``.  Shrinks to
    all equal to ``largest``.  Scale invariance: on a quadratic only :math:`\eta h` matters, so fixing the largest
    eigenvalue loses nothing once the learning rate is drawn relative to it (as :func:`stable_quadratics` does).
    """
    st = _st()
    _check_dims(dim, dim)
    largest = _check_largest("largest", largest)
    ratio = _ratios(max_condition, allow_zero)
    return st.lists(ratio, min_size=dim - 1, max_size=dim - 1).map(lambda rest: _spectrum(largest, rest, dim))


def _plane_pairs(dim: int) -> list[tuple[int, int]]:
    """Coordinate planes (i, j), i < j, ordered by j, then i."""
    return [(i, j) for j in range(dim) for i in range(j)]


def _slot_rotation(angles: Sequence[float], dim: int, slots: int) -> np.ndarray:
    """Rotation of ``dim`` coordinates, the last ``dim`` of ``slots``, by the Givens rotations of their planes.

    ``angles`` holds one angle per plane of all ``slots`` coordinates (:func:`_plane_pairs` order); the planes with
    a coordinate outside the last ``dim`` are skipped.
    """
    offset = slots - dim
    Q = np.eye(dim)
    for (i, j), angle in zip(_plane_pairs(slots), angles, strict=True):
        if i < offset or angle == 0.0:
            continue
        c, s = math.cos(angle), math.sin(angle)
        G = np.eye(dim)
        G[i - offset, i - offset] = G[j - offset, j - offset] = c
        G[i - offset, j - offset], G[j - offset, i - offset] = -s, s
        Q = Q @ G
    return Q


def _slot_spectrum(ratios: Sequence[float], dim: int, largest: float) -> np.ndarray:
    """The last ``dim`` ratios scaled so that the largest is exactly ``largest`` (all zero: the last one set)."""
    used = np.array(ratios[len(ratios) - dim :], dtype=np.float64)
    top = float(np.max(used))
    if top == 0.0:
        used[-1], top = 1.0, 1.0
    return used if top == 1.0 and largest == 1.0 else largest * used / top


def _angles(dim: int) -> SearchStrategy[list[float]]:
    count = dim * (dim - 1) // 2
    return _st().lists(_floats(-math.pi, math.pi), min_size=count, max_size=count)


def rotations(dim: int) -> SearchStrategy[np.ndarray]:
    r"""Rotations :math:`Q\in SO(d)`: products of the :math:`d(d-1)/2` Givens rotations of the coordinate planes.

    Each angle is a float in :math:`[-\pi,\pi]` (not Haar-distributed: Hypothesis' float distribution per angle).
    Shrinks to the identity (all angles 0).  Orthogonal up to rounding (:math:`\|Q^\top Q-I\|\lesssim10^{-15}`).
    """
    _check_dims(dim, dim)
    return _angles(dim).map(lambda a: _slot_rotation(a, dim, dim))


def _symmetric(V: np.ndarray, values: np.ndarray) -> np.ndarray:
    M = (V * values) @ V.T
    return (M + M.T) / 2.0


# Strategies over a range of dimensions draw the dimension d first and then every parameter for max_dim coordinate
# "slots" (fixed-size lists), of which a d-dimensional problem uses the last d.  Hypothesis shrinks a list toward
# simple values from its front, which leaves what a counterexample needs in the last slots; when it then lowers d,
# those slots keep their meaning, so a counterexample found in 4-D shrinks to the 2-D one inside it.  The eigenvalues
# are not sorted (the slot order is the coordinate order).


def hessians(
    *, min_dim: int = 1, max_dim: int = 3, max_condition: float = 100.0, largest: float = 1.0
) -> SearchStrategy[np.ndarray]:
    r"""Symmetric positive definite :math:`H=Q\operatorname{diag}(h)Q^\top` of dimension ``min_dim..max_dim``.

    :math:`h` as in :func:`eigenvalues` (largest exactly ``largest``, condition number at most ``max_condition``),
    :math:`Q` as in :func:`rotations`.  Shrinks to :math:`H=\text{largest}\cdot I_1`.
    """
    st = _st()
    _check_dims(min_dim, max_dim)
    largest = _check_largest("largest", largest)
    ratios = st.lists(_ratios(max_condition, False), min_size=max_dim, max_size=max_dim)

    @st.composite
    def draw_hessian(draw: Any) -> np.ndarray:
        d = draw(st.integers(min_dim, max_dim))
        h = _slot_spectrum(draw(ratios), d, largest)
        return _symmetric(_slot_rotation(draw(_angles(max_dim)), d, max_dim), h)

    return draw_hessian()


def noise_covariances(
    dim: int,
    *,
    basis: np.ndarray | None = None,
    max_condition: float = 100.0,
    scale: float = 1.0,
    singular: bool = True,
) -> SearchStrategy[np.ndarray]:
    r"""Positive semi-definite :math:`\Sigma=W\operatorname{diag}(\sigma)W^\top` of dimension ``dim``.

    The largest eigenvalue is exactly ``scale``; the others are ``scale`` times a ratio as in :func:`eigenvalues`
    (in :math:`[1/\text{max\_condition},1]`), or exactly 0 when ``singular`` (a rank-deficient covariance; at least
    one eigenvalue stays ``scale``).  :math:`W` is ``basis`` when given (pass the eigenvectors of :math:`H` for a
    :math:`\Sigma` commuting with :math:`H`), else a rotation as in :func:`rotations`.  Shrinks to ``scale * I``.
    """
    st = _st()
    scale = _check_largest("scale", scale)
    if basis is not None and np.shape(basis) != (dim, dim):
        raise ValueError(f"basis must have shape ({dim}, {dim}), got {np.shape(basis)}")

    @st.composite
    def draw_noise(draw: Any) -> np.ndarray:
        values = draw(eigenvalues(dim, max_condition=max_condition, largest=scale, allow_zero=singular))
        W = np.asarray(basis, dtype=np.float64) if basis is not None else draw(rotations(dim))
        return _symmetric(W, values)

    return draw_noise()


def _commutator_ratio(H: np.ndarray, Sigma: np.ndarray) -> float:
    norm = float(np.linalg.norm(H) * np.linalg.norm(Sigma))
    return float(np.linalg.norm(H @ Sigma - Sigma @ H)) / norm if norm > 0 else 0.0


#: :func:`quadratic_pairs` with ``commuting=False`` keeps only pairs with
#: :math:`\|H\Sigma-\Sigma H\|_F\ge` this times :math:`\|H\|_F\|\Sigma\|_F`.
NON_COMMUTING_THRESHOLD = 1e-3


def quadratic_pairs(
    *,
    min_dim: int = 1,
    max_dim: int = 3,
    commuting: bool | None = None,
    max_condition: float = 100.0,
    noise_max_condition: float = 100.0,
    singular_noise: bool = True,
    largest: float = 1.0,
    noise_scale: float = 1.0,
) -> SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    r"""Noisy quadratics ``(H, Sigma)``: :math:`\mathcal L=\tfrac12x^\top Hx`, gradient noise covariance :math:`\Sigma`.

    :math:`H` symmetric positive definite as in :func:`hessians` (largest eigenvalue exactly ``largest``, condition
    number at most ``max_condition``); :math:`\Sigma` positive semi-definite as in :func:`noise_covariances`
    (largest eigenvalue ``noise_scale``, condition of the non-zero part at most ``noise_max_condition``, possibly
    singular when ``singular_noise``).

    ``commuting=True``: :math:`\Sigma` shares :math:`H`'s eigenvectors (:math:`H\Sigma=\Sigma H`).
    ``commuting=False``: :math:`\Sigma` has its own rotation and the pair is kept only if
    :math:`\|H\Sigma-\Sigma H\|_F\ge10^{-3}\|H\|_F\|\Sigma\|_F` (:data:`NON_COMMUTING_THRESHOLD`); this needs
    dimension >= 2, so ``min_dim`` is raised to 2.  ``commuting=None`` (default): either kind, shrinking to commuting.
    Shrinks to ``H = [[largest]]``, ``Sigma = [[noise_scale]]``.
    """
    st = _st()
    _check_dims(min_dim, max_dim)
    largest, noise_scale = _check_largest("largest", largest), _check_largest("noise_scale", noise_scale)
    if commuting is False:
        if max_dim < 2:
            raise ValueError("commuting=False needs max_dim >= 2 (1-D matrices always commute)")
        min_dim = max(min_dim, 2)
    h_ratios = st.lists(_ratios(max_condition, False), min_size=max_dim, max_size=max_dim)
    noise_ratios = st.lists(_ratios(noise_max_condition, singular_noise), min_size=max_dim, max_size=max_dim)

    @st.composite
    def draw_pair(draw: Any) -> tuple[np.ndarray, np.ndarray]:
        d = draw(st.integers(min_dim, max_dim))
        shared = draw(st.booleans().map(lambda b: not b)) if commuting is None else commuting
        V = _slot_rotation(draw(_angles(max_dim)), d, max_dim)
        H = _symmetric(V, _slot_spectrum(draw(h_ratios), d, largest))
        W = _slot_rotation(draw(_angles(max_dim)), d, max_dim)
        Sigma = _symmetric(V if shared else W, _slot_spectrum(draw(noise_ratios), d, noise_scale))
        if commuting is False:
            from hypothesis import assume

            assume(_commutator_ratio(H, Sigma) >= NON_COMMUTING_THRESHOLD)
        return H, Sigma

    return draw_pair()


# --- hyper-parameters --------------------------------------------------------------------------------------------


def _check_method(method: str) -> str:
    if method not in STABILITY_METHODS:
        raise ValueError(f"method must be one of {STABILITY_METHODS}, got {method!r}")
    return method


def _check_margin(margin: float) -> float:
    margin = float(margin)
    if not (0.0 < margin < 0.5):
        raise ValueError(f"margin must lie in (0, 0.5) (a fraction of the stable range), got {margin!r}")
    return margin


def stable_hyperparameters(
    method: str = "heavy_ball",
    *,
    h_max: float = 1.0,
    margin: float = 1e-3,
    betas: SearchStrategy[float] | None = None,
    eta_h_max: float | None = None,
) -> SearchStrategy[MomentumParams]:
    r"""Hyper-parameters :math:`(\eta,\beta)` strictly inside the exact stable region of ``method``, with a margin.

    ``method`` is ``"sgd"``, ``"heavy_ball"`` (paper eq. (3), PyTorch, Polyak) or ``"nesterov"``, with threshold
    :math:`T(\beta)` of :func:`theory.quadratic.stability_threshold` (2, :math:`\frac{2(1+\beta)}{1-\beta}`,
    :math:`\frac{2(1+\beta)}{(1-\beta)(1+2\beta)}`) on :math:`\eta h_{\max}`.  With :math:`U=T(\beta)`, or
    :math:`U=\min(T(\beta),\text{eta\_h\_max})` when ``eta_h_max`` is given,

    .. math:: \eta\,h_{\max}=\min\big(q\,U,\ (1-\text{margin})\,T(\beta)\big),\qquad q\in[\text{margin},1],

    :math:`q` one of :data:`ROUND_FRACTIONS` (0.5, 0.25, 0.1, 0.75, 0.9, 1), a float in the range, or log-uniform
    on it (so both the small-learning-rate regime and the edge of stability are searched).  :math:`\beta` from
    ``betas`` (default :func:`momenta` for the momentum methods, 0 for ``"sgd"``; pass e.g. ``momenta()`` with
    ``method="sgd"`` to compare SGD and SGDM *at the same* :math:`\eta` over SGD's region, where both are stable,
    since :math:`T_{\rm SGD}\le T_{\rm heavy\ ball}`).  Returns :class:`theory.params.MomentumParams`.
    Shrinks to :math:`\beta=0`, :math:`q=0.5`.
    """
    st = _st()
    method = _check_method(method)
    margin = _check_margin(margin)
    if not (math.isfinite(h_max) and h_max > 0):
        raise ValueError(f"h_max must be a finite number > 0, got {h_max!r}")
    if eta_h_max is not None and not (math.isfinite(eta_h_max) and eta_h_max > 0):
        raise ValueError(f"eta_h_max must be a finite number > 0, got {eta_h_max!r}")
    if betas is None:
        betas = st.just(0.0) if method == "sgd" else momenta()
    fractions = _round_or(ROUND_FRACTIONS, margin, 1.0, _log_uniform(margin, 1.0))

    @st.composite
    def draw_params(draw: Any) -> MomentumParams:
        beta = float(draw(betas))
        threshold = float(stability_threshold(beta, method))
        top = threshold if eta_h_max is None else min(threshold, float(eta_h_max))
        eta_h = min(draw(fractions) * top, (1.0 - margin) * threshold)
        return MomentumParams(eta=eta_h / h_max, beta=beta)

    return draw_params()


def stable_quadratics(
    method: str = "heavy_ball",
    *,
    min_dim: int = 1,
    max_dim: int = 3,
    commuting: bool | None = None,
    max_condition: float = 100.0,
    noise_max_condition: float = 100.0,
    singular_noise: bool = True,
    margin: float = 1e-3,
    betas: SearchStrategy[float] | None = None,
    eta_h_max: float | None = None,
) -> SearchStrategy[QuadraticProblem]:
    r"""Stable noisy quadratics with hyper-parameters: :class:`theory.quadratic.QuadraticProblem` instances.

    ``(H, Sigma)`` from :func:`quadratic_pairs` (largest eigenvalue of :math:`H` exactly 1, largest noise
    eigenvalue 1; the other arguments are passed through) and :math:`(\eta,\beta)` from
    :func:`stable_hyperparameters` (``method``, ``margin``, ``betas``, ``eta_h_max``) with :math:`h_{\max}=1`, so
    every :math:`\eta h_i` lies inside :math:`(0, T(\beta))` by at least the margin: the stationary law of
    ``method`` exists and :func:`theory.quadratic.stationary_covariance` does not raise (for ``"heavy_ball"`` and
    ``"sgd"``).  Built by :func:`theory.quadratic.check_problem` (validated, with the eigenbasis in ``.basis``).
    Shrinks to :math:`H=\Sigma=[1]`, :math:`\beta=0`, :math:`\eta h=\tfrac12U` (1 for SGD).
    """
    st = _st()
    pairs = quadratic_pairs(
        min_dim=min_dim,
        max_dim=max_dim,
        commuting=commuting,
        max_condition=max_condition,
        noise_max_condition=noise_max_condition,
        singular_noise=singular_noise,
    )
    params = stable_hyperparameters(method, margin=margin, betas=betas, eta_h_max=eta_h_max)

    @st.composite
    def draw_problem(draw: Any) -> QuadraticProblem:
        (H, Sigma), drawn = draw(pairs), draw(params)
        return check_problem(H, Sigma, drawn.eta, drawn.beta)

    return draw_problem()


def momentum_schedules(
    *,
    min_steps: int = 1,
    max_steps: int = 16,
    eta_min: float = 1e-3,
    eta_max: float = 1.0,
    max_beta: float = 0.99,
) -> SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    r"""Time-varying hyper-parameters ``(etas, betas)``: two float64 arrays of one length in ``min_steps..max_steps``.

    One of three kinds, shrinking in this order: *constant* (one :math:`\eta`, one :math:`\beta`); *step decay*
    (an initial :math:`\eta` multiplied by a factor in {0.1, 0.5} or :math:`[0.01,1]` at up to three milestones,
    constant :math:`\beta`; the paper's schedules); *arbitrary* (every :math:`\eta_k` log-uniform in the range and
    every :math:`\beta_k` from :func:`momenta`).  Every :math:`\eta_k\in[\text{eta\_min},\text{eta\_max}]`, every
    :math:`\beta_k\in[0,\text{max\_beta}]`.  Feed them to :func:`theory.params.averaged_lr_schedule` (Theorem 3.5's
    :math:`\bar\eta_k`).  Shrinks to a constant schedule of ``min_steps`` steps at the first of 0.1, 0.01, 1 inside
    the range (else a float in it) with :math:`\beta=0`.
    """
    st = _st()
    _check_range("momentum_schedules eta", eta_min, eta_max)
    if not eta_min > 0:
        raise ValueError(f"eta_min must be > 0, got {eta_min!r}")
    if isinstance(min_steps, bool) or not (1 <= int(min_steps) <= int(max_steps)):
        raise ValueError(f"need integers 1 <= min_steps <= max_steps, got {min_steps!r}, {max_steps!r}")
    rates = _round_or((0.1, 0.01, 1.0), eta_min, eta_max, _log_uniform(eta_min, eta_max))
    moms = momenta(max_value=max_beta)
    lengths = st.integers(min_steps, max_steps)

    @st.composite
    def constant(draw: Any) -> tuple[np.ndarray, np.ndarray]:
        n, eta, beta = draw(lengths), draw(rates), draw(moms)
        return np.full(n, eta), np.full(n, beta)

    @st.composite
    def step_decay(draw: Any) -> tuple[np.ndarray, np.ndarray]:
        n, eta, beta = draw(lengths), draw(rates), draw(moms)
        factor = draw(_round_or((0.1, 0.5), 0.01, 1.0))
        milestones = draw(st.lists(st.integers(1, max(1, n - 1)), max_size=3, unique=True)) if n > 1 else []
        etas = np.full(n, eta)
        for milestone in sorted(milestones):
            etas[milestone:] *= factor
        return np.clip(etas, eta_min, eta_max), np.full(n, beta)

    @st.composite
    def arbitrary(draw: Any) -> tuple[np.ndarray, np.ndarray]:
        n = draw(lengths)
        etas = draw(st.lists(rates, min_size=n, max_size=n))
        betas = draw(st.lists(moms, min_size=n, max_size=n))
        return np.array(etas, dtype=np.float64), np.array(betas, dtype=np.float64)

    return st.one_of(constant(), step_decay(), arbitrary())


def alpha_regimes(
    *,
    alphas: SearchStrategy[float] | None = None,
    eta_min: float = 1e-4,
    eta_max: float = 0.1,
    c_min: float = 0.1,
    c_max: float = 1.0,
) -> SearchStrategy[tuple[float, float, MomentumParams]]:
    r"""Momentum scaled with the learning rate (Definition 3.1): ``(alpha, c, params)``, :math:`1-\beta=c\eta^\alpha`.

    :math:`\alpha` from ``alphas`` (default one of 0, 0.5, 1, 0.25, 0.75, 1.5, 2, or a float in :math:`[0,2]`;
    Theorem 3.5 covers :math:`\alpha<1`, :math:`\alpha=1` is the underdamped regime); :math:`\eta` one of 0.01, 0.1,
    0.001 in range or log-uniform on :math:`[\text{eta\_min},\text{eta\_max}]\subset(0,1]`; :math:`c` one of 1, 0.5
    in range or a float in :math:`[\text{c\_min},\text{c\_max}]\subset(0,1]`.  Since :math:`c\le1` and
    :math:`\eta\le1`, :math:`0<1-\beta\le1`.  ``params`` is :meth:`theory.params.MomentumParams.from_alpha`.
    Shrinks to :math:`\alpha=0`, :math:`\eta=0.01`, :math:`c=1` (that is, :math:`\beta=0`).
    """
    st = _st()
    _check_range("alpha_regimes eta", eta_min, eta_max)
    _check_range("alpha_regimes c", c_min, c_max)
    if not (0 < eta_min and eta_max <= 1 and 0 < c_min and c_max <= 1):
        raise ValueError("alpha_regimes: need 0 < eta_min <= eta_max <= 1 and 0 < c_min <= c_max <= 1")
    if alphas is None:
        alphas = _round_or((0.0, 0.5, 1.0, 0.25, 0.75, 1.5, 2.0), 0.0, 2.0)
    rates = _round_or((0.01, 0.1, 0.001), eta_min, eta_max, _log_uniform(eta_min, eta_max))
    constants = _round_or((1.0, 0.5), c_min, c_max)

    @st.composite
    def draw_regime(draw: Any) -> tuple[float, float, MomentumParams]:
        alpha, eta, c = float(draw(alphas)), draw(rates), draw(constants)
        return alpha, c, MomentumParams.from_alpha(eta, alpha, c)

    return draw_regime()


def analytic_problems(*, kinds: Sequence[str] = ANALYTIC_KINDS, max_dim: int = 2) -> SearchStrategy[Any]:
    r"""The analytic problems of :mod:`theory.problems` with drawn parameters: :class:`theory.problems.Problem`.

    Kinds (:data:`ANALYTIC_KINDS`, shrinking in this order, fewest parameters first): ``quartic_well`` (curvature in
    :math:`[0,10]`, noise in :math:`[0,10]`), ``log_cosh_well`` (scale in :math:`[0.1,10]`, noise in :math:`[0,10]`,
    modulation in :math:`[0,2]`), ``double_well_2d`` (coupling in :math:`[0.1,10]`, noise in :math:`[0,10]`,
    correlation in :math:`[-0.9,0.9]`), ``noisy_quadratic`` (``(H, Sigma)`` from :func:`quadratic_pairs`, dimension
    1..``max_dim``), ``linear_regression`` (feature covariance from :func:`hessians`, :math:`w_*` entries in
    :math:`[-10,10]`, label noise in :math:`[0,10]`).  Each parameter shrinks to 1 (0 for offsets and the
    correlation, 0.5 for the log-cosh modulation): the simplest problem is ``quartic_well(1, 1)``.  Building a
    problem runs SymPy (milliseconds).
    """
    from theory import problems

    st = _st()
    unknown = [k for k in kinds if k not in ANALYTIC_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {ANALYTIC_KINDS}, got {list(kinds)!r}")
    _check_dims(1, max_dim)

    def positive(low: float, high: float) -> SearchStrategy[float]:
        return _round_or((1.0, 0.5, 2.0), low, high)

    def offset(low: float, high: float) -> SearchStrategy[float]:
        return _round_or((0.0, 1.0, -1.0, 0.5), low, high)

    @st.composite
    def regression(draw: Any) -> problems.Problem:
        A = draw(hessians(max_dim=max_dim, max_condition=100.0))
        d = A.shape[0]
        w_star = draw(st.lists(offset(-10.0, 10.0), min_size=d, max_size=d))
        return problems.linear_regression(A, np.array(w_star), label_noise=draw(offset(0.0, 10.0)))

    builders = {
        "noisy_quadratic": quadratic_pairs(max_dim=max_dim).map(lambda p: problems.noisy_quadratic(*p)),
        "log_cosh_well": st.builds(
            problems.log_cosh_well, positive(0.1, 10.0), positive(0.0, 10.0), _round_or((0.5, 0.0, 1.0), 0.0, 2.0)
        ),
        "quartic_well": st.builds(problems.quartic_well, positive(0.0, 10.0), positive(0.0, 10.0)),
        "double_well_2d": st.builds(
            problems.double_well_2d, positive(0.1, 10.0), positive(0.0, 10.0), offset(-0.9, 0.9)
        ),
        "linear_regression": regression(),
    }
    return st.one_of(*(builders[k] for k in ANALYTIC_KINDS if k in kinds))
