r"""Exact linear theory of SGD and SGDM on a noisy quadratic (THEORY.md sections 4.3, 5; oracles 6-17).

Model (THEORY.md 5.1): :math:`\mathcal L(x)=\tfrac12x^\top Hx` with :math:`H` symmetric, and the gradient oracle
:math:`g_k=Hx_k+\xi_k` with i.i.d. additive noise, :math:`\mathbb E\xi_k=0`, :math:`\operatorname{Cov}\xi_k=\Sigma`
(any symmetric positive semi-definite :math:`\Sigma`, commuting with :math:`H` or not).  Every method is a linear
recursion :math:`z_{k+1}=Az_k+B\xi_k` of its state :math:`z`, so the stationary covariance solves the discrete
Lyapunov (Stein) equation :math:`P=APA^\top+B\Sigma B^\top` (THEORY.md 5.2).

Learning rates are *effective* throughout: :math:`\eta` of the paper's eq. (3); PyTorch's heavy-ball rate is
:math:`\gamma=\eta(1-\beta)` (:mod:`theory.params`).  Stability thresholds are suprema of :math:`\eta h`.

Fast path.  In the eigenbasis :math:`H=V\operatorname{diag}(h)V^\top` the state of each eigen-direction is two
numbers and the rotated noise :math:`S=V^\top\Sigma V` couples the directions only through its entries
:math:`S_{ij}`.  The stationary cross-moments of directions :math:`i,j` solve a :math:`2\times2` Stein equation whose
solution is :math:`S_{ij}` times a rational function of :math:`(h_i,h_j,\eta,\beta)`, derived in
:func:`theory.quadratic_symbolic.stationary_pair_symbolic` and written out by hand in
:func:`stationary_pair_factors` (a test checks the two agree symbolically).  All :math:`d^2` pairs are evaluated
at once, so the cost is one symmetric eigendecomposition and a few matrix products, against a dense
:math:`2d\times2d` Lyapunov solve for the generic fallback (``method="lyapunov"``).

No SymPy here: the numeric code is plain NumPy/SciPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.linalg

from theory.params import check_learning_rate, check_momentum
from theory.validation import as_real_array, check_int, check_positive, check_real, describe

if TYPE_CHECKING:  # theory.forms is SymPy-based; its update rules themselves are plain arithmetic
    from theory.forms import Step

__all__ = [
    "FORMS",
    "FORM_STABILITY",
    "STABILITY_METHODS",
    "Eigenbasis",
    "LinearRecursion",
    "QuadraticProblem",
    "StationaryMoments",
    "check_problem",
    "check_quadratic",
    "check_stable",
    "discrete_stationary_covariance",
    "is_stable",
    "measured_stability_edge",
    "regime_loss_ratio",
    "rotate_to_eigenbasis",
    "sde_stationary_covariance",
    "spectral_radius",
    "stability_threshold",
    "stationary_covariance",
    "stationary_moments",
    "stationary_pair_factors",
    "transition_matrix",
    "underdamped_sde_stationary_moments",
]

StabilityMethod = Literal["heavy_ball", "nesterov", "sgd"]
Form = Literal["sgd", "normalized", "pytorch", "polyak", "nesterov", "pytorch_nesterov"]

STABILITY_METHODS: tuple[str, ...] = ("heavy_ball", "nesterov", "sgd")
FORMS: tuple[str, ...] = ("sgd", "normalized", "pytorch", "polyak", "nesterov", "pytorch_nesterov")
#: The stability method of each form of :func:`transition_matrix` (forms of one method share its dynamics).
FORM_STABILITY: dict[str, str] = {
    "sgd": "sgd",
    "normalized": "heavy_ball",
    "pytorch": "heavy_ball",
    "polyak": "heavy_ball",
    "nesterov": "nesterov",
    "pytorch_nesterov": "nesterov",
}
_METHOD_LABEL = {"heavy_ball": "heavy-ball SGDM", "nesterov": "Nesterov SGDM", "sgd": "SGD"}
#: Relative tolerance for symmetry and semi-definiteness checks of user matrices.
MATRIX_RTOL = 1e-10
#: Largest magnitude accepted for an entry of ``H`` or ``Sigma``: the exact formulas multiply two entries (and a
#: learning rate) together, which overflows float64 (about 1.8e308) for entries beyond about 1e154.
MATRIX_MAX_ENTRY = 1e150


# --- validation --------------------------------------------------------------------------------------------


def _as_square(name: str, value: object) -> np.ndarray:
    array = as_real_array(value, name)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] < 1:
        raise ValueError(f"{name} must be a square (d, d) matrix with d >= 1, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    largest = float(np.max(np.abs(array)))
    if largest > MATRIX_MAX_ENTRY:
        raise ValueError(
            f"{name} has an entry of magnitude {largest:.3g}; entries must be at most {MATRIX_MAX_ENTRY:g} "
            "(products of two entries must fit in float64)"
        )
    # scaled first and halved before adding, so entries near the largest float do not overflow the checks
    scale = max(1.0, float(np.max(np.abs(array))))
    asymmetry = float(np.max(np.abs(array / scale - array.T / scale)))
    if asymmetry > MATRIX_RTOL:
        raise ValueError(f"{name} must be symmetric; max |{name} - {name}^T| = {asymmetry:.3g} x max |{name}|")
    return array / 2.0 + array.T / 2.0


def check_quadratic(H: object, Sigma: object) -> tuple[np.ndarray, np.ndarray]:
    r"""Validate the Hessian ``H`` and noise covariance ``Sigma`` of the noisy quadratic; return float64 copies.

    ``H``: finite, symmetric (to relative tolerance :data:`MATRIX_RTOL`), shape (d, d), d >= 1; a scalar is read
    as a 1x1 matrix.  ``Sigma``: the same, with the same shape, and positive semi-definite (smallest eigenvalue
    at least :math:`-10^{-10}\max(1,\max_{ij}|\Sigma_{ij}|)`).  Both are returned exactly symmetrised.
    Definiteness of ``H`` is a stability question, checked by :func:`check_stable`.
    """
    H, Sigma, _ = _validated_pair(H, Sigma)
    return H, Sigma


def _validated_pair(H: object, Sigma: object) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`check_quadratic`, also returning the Cholesky factor of ``Sigma`` (None if singular)."""
    H = _as_square("H", H)
    Sigma = _as_square("Sigma", Sigma)
    if H.shape != Sigma.shape:
        raise ValueError(f"H and Sigma must have the same shape (d, d); got {H.shape} and {Sigma.shape}")
    try:
        # A successful Cholesky factorisation proves definiteness at a third of the cost of the eigenvalues,
        # which decide the singular and borderline cases; the factor also speeds up the rotation.
        return H, Sigma, np.linalg.cholesky(Sigma)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(Sigma)[0])
        if smallest < -MATRIX_RTOL * max(1.0, float(np.max(np.abs(Sigma)))):
            raise ValueError(
                f"Sigma must be positive semi-definite (a covariance); its smallest eigenvalue is {smallest:.6g}"
            ) from None
        return H, Sigma, None


def _check_method(method: str) -> str:
    if method not in STABILITY_METHODS:
        raise ValueError(f"method must be one of {STABILITY_METHODS}, got {method!r}")
    return method


def _check_betas(beta: object) -> np.ndarray:
    betas = as_real_array(beta, "beta (momentum coefficient)")
    if not np.all((betas >= 0.0) & (betas < 1.0)):
        raise ValueError(f"beta must lie in [0, 1) (momentum coefficient), got {describe(beta)}")
    return betas


# --- stability ---------------------------------------------------------------------------------------------


def stability_threshold(beta: float | np.ndarray, method: StabilityMethod = "heavy_ball") -> float | np.ndarray:
    r"""Supremum of :math:`\eta h` (effective learning rate times curvature) for linear stability (THEORY.md 5.3).

    .. math::
        \text{SGD: } 2,\qquad
        \text{heavy ball (eq. (3), PyTorch, Polyak): } \frac{2(1+\beta)}{1-\beta},\qquad
        \text{Nesterov: } \frac{2(1+\beta)}{(1-\beta)(1+2\beta)} .

    The stable set in :math:`\eta h` is the open interval :math:`(0,\text{threshold})`.  Derived from the Jury
    conditions of the characteristic polynomial in
    :func:`theory.quadratic_symbolic.stability_threshold_symbolic` (oracle 15); in PyTorch's
    :math:`\gamma=\eta(1-\beta)` the heavy-ball bound is :math:`\gamma h<2(1+\beta)`.  With additive noise the
    mean-square region equals this one (the second-moment map has eigenvalues :math:`r_ir_j`).
    ``method="sgd"`` ignores ``beta`` (after validating it).  ``beta`` may be an array.
    """
    _check_method(method)
    betas = _check_betas(beta)
    if method == "sgd":
        threshold = np.full_like(betas, 2.0)
    elif method == "heavy_ball":
        threshold = 2.0 * (1.0 + betas) / (1.0 - betas)
    else:
        threshold = 2.0 * (1.0 + betas) / ((1.0 - betas) * (1.0 + 2.0 * betas))
    return float(threshold) if threshold.ndim == 0 else threshold


def _characteristic_coefficients(eta_h: np.ndarray, beta: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    # Monic r^2 - trace r + det of one eigen-direction, with gamma h = (1 - beta) eta h (oracle 16).
    gamma_h = (1.0 - beta) * eta_h
    if method == "heavy_ball":
        return 1.0 + beta - gamma_h, beta + 0.0 * eta_h
    return (1.0 + beta) * (1.0 - gamma_h), beta * (1.0 - gamma_h)


def spectral_radius(
    eta_h: float | np.ndarray, beta: float | np.ndarray = 0.0, method: StabilityMethod = "heavy_ball"
) -> float | np.ndarray:
    r"""Largest root modulus of the characteristic polynomial of one eigen-direction: the convergence rate.

    The mean of the eigen-coordinate with curvature :math:`h` contracts like :math:`\rho^k` and its variance
    converges to the stationary value like :math:`\rho^{2k}`.  Characteristic polynomials (THEORY.md 1.4, 5.2;
    oracle 16), with :math:`\gamma h=(1-\beta)\eta h`:

    .. math::
        \text{SGD: } r-(1-\eta h),\qquad \text{heavy ball: } r^2-(1+\beta-\gamma h)r+\beta,\qquad
        \text{Nesterov: } r^2-(1+\beta)(1-\gamma h)r+\beta(1-\gamma h).

    Broadcasts over arrays of ``eta_h`` (for a matrix: ``eta * numpy.linalg.eigvalsh(H)``) and ``beta``.
    """
    _check_method(method)
    eta_h_arr = np.asarray(eta_h, dtype=np.float64)
    if not np.all(np.isfinite(eta_h_arr)):
        raise ValueError("eta_h (effective learning rate times curvature) must be finite")
    betas = _check_betas(beta)
    if method == "sgd":
        radius = np.abs(1.0 - eta_h_arr) + 0.0 * betas
    else:
        trace, det = _characteristic_coefficients(eta_h_arr, betas, method)
        root = np.sqrt((trace * trace - 4.0 * det).astype(np.complex128))
        radius = np.maximum(np.abs((trace + root) / 2.0), np.abs((trace - root) / 2.0))
    return float(radius) if radius.ndim == 0 else radius


def is_stable(
    eta_h: float | np.ndarray, beta: float | np.ndarray = 0.0, method: StabilityMethod = "heavy_ball"
) -> bool | np.ndarray:
    r"""The exact linear-stability region in the :math:`(\eta h,\beta)` plane: :math:`0<\eta h<` threshold.

    Equivalent to :func:`spectral_radius` :math:`<1` (the Jury conditions; tested on a grid), but exact at the
    boundary instead of subject to root-finding rounding.  Broadcasts over arrays.
    """
    eta_h_arr = np.asarray(eta_h, dtype=np.float64)
    inside = (eta_h_arr > 0.0) & (eta_h_arr < stability_threshold(beta, method))
    return bool(inside) if inside.ndim == 0 else inside


def check_stable(eigenvalues: np.ndarray, eta: float, beta: float, method: StabilityMethod = "heavy_ball") -> None:
    r"""Raise ``ValueError`` naming the threshold and the offending eigenvalue unless every :math:`\eta h_i` is stable.

    Stability needs :math:`0<\eta h_i<` :func:`stability_threshold` for every eigenvalue :math:`h_i` of :math:`H`;
    a non-positive eigenvalue has no stationary law at any learning rate.
    """
    threshold = stability_threshold(beta, method)
    label = _METHOD_LABEL[method]
    h = np.asarray(eigenvalues, dtype=np.float64)
    smallest, largest = float(np.min(h)), float(np.max(h))
    if not smallest > 0.0:
        raise ValueError(
            f"H must be positive definite for a stationary law: eigenvalue h = {smallest:.6g} <= 0 "
            f"(the {label} stable interval is 0 < eta*h < {threshold:.6g})"
        )
    if not eta * largest < threshold:
        raise ValueError(
            f"eta*h = {eta * largest:.6g} for eigenvalue h = {largest:.6g} exceeds the {label} stability threshold "
            f"{threshold:.6g} (beta = {beta:g}); need eta < {threshold / largest:.6g}"
        )


#: Amplitude window of :func:`measured_stability_edge`: divergence is judged on the largest :math:`|x_k|` over the
#: last ``EDGE_WINDOW`` steps (an oscillating iterate can pass near 0 at any single step).
EDGE_WINDOW = 50


def _diverges(step: Step, eta_h: np.ndarray, betas: np.ndarray, steps: int) -> np.ndarray:
    """Whether the deterministic iteration (h = 1, so eta = eta*h) from (1, 0) has max |x| > 1 near step ``steps``."""
    x, m = np.ones_like(eta_h), np.zeros_like(eta_h)
    amplitude = np.zeros_like(eta_h)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            x, m = step(x, m, x, eta_h, betas)  # g = h x with h = 1
            x = np.where(np.isfinite(x), x, np.inf)  # inf - inf is NaN: keep an overflowed path diverged
            if k >= steps - EDGE_WINDOW:
                amplitude = np.maximum(amplitude, np.abs(x))
    return ~(amplitude <= 1.0)


def measured_stability_edge(
    step: Step,
    betas: Sequence[float],
    *,
    steps: int = 2000,
    iterations: int = 40,
    bracket: tuple[float, float] = (1e-3, 1e5),
) -> np.ndarray:
    r"""Edge of convergence in :math:`\eta h` of an update rule's deterministic iteration per :math:`\beta` (bisection).

    ``step(x, m, g, eta, beta) -> (x, m)`` is one step of the rule (:data:`theory.forms.Step`, e.g.
    :func:`theory.forms.sgd_step`, :func:`theory.forms.normalized_step` for paper eq. (3),
    :func:`theory.forms.normalized_nesterov_step`, or a user's own rule); it is iterated on
    :math:`\mathcal L=\tfrac h2x^2` with :math:`h=1` (so :math:`\eta=\eta h` and :math:`g_k=x_k`) from
    :math:`(x_0,m_0)=(1,0)`, all :math:`\beta` at once as arrays.  The iterate is judged diverged when
    :math:`\max_{K-W<k\le K}|x_k|>1` (:math:`K` = ``steps``, :math:`W` = :data:`EDGE_WINDOW`); the bisection runs on
    :math:`\log\eta h` inside ``bracket`` for ``iterations`` halvings and returns the midpoint of the final interval.

    Accuracy: near an edge the iterate behaves like :math:`c\rho^k` with :math:`\rho` the spectral radius
    (:func:`spectral_radius`), so the measured edge lies where :math:`|c|\rho^K\approx1`, i.e. inside the stable
    region with :math:`0\le1-\rho\lesssim\log|c|/(K-W)` (:math:`|c|\le\frac{1+\beta}{1-\beta}` for the rules of
    :mod:`theory.forms`), plus the bisection's relative resolution :math:`\log(\text{high}/\text{low})/2^{n+1}`.
    For the rules of :mod:`theory.forms` the edge is the threshold of :func:`stability_threshold` (THEORY.md 5.3,
    Cohen et al. 2021; claim 8): 2 for SGD, :math:`\frac{2(1+\beta)}{1-\beta}` for heavy ball (38 at
    :math:`\beta=0.9`), :math:`\frac{2(1+\beta)}{(1-\beta)(1+2\beta)}` for Nesterov.  Nothing of those formulas is
    used here, so a wrong rule shows up as a wrong edge.

    Raises ``ValueError`` for a non-callable ``step``, ``beta`` outside [0, 1), ``steps <= EDGE_WINDOW``,
    ``iterations < 1``, a bracket that is not ``0 < low < high < inf``, and when the rule diverges at the lower end
    of the bracket or does not diverge at its upper end (a rule that never diverges, e.g. one ignoring the gradient,
    has no edge to find).
    """
    if not callable(step):
        raise ValueError(f"step must be an update rule step(x, m, g, eta, beta) -> (x, m), got {step!r}")
    momenta = np.array([check_momentum(b) for b in np.asarray(betas, dtype=np.float64).reshape(-1)])
    if momenta.size == 0:
        raise ValueError("betas must hold at least one momentum value in [0, 1)")
    steps = check_int(steps, "steps", minimum=EDGE_WINDOW + 1, note="the amplitude window")
    iterations = check_int(iterations, "iterations", minimum=1, note="bisection halvings")
    if not (len(bracket) == 2 and 0.0 < bracket[0] < bracket[1] and np.isfinite(bracket[1])):
        raise ValueError(f"bracket must be (low, high) in eta*h with 0 < low < high < inf, got {bracket!r}")
    low, high = np.full(momenta.shape, np.log(bracket[0])), np.full(momenta.shape, np.log(bracket[1]))
    unstable_low = _diverges(step, np.exp(low), momenta, steps)
    if np.any(unstable_low):
        raise ValueError(
            f"bracket {bracket}: the update rule already diverges at the lower end eta*h = {bracket[0]:g} for "
            f"beta = {momenta[unstable_low].tolist()}; the lower end must be stable (lower it)"
        )
    stable_high = ~_diverges(step, np.exp(high), momenta, steps)
    if np.any(stable_high):
        raise ValueError(
            f"bracket {bracket}: the update rule does not diverge at the upper end eta*h = {bracket[1]:g} for "
            f"beta = {momenta[stable_high].tolist()} within {steps} steps; the upper end must be unstable (raise it), "
            "or the rule never diverges at all (a wrong rule, e.g. one that ignores the gradient, has no edge)"
        )
    for _ in range(iterations):
        middle = (low + high) / 2
        unstable = _diverges(step, np.exp(middle), momenta, steps)
        high = np.where(unstable, middle, high)
        low = np.where(unstable, low, middle)
    return np.exp((low + high) / 2)


# --- linear dynamics -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearRecursion:
    r"""One method as the linear recursion :math:`z_{k+1}=A z_k+B\xi_k` of its state :math:`z` (THEORY.md 5.2)."""

    transition: np.ndarray
    noise_input: np.ndarray
    state: tuple[str, ...]


def transition_matrix(H: object, eta: float, beta: float = 0.0, form: Form = "normalized") -> LinearRecursion:
    r"""Transition matrix :math:`A` and noise input :math:`B` of each form on :math:`g_k=Hx_k+\xi_k`.

    With :math:`\gamma=\eta(1-\beta)` (blocks are multiples of :math:`I` and :math:`H`):

    * ``"sgd"``, :math:`z=x`: :math:`A=I-\eta H`, :math:`B=-\eta I`.
    * ``"normalized"`` (paper eq. (3)), :math:`z=(x,m)`, :math:`m_{k+1}=\beta m_k+(1-\beta)g_k`,
      :math:`x_{k+1}=x_k-\eta m_{k+1}`:
      :math:`A=\begin{pmatrix}I-\gamma H&-\eta\beta I\\(1-\beta)H&\beta I\end{pmatrix}`,
      :math:`B=\begin{pmatrix}-\gamma I\\(1-\beta)I\end{pmatrix}`.
    * ``"pytorch"`` (eq. (1), buffer :math:`b=m/(1-\beta)`):
      :math:`A=\begin{pmatrix}I-\gamma H&-\gamma\beta I\\H&\beta I\end{pmatrix}`,
      :math:`B=\begin{pmatrix}-\gamma I\\I\end{pmatrix}`.
    * ``"polyak"``, :math:`z=(x_k,x_{k-1})`:
      :math:`A=\begin{pmatrix}(1+\beta)I-\gamma H&-\beta I\\I&0\end{pmatrix}`,
      :math:`B=\begin{pmatrix}-\gamma I\\0\end{pmatrix}`.
    * ``"nesterov"`` (normalized Nesterov of :mod:`theory.forms`),
      :math:`x_{k+1}=x_k-\eta((1-\beta)g_k+\beta m_{k+1})`:
      :math:`A=\begin{pmatrix}I-\gamma(1+\beta)H&-\eta\beta^2I\\(1-\beta)H&\beta I\end{pmatrix}`,
      :math:`B=\begin{pmatrix}-\gamma(1+\beta)I\\(1-\beta)I\end{pmatrix}`.
    * ``"pytorch_nesterov"`` (``nesterov=True``, buffer :math:`b`):
      :math:`A=\begin{pmatrix}I-\gamma(1+\beta)H&-\gamma\beta^2I\\H&\beta I\end{pmatrix}`,
      :math:`B=\begin{pmatrix}-\gamma(1+\beta)I\\I\end{pmatrix}`.

    The SymPy counterpart is :func:`theory.quadratic_symbolic.transition_matrix_symbolic`.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    H = _as_square("H", H)
    eta = check_learning_rate(eta, "eta (effective learning rate)")
    beta = check_momentum(beta)
    d = H.shape[0]
    eye, zero = np.eye(d), np.zeros((d, d))
    gamma = eta * (1.0 - beta)
    if form == "sgd":
        return LinearRecursion(eye - eta * H, -eta * eye, ("x",))
    blocks = {
        "normalized": ([[eye - gamma * H, -eta * beta * eye], [(1 - beta) * H, beta * eye]], [-gamma, 1 - beta], "m"),
        "pytorch": ([[eye - gamma * H, -gamma * beta * eye], [H, beta * eye]], [-gamma, 1.0], "b"),
        "polyak": ([[(1 + beta) * eye - gamma * H, -beta * eye], [eye, zero]], [-gamma, 0.0], "x_prev"),
        "nesterov": (
            [[eye - gamma * (1 + beta) * H, -eta * beta**2 * eye], [(1 - beta) * H, beta * eye]],
            [-gamma * (1 + beta), 1 - beta],
            "m",
        ),
        "pytorch_nesterov": (
            [[eye - gamma * (1 + beta) * H, -gamma * beta**2 * eye], [H, beta * eye]],
            [-gamma * (1 + beta), 1.0],
            "b",
        ),
    }
    transition, (noise_x, noise_second), second = blocks[form]
    return LinearRecursion(np.block(transition), np.vstack([noise_x * eye, noise_second * eye]), ("x", second))


def discrete_stationary_covariance(transition: np.ndarray, noise_input: np.ndarray, Sigma: np.ndarray) -> np.ndarray:
    r"""Generic stationary covariance of :math:`z_{k+1}=Az_k+B\xi_k`: the Stein equation (THEORY.md 5.2).

    .. math:: P=APA^\top+B\Sigma B^\top,

    solved by :func:`scipy.linalg.solve_discrete_lyapunov`.  Valid when the spectral radius of :math:`A` is
    below 1 (the caller checks); works for any form of :func:`transition_matrix`.
    """
    transition = np.asarray(transition, dtype=np.float64)
    noise_input = np.asarray(noise_input, dtype=np.float64)
    forcing = noise_input @ np.asarray(Sigma, dtype=np.float64) @ noise_input.T
    solution = scipy.linalg.solve_discrete_lyapunov(transition, forcing)
    return (solution + solution.T) / 2.0


# --- stationary covariance -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eigenbasis:
    r"""Eigen-decomposition :math:`H=V\operatorname{diag}(h)V^\top` and the rotated noise :math:`S=V^\top\Sigma V`."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    rotated_noise: np.ndarray

    def to_original(self, eigen_matrix: np.ndarray) -> np.ndarray:
        """Rotate a matrix of eigen-coordinate moments back: :math:`V M V^\\top`."""
        return self.eigenvectors @ eigen_matrix @ self.eigenvectors.T


def rotate_to_eigenbasis(H: np.ndarray, Sigma: np.ndarray, noise_factor: np.ndarray | None = None) -> Eigenbasis:
    r"""Eigenbasis of validated ``H`` (see :func:`check_quadratic`) and ``Sigma`` in it.

    With the lower Cholesky factor :math:`L` of :math:`\Sigma` (``noise_factor``), :math:`S=(V^\top L)(V^\top L)^\top`
    by one product and a symmetric rank-d update (exactly symmetric), instead of two general products.

    Everything runs on NumPy's LAPACK and BLAS (:func:`numpy.linalg.eigh`, the divide-and-conquer driver, and
    ``@``): SciPy ships a second OpenBLAS, and alternating between the two libraries leaves one library's idle
    threads spinning on the cores the other needs.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(H)
    if noise_factor is None:
        rotated = eigenvectors.T @ (Sigma @ eigenvectors)
    else:
        factor = eigenvectors.T @ noise_factor
        rotated = factor @ factor.T  # NumPy calls the symmetric rank-k update for a product with its own transpose
    return Eigenbasis(eigenvalues, eigenvectors, rotated)


def stationary_pair_factors(h_i: Any, h_j: Any, eta: Any, beta: Any) -> tuple[Any, Any, Any]:
    r"""Stationary cross-moments of eigen-directions :math:`i,j` of normalized SGDM per unit rotated noise.

    For paper eq. (3) on :math:`g=Hx+\xi` the eigen-coordinates obey
    :math:`\mathbb E[\tilde x_i\tilde x_j]=S_{ij}f_{xx}`, :math:`\mathbb E[\tilde x_i\tilde m_j]=S_{ij}f_{xm}`,
    :math:`\mathbb E[\tilde m_i\tilde m_j]=S_{ij}f_{mm}` at stationarity, with

    .. math::
        f_{xx}=\frac{\eta(1-\beta^2)}{(1-\beta^2)(h_i+h_j)-\eta(h_i-\beta h_j)(h_j-\beta h_i)},\qquad
        f_{xm}=-\frac{h_i-\beta h_j}{1+\beta}f_{xx},\qquad
        f_{mm}=\frac{(1-\beta)(h_i+h_j)}{(1+\beta)\eta}f_{xx}.

    This is the solution of the :math:`2\times2` Stein equation :math:`P=A_iPA_j^\top+bb^\top` with
    :math:`A_i=\begin{pmatrix}1-\eta(1-\beta)h_i&-\eta\beta\\(1-\beta)h_i&\beta\end{pmatrix}`,
    :math:`b=(1-\beta)(-\eta,1)^\top`, derived in :func:`theory.quadratic_symbolic.stationary_pair_symbolic`.
    At :math:`i=j` it is THEORY.md 5.4's :math:`\operatorname{Var}x=\frac{\eta s^2(1+\beta)}{h(2(1+\beta)-\eta
    h(1-\beta))}`; :math:`\beta=0` gives SGD's :math:`\eta/(h_i+h_j-\eta h_ih_j)`.

    Only arithmetic operators are used, so the arguments may be floats, NumPy arrays (broadcast over all pairs),
    :class:`fractions.Fraction` or SymPy symbols: a test feeds symbols and compares with the derivation.
    """
    one_minus_beta_sq = 1 - beta * beta
    f_xx = eta * one_minus_beta_sq / (one_minus_beta_sq * (h_i + h_j) - eta * (h_i - beta * h_j) * (h_j - beta * h_i))
    f_xm = -(h_i - beta * h_j) / (1 + beta) * f_xx
    f_mm = (1 - beta) * (h_i + h_j) / ((1 + beta) * eta) * f_xx
    return f_xx, f_xm, f_mm


@dataclass(frozen=True)
class StationaryMoments:
    r"""Stationary second moments of normalized SGDM: :math:`\operatorname{Cov}x`, :math:`\operatorname{Cov}m`,
    and :math:`\mathbb E[xm^\top]` (row :math:`x`, column :math:`m`; all means are zero)."""

    cov_x: np.ndarray
    cov_m: np.ndarray
    cov_xm: np.ndarray


@dataclass(frozen=True)
class QuadraticProblem:
    r"""A validated noisy quadratic with its hyper-parameters: float64 ``H``, ``Sigma``, ``eta``, ``beta`` and the
    eigenbasis of ``H`` (:class:`Eigenbasis`).  Build it with :func:`check_problem`."""

    H: np.ndarray
    Sigma: np.ndarray
    eta: float
    beta: float
    basis: Eigenbasis


def check_problem(H: object, Sigma: object, eta: float, beta: float = 0.0) -> QuadraticProblem:
    """Validate everything at the boundary (:func:`check_quadratic`, learning rate, momentum) and diagonalise ``H``.

    Stability is not checked here (transients exist at any rate); see :func:`check_stable`.
    """
    H, Sigma, noise_factor = _validated_pair(H, Sigma)
    eta = check_learning_rate(eta, "eta (effective learning rate)")
    beta = check_momentum(beta)
    return QuadraticProblem(H, Sigma, eta, beta, rotate_to_eigenbasis(H, Sigma, noise_factor))


def _stable_problem(H: object, Sigma: object, eta: float, beta: float) -> QuadraticProblem:
    problem = check_problem(H, Sigma, eta, beta)
    check_stable(problem.basis.eigenvalues, problem.eta, problem.beta, "sgd" if problem.beta == 0.0 else "heavy_ball")
    return problem


def _closed_form_x(basis: Eigenbasis, eta: float, beta: float) -> np.ndarray:
    r""":math:`V(S\circ F_{xx})V^\top` with :math:`F_{xx}` of :func:`stationary_pair_factors`, vectorised in place.

    Expanding :math:`(h_i-\beta h_j)(h_j-\beta h_i)=(1+\beta^2)h_ih_j-\beta(h_i^2+h_j^2)` writes the denominator
    of :math:`f_{xx}` as :math:`a_i+a_j-c\,h_ih_j` with :math:`a_i=(1-\beta^2)h_i+\eta\beta h_i^2` and
    :math:`c=\eta(1+\beta^2)`: one outer product and two broadcast additions on a single :math:`d\times d` buffer.
    """
    h = basis.eigenvalues
    one_minus_beta_sq = 1.0 - beta * beta
    a = one_minus_beta_sq * h + eta * beta * h * h
    denominator = np.multiply.outer(h, -eta * (1.0 + beta * beta) * h)
    denominator += a[:, None]
    denominator += a[None, :]
    weighted = np.divide(basis.rotated_noise, denominator, out=denominator)
    weighted *= eta * one_minus_beta_sq
    V = basis.eigenvectors
    cov = (V @ weighted) @ V.T
    cov += cov.T  # NumPy buffers the overlapping transpose
    cov *= 0.5
    return cov


def _check_stationary_method(method: str) -> str:
    if method not in ("closed_form", "lyapunov"):
        raise ValueError(f"method must be 'closed_form' or 'lyapunov', got {method!r}")
    return method


def stationary_moments(
    H: object,
    Sigma: object,
    eta: float,
    beta: float = 0.0,
    *,
    method: Literal["closed_form", "lyapunov"] = "closed_form",
) -> StationaryMoments:
    r"""Exact stationary covariances of :math:`x`, :math:`m` and :math:`\mathbb E[xm^\top]` for paper eq. (3).

    ``method="closed_form"`` (default): eigenbasis formula of :func:`stationary_pair_factors`,
    :math:`\operatorname{Cov}x=V(S\circ F_{xx})V^\top` and likewise for :math:`m` and the cross term.
    ``method="lyapunov"``: the generic Stein solve of the :math:`2d`-dimensional :math:`(x,m)` system
    (:func:`discrete_stationary_covariance`).  Raises ``ValueError`` outside the heavy-ball stability region
    :math:`0<\eta h<2(1+\beta)/(1-\beta)`, naming the threshold and the eigenvalue.  THEORY.md 5.4, oracles 6-9,
    13, 14.
    """
    _check_stationary_method(method)
    problem = _stable_problem(H, Sigma, eta, beta)
    if method == "lyapunov":
        system = transition_matrix(problem.H, problem.eta, problem.beta, "normalized")
        d = problem.H.shape[0]
        P = discrete_stationary_covariance(system.transition, system.noise_input, problem.Sigma)
        return StationaryMoments(P[:d, :d], P[d:, d:], P[:d, d:])
    basis = problem.basis
    h, S = basis.eigenvalues, basis.rotated_noise
    _, f_xm, f_mm = stationary_pair_factors(h[:, None], h[None, :], problem.eta, problem.beta)
    cov_m = basis.to_original(S * f_mm)
    cov_x = _closed_form_x(basis, problem.eta, problem.beta)
    return StationaryMoments(cov_x, (cov_m + cov_m.T) / 2.0, basis.to_original(S * f_xm))


def stationary_covariance(
    H: object,
    Sigma: object,
    eta: float,
    beta: float = 0.0,
    *,
    method: Literal["closed_form", "lyapunov"] = "closed_form",
) -> np.ndarray:
    r"""Exact stationary covariance of the iterate :math:`x` of normalized SGDM (SGD at :math:`\beta=0`).

    On :math:`\mathcal L=\tfrac12x^\top Hx` with :math:`g_k=Hx_k+\xi_k`, :math:`\operatorname{Cov}\xi=\Sigma`, and
    paper eq. (3): :math:`m_{k+1}=\beta m_k+(1-\beta)g_k`, :math:`x_{k+1}=x_k-\eta m_{k+1}`.  In the eigenbasis
    :math:`H=V\operatorname{diag}(h)V^\top`, :math:`S=V^\top\Sigma V`:

    .. math::
        \operatorname{Cov}x_\infty=V\Big[\frac{\eta(1-\beta^2)\,S_{ij}}{(1-\beta^2)(h_i+h_j)
        -\eta(h_i-\beta h_j)(h_j-\beta h_i)}\Big]_{ij}V^\top .

    In 1-D: :math:`\frac{\eta s^2(1+\beta)}{h(2(1+\beta)-\eta h(1-\beta))}` (THEORY.md 5.4); for commuting
    :math:`H,\Sigma`: :math:`\frac{\gamma(1+\beta)}{1-\beta}[H(2(1+\beta)I-\gamma H)]^{-1}\Sigma` with
    :math:`\gamma=\eta(1-\beta)`.  Oracles 6, 7, 9, 13, 14.  See :func:`stationary_moments` for the momentum
    and cross moments and for ``method`` (``"lyapunov"``: generic :math:`2d`-dimensional Stein solve).

    Raises ``ValueError`` for non-symmetric or non-finite ``H``, a ``Sigma`` that is not a covariance,
    mismatched shapes, ``eta <= 0``, ``beta`` outside [0, 1), or any :math:`\eta h_i` outside the stability
    interval (message names the threshold and the eigenvalue).
    """
    if _check_stationary_method(method) == "lyapunov":
        return stationary_moments(H, Sigma, eta, beta, method=method).cov_x
    problem = _stable_problem(H, Sigma, eta, beta)
    return _closed_form_x(problem.basis, problem.eta, problem.beta)


def regime_loss_ratio(eta_h: float, beta: float) -> tuple[float, float]:
    r"""Exact SGD/SGDM stationary-loss ratio at equal :math:`\eta` on :math:`\tfrac h2x^2`; Lemma 2.4's ratio :math:`R`.

    With additive noise of variance :math:`s^2`, SGD and normalized SGDM (paper eq. (3)) at the same effective
    :math:`\eta` have the stationary variances of :func:`stationary_covariance` (THEORY.md 5.4), and the stationary
    loss is :math:`\tfrac h2\operatorname{Var}x`, so

    .. math:: \frac{\mathbb E\mathcal L_{\rm SGD}}{\mathbb E\mathcal L_{\rm SGDM}}
              =\frac{2(1+\beta)-\eta h(1-\beta)}{(1+\beta)(2-\eta h)}=1+\frac{2\beta}{1+\beta}R,
              \qquad R=\frac{\eta h}{2-\eta h},

    where :math:`R=h^2\mathbb E_{\rm SGD}x^2/s^2` is Lemma 2.4's curvature-induced over noise-induced term at SGD's
    stationary law (THEORY.md 2.3-2.4; claim 8): momentum is worth nothing when noise dominates (:math:`R\ll1`,
    ratio :math:`1+O(\eta h)`) and a lot when curvature dominates (:math:`\eta h\to2`).  The identity is proved
    from the derived variances by :func:`theory.quadratic_symbolic.prove_regime_identity`.

    Returns ``(ratio, R)``.  Raises ``ValueError`` unless :math:`0<\eta h<2` (SGD's stability threshold: no
    stationary law beyond it) and :math:`0\le\beta<1`.
    """
    threshold = float(stability_threshold(0.0, "sgd"))
    value = check_real(
        eta_h,
        "eta_h (effective learning rate times curvature)",
        low=0.0,
        high=threshold,
        low_open=True,
        high_open=True,
        note=f"SGD has no stationary law at or beyond its stability threshold eta*h = {threshold:g}",
    )
    momentum = check_momentum(beta)
    r = value / (2 - value)
    return 1 + 2 * momentum / (1 + momentum) * r, r


# --- SDE limits ------------------------------------------------------------------------------------------------


def sde_stationary_covariance(
    H: object,
    Sigma: object,
    eta: float,
    *,
    order: Literal[1, 2] = 1,
    method: Literal["closed_form", "lyapunov"] = "closed_form",
) -> np.ndarray:
    r"""Stationary covariance of the SDE approximation (stochastic modified equation, THEORY.md 4.1, 4.3).

    ``order=1`` (SME1, the limit of both SGD and SGDM, Theorem 3.5): :math:`dX=-HX\,dt+\sqrt{\eta\Sigma}\,dW`;
    ``order=2`` (SME2): :math:`dX=-(H+\tfrac\eta2H^2)X\,dt+\sqrt{\eta\Sigma}\,dW`.  The covariance solves the
    continuous Lyapunov equation :math:`KP+PK=\eta\Sigma` with drift :math:`K`; in the eigenbasis

    .. math::
        P=V\Big[\frac{\eta S_{ij}}{k_i+k_j}\Big]_{ij}V^\top,\qquad k_i=h_i\ (\text{SME1}),\quad
        k_i=h_i+\tfrac\eta2h_i^2\ (\text{SME2}).

    1-D: :math:`\frac{\eta s^2}{2h}` and :math:`\frac{\eta s^2}{h(2+\eta h)}` (oracle 11).
    ``method="lyapunov"`` uses :func:`scipy.linalg.solve_continuous_lyapunov`.  Requires :math:`H` positive
    definite (``ValueError`` naming the eigenvalue otherwise).
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (SME1) or 2 (SME2), got {order!r}")
    problem = check_problem(H, Sigma, eta)
    H, Sigma, eta, basis = problem.H, problem.Sigma, problem.eta, problem.basis
    smallest = float(basis.eigenvalues[0])
    if not smallest > 0.0:
        raise ValueError(
            f"H must be positive definite for the SDE to have a stationary law: eigenvalue h = {smallest:.6g}"
        )
    if method == "closed_form":
        h = basis.eigenvalues
        rates = h if order == 1 else h + eta * h * h / 2.0
        cov = basis.to_original(eta * basis.rotated_noise / (rates[:, None] + rates[None, :]))
    elif method == "lyapunov":
        drift = H if order == 1 else H + eta * H @ H / 2.0
        cov = scipy.linalg.solve_continuous_lyapunov(-drift, -eta * Sigma)
    else:
        raise ValueError(f"method must be 'closed_form' or 'lyapunov', got {method!r}")
    return (cov + cov.T) / 2.0


def underdamped_sde_stationary_moments(H: object, Sigma: object, eta: float, c: float) -> StationaryMoments:
    r"""Stationary moments of the :math:`\alpha=1` underdamped momentum SDE (THEORY.md 3.5; oracle 12).

    With :math:`1-\beta=c\eta` and time :math:`t=k\eta`:

    .. math:: dX=-M\,dt,\qquad dM=c(HX-M)\,dt+c\sqrt\eta\,\Sigma^{1/2}dW,

    a linear SDE with drift :math:`\begin{pmatrix}0&-I\\cH&-cI\end{pmatrix}` and diffusion covariance
    :math:`\begin{pmatrix}0&0\\0&c^2\eta\Sigma\end{pmatrix}`; its stationary covariance solves the continuous
    Lyapunov equation (:func:`scipy.linalg.solve_continuous_lyapunov`).  In 1-D, :math:`\operatorname{Var}X=
    \frac{\eta s^2}{2h}` for every :math:`c` (SGD's SDE value), :math:`\operatorname{Var}M=\frac{c\eta s^2}2`,
    :math:`\operatorname{Cov}(X,M)=0`.
    """
    H, Sigma = check_quadratic(H, Sigma)
    eta = check_learning_rate(eta, "eta (effective learning rate)")
    c = check_positive(c, "c (momentum scaling constant, 1 - beta = c * eta)")
    smallest = float(np.linalg.eigvalsh(H)[0])
    if not smallest > 0.0:
        raise ValueError(f"H must be positive definite for a stationary law: eigenvalue h = {smallest:.6g}")
    d = H.shape[0]
    drift = np.block([[np.zeros((d, d)), -np.eye(d)], [c * H, -c * np.eye(d)]])
    diffusion = np.zeros((2 * d, 2 * d))
    diffusion[d:, d:] = c * c * eta * Sigma
    P = scipy.linalg.solve_continuous_lyapunov(drift, -diffusion)
    P = (P + P.T) / 2.0
    return StationaryMoments(P[:d, :d], P[d:, d:], P[:d, d:])
