r"""Exact batch-size scaling on the noisy quadratic model: steps to a target loss for tuned SGD and SGDM.

The noisy quadratic model (NQM; Zhang, Li, Nado, Martens, Sachdeva, Dahl, Shallue, Grosse, *Which Algorithmic
Choices Matter at Which Batch Sizes?*, NeurIPS 2019; THEORY.md 5.1, 5.6, 5.7) is a diagonal quadratic
:math:`\mathcal L(x)=\tfrac12\sum_ih_ix_i^2` with gradient :math:`g=Hx+\varepsilon`,
:math:`\operatorname{Cov}\varepsilon=C/B`, :math:`C=H`, :math:`h_i=1/i`, :math:`d=10^4`.  Its headline figure is the
number of steps to reach a target loss against the batch size :math:`B`, for SGD and momentum each at its best
hyper-parameters.

Model.  Every coordinate is independent: the expected loss only needs, per coordinate, the dynamics curvature
:math:`h_i`, the per-step gradient-noise variance :math:`s_i^2`, the loss weight :math:`c_i` and the initial second
moment :math:`\mathbb Ex_{0,i}^2` (:class:`DiagonalQuadratic`), with
:math:`\mathbb E\mathcal L_k=\tfrac12\sum_ic_i\,\mathbb Ex_{i,k}^2`.  A general :math:`H,\Sigma` reduces to this in
the eigenbasis of :math:`H` (:func:`eigenbasis_quadratic`): cross-covariances of the rotated noise do not enter the
loss.  A preconditioner :math:`P=H^{-p}` (:func:`nqm`) multiplies the gradient, so the dynamics see curvature
:math:`h_i^{1-p}` and noise :math:`h_i^{-2p}c_i/B` while the loss keeps the weights :math:`h_i`.

Method.  Normalized SGDM, paper eq. (3) (SGD at :math:`\beta=0`), with :math:`\gamma=\eta(1-\beta)`:

.. math:: m_{k+1}=\beta m_k+(1-\beta)g_k,\qquad x_{k+1}=x_k-\eta m_{k+1},\qquad g_k=h x_k+\xi_k,\
          \operatorname{Var}\xi_k=s^2 .

Per coordinate, with the scaled momentum :math:`u=\eta m` (the next displacement; it keeps the matrices balanced),

.. math:: \begin{pmatrix}x\\u\end{pmatrix}_{k+1}=
          \underbrace{\begin{pmatrix}1-\gamma h&-\beta\\ \gamma h&\beta\end{pmatrix}}_{A}
          \begin{pmatrix}x\\u\end{pmatrix}_k+\gamma\begin{pmatrix}-1\\1\end{pmatrix}\xi_k,

so the second moments :math:`p=(\mathbb Ex^2,\mathbb Exu,\mathbb Eu^2)` obey the exact affine recursion
(THEORY.md 5.2, the :math:`3\times3` map of Zhang et al.'s code in this state)

.. math:: p_{k+1}=Mp_k+q,\qquad
          M=\begin{pmatrix}a^2&2ab&b^2\\ ad&ae+bd&be\\ d^2&2de&e^2\end{pmatrix},\qquad
          q=s^2\gamma^2\begin{pmatrix}1\\-1\\1\end{pmatrix},

with :math:`a=1-\gamma h`, :math:`b=-\beta`, :math:`d=\gamma h`, :math:`e=\beta`, and
:math:`p_0=(\mathbb Ex_0^2,0,0)`.  Hence :math:`p_k=M^kp_0+G_kq`, :math:`G_k=\sum_{j<k}M^j`: a sum of geometric
terms in the eigenvalues :math:`r_1^2,\ r_1r_2=\beta,\ r_2^2` of :math:`M` (:math:`r_{1,2}` the roots of
:math:`r^2-(1+\beta-\gamma h)r+\beta`).  It is evaluated without eigenvectors (which break down at critical
damping :math:`r_1=r_2`) and without stepping, in the factored form :math:`p_k\leftrightarrow\mathbb Ex_0^2\,
w_kw_k^\top+S_k` with :math:`w_k=A^ke_1` and the noise covariance :math:`S_k=\sum_{j<k}A^jbb^\top A^{j\top}s^2`
(:math:`b=\gamma(-1,1)^\top`).  Binary powers are kept as :math:`\Phi_n=A^n-I` and :math:`S_n`, with the exact
composition rules

.. math:: \Phi_{m+n}=\Phi_m+\Phi_n+\Phi_m\Phi_n,\qquad S_{m+n}=S_n+A^nS_mA^{n\top},

which keep full relative accuracy while :math:`A^n` is close to :math:`I` (a slow mode at :math:`\beta=1-10^{-5}`
or :math:`\eta h=10^{-6}`), where forming :math:`A^n` itself would lose :math:`n` ulps; :math:`\Phi_1=A-I` has
entries :math:`-\gamma h,-\beta,\gamma h,-(1-\beta)` without cancellation.  Powering :math:`A` rather than
:math:`M` keeps the Kronecker structure of :math:`M` exact (near a repeated root :math:`M` has a nearly triple
eigenvalue and rounding its powers loses digits like :math:`\epsilon^{1/3}`), and :math:`S_k` stays a sum of
positive semi-definite terms.  The cost is :math:`O(d\log k)` for any :math:`k`; the loss is exact to about
:math:`10^{-15}` of the initial loss plus :math:`10^{-13}` relative away from repeated roots (tests: 1e-10 against a
50-digit evaluation at :math:`k=10^7`, :math:`\beta=1-10^{-5}`).  For :math:`\beta` near 1 and :math:`\eta` within
a relative :math:`10^{-6}` of the heavy-ball threshold the two negative roots nearly coincide, the loss is
ill-conditioned in :math:`\eta,\beta` themselves, and about 7 digits remain (measured at :math:`\beta=0.995`).

Steps to target.  The loss curve need not be monotone: momentum modes oscillate, and modes whose stationary
variance exceeds their start grow.  *Steps to target* is the first hitting time
:math:`k^*=\min\{k\ge0:\mathbb E\mathcal L_k\le\text{target}\}` of the exact, deterministic expected-loss curve,
the first crossing even if the curve later rises above the target again.  It is found by branch and bound on
blocks :math:`[k_1,k_2]` of steps, with a certified lower bound of the loss on the block:

* the noise part :math:`N_k=\tfrac12\sum_ic_i(S_{i,k})_{xx}=\tfrac12\sum_ic_is_i^2\sum_{j<k}u_{i,j}^2`
  (:math:`u_{i,j}` the impulse response) is non-decreasing in :math:`k`, so :math:`N_k\ge N_{k_1}`;
* the deterministic part is :math:`\tfrac12\sum_ic_i\mathbb Ex_{0,i}^2w_i(k)^2` with :math:`w(k)=(A^k)_{11}`.  By the
  Cayley-Hamilton / Chebyshev form of :math:`A^k`, with :math:`r_{1,2}=\sigma\sqrt\beta e^{\pm a}` and
  :math:`p=\sigma\frac{1-\beta-\gamma h}{2\sqrt\beta}`,

  .. math:: w(k)=\sigma^k\beta^{k/2}\Big[\cosh ka+p\,\frac{\sinh ka}{\sinh a}\Big]
            \quad(a=i\theta:\ \cos k\theta+p\,\tfrac{\sin k\theta}{\sin\theta}),

  whose minimum over a block is exact: positive real roots (and SGD) give a positive decreasing :math:`w`;
  negative real roots give :math:`|w|=\beta^{k/2}g(k)` with :math:`g` increasing; complex roots give
  :math:`\beta^{k/2}R\cos(k\theta-\varphi)`, whose square has no positive minimum on a block containing a zero.

A block whose bound exceeds the target is discarded; blocks of at most :data:`SCAN_BLOCK` steps that survive are
stepped through exactly from their exact start.  The crossing is decided on the float64 loss (about 14 significant
digits), so a loss within rounding of the target may be counted on either side.

"Never" is explicit: :func:`steps_to_target` returns ``math.inf`` when :math:`\mathbb E\mathcal L_k>` target for
every :math:`k\le` ``max_steps``; an unstable :math:`\eta` (no stationary law; the loss diverges) raises
``ValueError`` naming the threshold of :func:`theory.quadratic.stability_threshold` it breaks.

Tuning.  :func:`tune_steps_to_target` minimises steps over :math:`\eta` (a grid uniform in
:math:`\operatorname{logit}(\eta/\eta_{\max})` over the stable interval, then halving of the bracket around the
best point) and over a stated grid of :math:`\beta`.  :func:`critical_batch_size` reads off the batch size where
the steps exceed the linear-scaling extrapolation from the smallest batch by a factor (2 by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from theory.params import check_learning_rate, check_momentum
from theory.quadratic import check_quadratic, check_stable, rotate_to_eigenbasis, stability_threshold
from theory.validation import check_in_unit_interval, check_int, check_positive

__all__ = [
    "DEFAULT_MAX_STEPS",
    "NQM_DIMENSION",
    "SCAN_BLOCK",
    "SMALLEST_RELATIVE_TARGET",
    "DiagonalQuadratic",
    "StepsFunction",
    "TunedSteps",
    "critical_batch_size",
    "diagonal_quadratic",
    "eigenbasis_quadratic",
    "expected_loss_at",
    "nqm",
    "nqm_bins",
    "stationary_loss",
    "steps_to_target",
    "tune_steps_to_target",
]

#: Zhang et al.'s NQM dimension: "The diagonal entries of H will be {1/i} ... I chose K = 10^4" (THEORY.md 5.1).
NQM_DIMENSION = 10_000
#: Default horizon of :func:`steps_to_target`: the answer is ``inf`` when the target is not reached by then.
DEFAULT_MAX_STEPS = 10**8
#: Branch and bound steps exactly through surviving blocks of at most this many steps.
SCAN_BLOCK = 64
#: A block is discarded only when its lower bound exceeds the target by this relative margin (rounding).
_BOUND_MARGIN = 1e-9
#: Highest binary power kept: 2**62 steps.
_MAX_LEVEL = 62


# --- the model ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiagonalQuadratic:
    r"""A diagonal noisy quadratic, per coordinate :math:`i` (all arrays of shape (d,), float64).

    ``curvature`` :math:`h_i>0` drives the dynamics (:math:`g_i=h_ix_i+\xi_i`), ``noise`` is the per-step gradient
    noise variance :math:`s_i^2=\operatorname{Var}\xi_i\ge0`, ``loss_weight`` :math:`c_i\ge0` gives
    :math:`\mathbb E\mathcal L=\tfrac12\sum_ic_i\mathbb Ex_i^2` (:math:`c=h` without preconditioner; times the
    multiplicity of a bin), and ``initial_second_moment`` is :math:`\mathbb Ex_{0,i}^2` (the start has
    :math:`m_0=0`).  Build it with :func:`diagonal_quadratic`, :func:`nqm` or :func:`eigenbasis_quadratic`.
    """

    curvature: np.ndarray
    noise: np.ndarray
    loss_weight: np.ndarray
    initial_second_moment: np.ndarray

    @property
    def dimension(self) -> int:
        return int(self.curvature.size)

    @property
    def initial_loss(self) -> float:
        r""":math:`\mathbb E\mathcal L_0=\tfrac12\sum_ic_i\mathbb Ex_{0,i}^2`."""
        return float(0.5 * np.dot(self.loss_weight, self.initial_second_moment))


def _vector(name: str, value: object, d: int | None, *, positive: bool) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if array.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {array.shape}")
    if d is not None:
        if array.size == 1:
            array = np.full(d, float(array[0]))
        elif array.size != d:
            raise ValueError(f"{name} must have {d} entries to match curvature, got {array.size}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    if positive and not np.all(array > 0.0):
        raise ValueError(f"{name} must be > 0 everywhere; smallest entry {float(array.min())!r}")
    if not positive and not np.all(array >= 0.0):
        raise ValueError(f"{name} must be >= 0 everywhere; smallest entry {float(array.min())!r}")
    return array.copy()


def diagonal_quadratic(
    curvature: object,
    noise: object,
    *,
    loss_weight: object | None = None,
    initial_second_moment: object = 1.0,
) -> DiagonalQuadratic:
    r"""Validate a diagonal noisy quadratic (see :class:`DiagonalQuadratic`); scalars broadcast to every coordinate.

    ``curvature`` must be finite and > 0 (a flat or negative direction has no stationary law), ``noise``,
    ``loss_weight`` (default: ``curvature``) and ``initial_second_moment`` (default 1: :math:`x_0=\pm1`) finite
    and >= 0.
    """
    h = _vector("curvature", curvature, None, positive=True)
    d = h.size
    return DiagonalQuadratic(
        curvature=h,
        noise=_vector("noise", noise, d, positive=False),
        loss_weight=h.copy() if loss_weight is None else _vector("loss_weight", loss_weight, d, positive=False),
        initial_second_moment=_vector("initial_second_moment", initial_second_moment, d, positive=False),
    )


def eigenbasis_quadratic(H: object, Sigma: object, x0: object) -> DiagonalQuadratic:
    r"""The general noisy quadratic :math:`\tfrac12x^\top Hx`, :math:`\operatorname{Cov}\xi=\Sigma`, from :math:`x_0`.

    In the eigenbasis :math:`H=V\operatorname{diag}(h)V^\top` the coordinates :math:`\tilde x=V^\top x` evolve
    independently in mean and variance, with noise variances :math:`S_{ii}` of :math:`S=V^\top\Sigma V`; the
    off-diagonal :math:`S_{ij}` only correlate coordinates and do not enter
    :math:`\mathbb E\mathcal L=\tfrac12\sum_ih_i\mathbb E\tilde x_i^2`.  So curvature :math:`h`, noise
    :math:`\operatorname{diag}S`, loss weights :math:`h` and :math:`\mathbb E\tilde x_{0,i}^2=(V^\top x_0)_i^2`.
    ``H`` must be positive definite (validated by :func:`theory.quadratic.check_quadratic`).
    """
    H, Sigma = check_quadratic(H, Sigma)
    start = np.atleast_1d(np.asarray(x0, dtype=np.float64))
    if start.shape != (H.shape[0],) or not np.all(np.isfinite(start)):
        raise ValueError(f"x0 must be a finite vector of shape ({H.shape[0]},), got {start.shape}")
    basis = rotate_to_eigenbasis(H, Sigma)
    if not basis.eigenvalues[0] > 0.0:
        raise ValueError(f"H must be positive definite: eigenvalue h = {basis.eigenvalues[0]:.6g} <= 0")
    rotated = basis.eigenvectors.T @ start
    return diagonal_quadratic(
        basis.eigenvalues,
        np.clip(np.diagonal(basis.rotated_noise), 0.0, None),
        initial_second_moment=rotated**2,
    )


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    return check_int(value, name, minimum=minimum)


def nqm_bins(dimension: int = NQM_DIMENSION, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Representative curvatures and multiplicities of Zhang et al.'s spectrum :math:`h_i=1/i`, :math:`i\le d`.

    ``bins=None`` (or ``bins >= dimension``): every :math:`h_i` with multiplicity 1.  Otherwise the indices are
    split into ``bins`` consecutive groups: the first :math:`n_0` indices alone, then groups whose edges grow
    geometrically, :math:`e_{j+1}=\lfloor(n_0+1)r^{j+1}\rfloor`, with the smallest :math:`n_0` for which the
    geometric spacing is at least one index.  A group is represented by the mean of :math:`h_i` over it, with
    multiplicity its size, so the initial loss :math:`\tfrac12\sum_ih_i` and the small-:math:`\eta` stationary
    loss are kept exactly; the binning error of loss curves is checked in the tests.
    """
    d = _check_positive_int("dimension", dimension)
    index = np.arange(1, d + 1, dtype=np.float64)
    h = 1.0 / index
    if bins is None or bins >= d:
        return h, np.ones(d)
    n_bins = _check_positive_int("bins", bins)
    head = 0
    while head < n_bins - 1:
        ratio = ((d + 1) / (head + 1)) ** (1.0 / (n_bins - head))
        if (head + 1) * (ratio - 1.0) >= 1.0:
            break
        head += 1
    if head == n_bins - 1:
        ratio = (d + 1) / (head + 1)
    tail = np.floor((head + 1) * ratio ** np.arange(1, n_bins - head + 1)).astype(np.int64)
    tail[-1] = d + 1
    edges = np.concatenate([np.arange(1, head + 2), tail])
    if np.any(np.diff(edges) < 1):
        raise RuntimeError(f"nqm_bins produced an empty group (dimension {d}, bins {n_bins})")
    counts = np.diff(edges).astype(np.float64)
    sums = np.add.reduceat(h, edges[:-1] - 1)
    return sums / counts, counts


def nqm(
    batch_size: int,
    *,
    dimension: int = NQM_DIMENSION,
    bins: int | None = None,
    preconditioner_power: float = 0.0,
    x0: float = 1.0,
) -> DiagonalQuadratic:
    r"""Zhang et al.'s NQM at batch size :math:`B`: :math:`h_i=1/i`, :math:`C=H`, :math:`x_{0,i}=` ``x0``.

    With the preconditioner :math:`P=H^{-p}` (``preconditioner_power`` :math:`p\in[0,1]`) the update uses
    :math:`Pg=H^{1-p}x+P\varepsilon`, so per coordinate

    .. math:: \text{curvature } h_i^{1-p},\qquad \text{noise } h_i^{-2p}\frac{c_i}{B}=\frac{h_i^{1-2p}}{B},\qquad
              \text{loss weight } h_i .

    At :math:`p=\tfrac12` (the NQM's preconditioned runs) the effective curvature is :math:`h_i^{1/2}` (condition
    number :math:`\sqrt{10^4}=100`) and every coordinate receives noise :math:`1/B`.  ``bins``: see
    :func:`nqm_bins` (the representative :math:`\bar h` of a group replaces :math:`h_i` in all three, and the
    loss weight is :math:`n\bar h`).  ``batch_size`` must be an integer >= 1.
    """
    batch = _check_positive_int("batch_size", batch_size)
    power = check_in_unit_interval(preconditioner_power, "preconditioner_power", closed_right=True)
    start = float(x0)
    if not math.isfinite(start):
        raise ValueError(f"x0 must be finite, got {x0!r}")
    h, counts = nqm_bins(dimension, bins)
    return diagonal_quadratic(
        h ** (1.0 - power),
        h ** (1.0 - 2.0 * power) / batch,
        loss_weight=counts * h,
        initial_second_moment=start * start,
    )


# --- exact loss at any step ----------------------------------------------------------------------------------


def _stability_method(beta: float) -> str:
    return "sgd" if beta == 0.0 else "heavy_ball"


def _check_hyper(model: DiagonalQuadratic, eta: float, beta: float) -> tuple[float, float]:
    if not isinstance(model, DiagonalQuadratic):
        raise TypeError(f"model must be a DiagonalQuadratic (see diagonal_quadratic, nqm), got {type(model)!r}")
    eta = check_learning_rate(eta, "eta (effective learning rate)")
    beta = check_momentum(beta)
    return eta, beta


def _transition(model: DiagonalQuadratic, eta: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """:math:`A-I` (2, 2, d) of the state (x, u) and the per-step noise covariance (2, 2, d).

    Coordinates run along the last axis (2x2 products are then a few long vector operations); the entries of
    :math:`A-I` are written without cancellation.
    """
    h = model.curvature
    gamma = eta * (1.0 - beta)
    gh = gamma * h
    Phi = np.empty((2, 2, h.size))
    Phi[0, 0] = -gh
    Phi[0, 1] = -beta
    Phi[1, 0] = gh
    Phi[1, 1] = -(1.0 - beta)
    noise = model.noise * gamma * gamma  # b = gamma (-1, 1): b b^T s^2
    forcing = np.empty((2, 2, h.size))
    forcing[0, 0] = forcing[1, 1] = noise
    forcing[0, 1] = forcing[1, 0] = -noise
    return Phi, forcing


def _product(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per-coordinate 2x2 product: (2, 2, d) by (2, 2, d)."""
    return np.einsum("ijd,jkd->ikd", X, Y)


def _congruence(A: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Per-coordinate :math:`ASA^\\top`."""
    return np.einsum("ijd,jkd,lkd->ild", A, S, A)


_IDENTITY = np.eye(2)[:, :, None]


class _ExactLoss:
    r"""Exact :math:`\mathbb E\mathcal L_k` of one (model, eta, beta) at any k, from binary powers of :math:`A`.

    The second moments of the module docstring's :math:`3\times3` map are kept in their factored form: the
    deterministic part is :math:`\mathbb Ex_0^2\,w_kw_k^\top` with :math:`w_k=A^ke_1`, the noise part the
    covariance :math:`S_k=\sum_{j<k}A^jbb^\top A^{j\top}s^2`.  Binary powers :math:`\Phi_n=A^n-I` and
    :math:`S_n` compose exactly as :math:`\Phi_{m+n}=\Phi_m+\Phi_n+\Phi_m\Phi_n`,
    :math:`S_{m+n}=S_n+A^nS_mA^{n\top}`.  Powering the :math:`2\times2` matrix keeps the Kronecker structure
    of :math:`M` exact: near a repeated root :math:`M` has a nearly triple eigenvalue, and rounding its
    :math:`3\times3` powers directly loses digits like :math:`\epsilon^{1/3}` (2% at :math:`k=1000` in a test
    case, a negative loss further on), while :math:`S_k` stays a sum of positive semi-definite terms.
    """

    def __init__(self, model: DiagonalQuadratic, eta: float, beta: float) -> None:
        self.Phi, self.forcing = _transition(model, eta, beta)
        self.half_weight = 0.5 * model.loss_weight
        self.x0_sq = model.initial_second_moment
        self.powers = [self.Phi]  # A^(2^j) - I
        self.covariances = [self.forcing]  # S_(2^j)
        self._noise: dict[int, float] = {}
        self._scan: tuple[np.ndarray, np.ndarray] | None = None

    def _level(self, j: int) -> None:
        while len(self.powers) <= j:
            Phi, S = self.powers[-1], self.covariances[-1]
            self.powers.append(2.0 * Phi + _product(Phi, Phi))
            self.covariances.append(S + _congruence(_IDENTITY + Phi, S))

    def moments(self, k: int, *, deterministic: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """:math:`w_k=A^ke_1` (2, d) (None unless ``deterministic``) and :math:`S_k` (2, 2, d)."""
        if k < 0 or k >= 2 ** (_MAX_LEVEL + 1):
            raise ValueError(f"step {k} outside [0, 2**{_MAX_LEVEL + 1})")
        self._level(max(k.bit_length() - 1, 0))
        d = self.x0_sq.size
        w = np.zeros((2, d)) if deterministic else None
        if w is not None:
            w[0] = 1.0
        S = np.zeros((2, 2, d))
        j = 0
        while k:
            if k & 1:
                Phi = self.powers[j]
                if w is not None:
                    w = w + np.einsum("ijd,jd->id", Phi, w)
                S = self.covariances[j] + _congruence(_IDENTITY + Phi, S)
            k >>= 1
            j += 1
        return w, S

    def loss(self, k: int) -> float:
        w, S = self.moments(k)
        return float(np.dot(self.half_weight, self.x0_sq * w[0] ** 2 + S[0, 0]))

    def noise_loss(self, k: int) -> float:
        r""":math:`N_k=\tfrac12\sum_ic_i(S_k)_{xx}`, non-decreasing in k (cached)."""
        if k not in self._noise:
            self._noise[k] = float(np.dot(self.half_weight, self.moments(k, deterministic=False)[1][0, 0]))
        return self._noise[k]

    def _scan_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """:math:`A^j-I` and :math:`S_j` for :math:`j<` :data:`SCAN_BLOCK`, by doubling the range."""
        if self._scan is None:
            d = self.x0_sq.size
            Phi = np.zeros((SCAN_BLOCK, 2, 2, d))
            S = np.zeros((SCAN_BLOCK, 2, 2, d))
            Phi[1], S[1] = self.Phi, self.forcing
            n = 2
            while n < SCAN_BLOCK:  # j + n from j < n
                self._level(n.bit_length() - 1)
                Phi_n, S_n = self.powers[n.bit_length() - 1], self.covariances[n.bit_length() - 1]
                stop = min(2 * n, SCAN_BLOCK) - n
                Phi[n : n + stop] = Phi[:stop] + Phi_n + np.einsum("nijd,jkd->nikd", Phi[:stop], Phi_n)
                S[n : n + stop] = S_n + np.einsum("ijd,njkd,lkd->nild", _IDENTITY + Phi_n, S[:stop], _IDENTITY + Phi_n)
                n *= 2
            self._scan = (Phi, S)
        return self._scan

    def block(self, k1: int, k2: int) -> np.ndarray:
        r""":math:`\mathbb E\mathcal L_k` for :math:`k=k_1..k_2` (at most :data:`SCAN_BLOCK` steps), exactly."""
        w, S = self.moments(k1)
        P = self.x0_sq * w[:, None, :] * w[None, :, :] + S  # second moments of (x, u) at k1
        Phi, S_table = self._scan_tables()
        n = k2 - k1 + 1
        row = Phi[:n, 0] + np.array([1.0, 0.0])[None, :, None]  # first row of A^j, (n, 2, d)
        x_moments = np.einsum("nid,ijd,njd->nd", row, P, row) + S_table[:n, 0, 0]
        return x_moments @ self.half_weight


def _check_steps(steps: object) -> np.ndarray:
    array = np.atleast_1d(np.asarray(steps))
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"steps must be integers >= 0, got {steps!r}")
    if array.ndim != 1 or np.any(array < 0):
        raise ValueError(f"steps must be a 1-D sequence of integers >= 0, got {steps!r}")
    return array.astype(np.int64)


def expected_loss_at(model: DiagonalQuadratic, eta: float, beta: float, steps: object) -> np.ndarray:
    r"""Exact :math:`\mathbb E\mathcal L_k` of paper eq. (3) (SGD at :math:`\beta=0`) at the given steps.

    .. math:: \mathbb E\mathcal L_k=\tfrac12\sum_ic_i\big(M_i^kp_{0,i}+G_{i,k}q_i\big)_x,\qquad
              G_k=\sum_{j<k}M^j,

    with :math:`M_i,q_i` of the module docstring, by binary powers in :math:`O(d\log k)` per step count, valid
    for unstable rates too (the loss then grows).  ``steps``: integers >= 0 (any order).  Agrees with stepping the
    recursion (:func:`theory.moments.expected_loss_curve`) to 1e-12 and with a 50-digit evaluation to 1e-10
    relative at :math:`k=10^7`, :math:`\beta=1-10^{-5}` (tests).
    """
    eta, beta = _check_hyper(model, eta, beta)
    exact = _ExactLoss(model, eta, beta)
    return np.array([exact.loss(int(k)) for k in _check_steps(steps)])


def stationary_loss(model: DiagonalQuadratic, eta: float, beta: float = 0.0) -> float:
    r"""Stationary :math:`\mathbb E\mathcal L_\infty` of paper eq. (3) (THEORY.md 5.4, 5.6):

    .. math:: \mathbb E\mathcal L_\infty=\sum_i\frac{c_i}2\,
              \frac{\eta s_i^2(1+\beta)}{h_i\big(2(1+\beta)-\eta h_i(1-\beta)\big)}
              \quad\Big(\beta=0:\ \sum_i\frac{c_i}2\frac{\eta s_i^2}{h_i(2-\eta h_i)}\Big).

    Raises ``ValueError`` naming the stability threshold if some :math:`\eta h_i` breaks it.
    """
    eta, beta = _check_hyper(model, eta, beta)
    h = model.curvature
    check_stable(h, eta, beta, _stability_method(beta))
    variance = eta * model.noise * (1.0 + beta) / (h * (2.0 * (1.0 + beta) - eta * h * (1.0 - beta)))
    return float(0.5 * np.dot(model.loss_weight, variance))


# --- certified lower bound of the deterministic part on a block ---------------------------------------------


class _DeterministicBound:
    r"""Per-coordinate closed form of :math:`w(k)=(A^k)_{11}` (module docstring) and its minimum on a block.

    Coordinates are split by the roots of :math:`r^2-(1+\beta-\gamma h)r+\beta`: real positive
    (:math:`\gamma h\le(1-\sqrt\beta)^2`), complex, real negative (:math:`\gamma h\ge(1+\sqrt\beta)^2`).
    """

    def __init__(self, model: DiagonalQuadratic, eta: float, beta: float) -> None:
        weight = 0.5 * model.loss_weight * model.initial_second_moment
        h = model.curvature
        self.beta = beta
        if beta == 0.0:
            self.sgd = (weight, np.abs(1.0 - eta * h))
            return
        gh = eta * (1.0 - beta) * h
        root = math.sqrt(beta)
        self.log_beta = math.log(beta) if beta < 0.5 else math.log1p(-(1.0 - beta))
        low = ((1.0 - beta) / (1.0 + root)) ** 2  # critical damping (1 - sqrt(beta))^2, without cancellation
        high = (1.0 + root) ** 2
        positive, negative = gh <= low, gh >= high
        complex_ = ~(positive | negative)
        self.positive = self._real(weight[positive], (low - gh[positive]) / (2.0 * root), gh[positive], beta, 1.0)
        self.negative = self._real(weight[negative], (gh[negative] - high) / (2.0 * root), gh[negative], beta, -1.0)
        # Complex roots sqrt(beta) e^(+-i theta): cos theta = 1 - c, c = (gamma h - (1 - sqrt beta)^2) / (2 sqrt beta).
        gc = gh[complex_]
        c = (gc - low) / (2.0 * root)
        theta = 2.0 * np.arcsin(np.sqrt(np.clip(c / 2.0, 0.0, 1.0)))
        sin_theta = np.sin(theta)
        p = (1.0 - beta - gc) / (2.0 * root)
        self.complex = (weight[complex_], theta, sin_theta, p, np.arctan2(p, sin_theta))

    @staticmethod
    def _real(weight: np.ndarray, c: np.ndarray, gh: np.ndarray, beta: float, sigma: float) -> tuple:
        c = np.maximum(c, 0.0)
        a = np.log1p(c + np.sqrt(c) * np.sqrt(c + 2.0))  # cosh a = 1 + c; no overflow for a tiny beta
        p = sigma * (1.0 - beta - gh) / (2.0 * math.sqrt(beta))
        sinh_a = np.where(a > 0.0, np.sinh(a), 1.0)
        return weight, a, p, sinh_a

    def _real_magnitude(self, part: tuple, k: int) -> np.ndarray:
        r""":math:`\beta^{k/2}|\cosh ka+p\sinh ka/\sinh a|`, written with :math:`|r_1|^k<1` (no overflow)."""
        _, a, p, sinh_a = part
        decay = np.exp(k * np.minimum(0.5 * self.log_beta + a, 0.0))  # |r_1| <= 1 (rounding at the threshold)
        ratio = np.where(a > 0.0, -np.expm1(-2.0 * k * a) / sinh_a, 2.0 * k)  # (1 - e^(-2ka)) / sinh a
        return np.abs(decay * 0.5 * (1.0 + np.exp(-2.0 * k * a) + p * ratio))

    def minimum(self, k1: int, k2: int) -> float:
        r"""A lower bound of :math:`\tfrac12\sum_ic_i\mathbb Ex_{0,i}^2w_i(k)^2` over :math:`k_1\le k\le k_2`."""
        if self.beta == 0.0:
            weight, base = self.sgd
            return float(np.dot(weight, base ** (2 * k2)))  # (1 - eta h)^(2k) decreases
        total = 0.0
        if self.positive[0].size:  # w > 0 decreasing: minimum at k2
            total += float(np.dot(self.positive[0], self._real_magnitude(self.positive, k2) ** 2))
        if self.negative[0].size:  # |w| = beta^(k/2) g(k), g increasing: at least beta^(k2) g(k1)^2
            magnitude = self._real_magnitude(self.negative, k1)
            total += math.exp((k2 - k1) * self.log_beta) * float(np.dot(self.negative[0], magnitude**2))
        weight, theta, sin_theta, p, phase = self.complex
        if weight.size:  # w = beta^(k/2) R cos(k theta - phase): zero on the block, else an endpoint
            start = (k1 * theta - phase - 0.5 * math.pi) / math.pi
            stop = (k2 * theta - phase - 0.5 * math.pi) / math.pi
            slack = 1e-9 * (1.0 + np.abs(stop))
            has_zero = np.floor(stop + slack) >= np.ceil(start - slack)
            ends = [np.cos(k * theta) + p * np.sin(k * theta) / sin_theta for k in (k1, k2)]
            smallest = np.where(has_zero, 0.0, np.minimum(ends[0] ** 2, ends[1] ** 2))
            total += math.exp(k2 * self.log_beta) * float(np.dot(weight, smallest))
        return total


# --- steps to target -------------------------------------------------------------------------------------------


#: Smallest target accepted, relative to the initial loss.  The exact loss is accurate to about 1e-13 relative plus
#: 1e-15 of the initial loss, so far below the initial loss the first crossing can be wrong: a Hypothesis search
#: found 314 instead of 356 steps at a target 1e-214 of the initial loss, and 96 instead of 100 at 1e-60.
SMALLEST_RELATIVE_TARGET = 1e-12


def _check_target(target: float) -> float:
    return check_positive(target, "target (a loss level)")


def steps_to_target(
    model: DiagonalQuadratic,
    target: float,
    eta: float,
    beta: float = 0.0,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> float:
    r"""First step :math:`k^*=\min\{k\ge0:\mathbb E\mathcal L_k\le\text{target}\}` of paper eq. (3), exactly.

    The expected loss is the exact, deterministic curve of :func:`expected_loss_at` (normalized SGDM with
    effective learning rate ``eta`` and momentum ``beta``; ``beta=0`` is SGD).  When the curve oscillates or
    rises again, :math:`k^*` is its *first* crossing.  Found by branch and bound on blocks of steps with the
    certified lower bound of the module docstring (noise part non-decreasing, exact minimum of each coordinate's
    deterministic part), then exact stepping through blocks of at most :data:`SCAN_BLOCK` steps; no stepping of the
    whole horizon.

    Returns :math:`k^*` as a float (an integer value), or ``math.inf`` if :math:`\mathbb E\mathcal L_k>` target
    for every :math:`0\le k\le` ``max_steps`` (e.g. the stationary loss :func:`stationary_loss` is above the
    target and no transient dips below it).  Raises ``ValueError`` for an unstable ``eta`` (some
    :math:`\eta h_i\ge` :func:`theory.quadratic.stability_threshold`; the message names it), ``eta <= 0``,
    ``beta`` outside [0, 1), a non-positive ``target``, a target below :data:`SMALLEST_RELATIVE_TARGET` of the initial
    loss, or ``max_steps < 0``.  Source: Zhang et al. (2019)'s
    steps-to-target on the NQM; THEORY.md 5.2, 5.6, 5.7.
    """
    eta, beta = _check_hyper(model, eta, beta)
    target = _check_target(target)
    if target < SMALLEST_RELATIVE_TARGET * model.initial_loss:
        raise ValueError(
            f"target {target!r} is below {SMALLEST_RELATIVE_TARGET:g} of the initial loss {model.initial_loss!r}: "
            "the exact loss is not accurate enough there to find the first crossing"
        )
    horizon = _check_positive_int("max_steps", max_steps, minimum=0)
    if horizon >= 2 ** (_MAX_LEVEL + 1):
        raise ValueError(f"max_steps must be below 2**{_MAX_LEVEL + 1}, got {max_steps!r}")
    check_stable(model.curvature, eta, beta, _stability_method(beta))
    crossing = _first_crossing(_ExactLoss(model, eta, beta), _DeterministicBound(model, eta, beta), target, horizon)
    return math.inf if crossing is None else float(crossing)


def _first_crossing(exact: _ExactLoss, bound: _DeterministicBound, target: float, horizon: int) -> int | None:
    threshold = target * (1.0 + _BOUND_MARGIN)
    stack = [(0, horizon)]
    while stack:
        k1, k2 = stack.pop()
        deterministic = bound.minimum(k1, k2)
        if deterministic > threshold:
            continue  # the deterministic part alone stays above the target
        if exact.noise_loss(k1) + deterministic > threshold:
            continue
        if k2 - k1 < SCAN_BLOCK:
            hits = np.flatnonzero(exact.block(k1, k2) <= target)
            if hits.size:
                return k1 + int(hits[0])
            continue
        middle = (k1 + k2) // 2
        stack.append((middle + 1, k2))
        stack.append((k1, middle))
    return None


# --- tuning ----------------------------------------------------------------------------------------------------


class StepsFunction(Protocol):
    """The signature of :func:`steps_to_target` that :func:`tune_steps_to_target` calls (a method under test)."""

    def __call__(
        self, model: DiagonalQuadratic, target: float, eta: float, beta: float = 0.0, *, max_steps: int = ...
    ) -> float: ...


@dataclass(frozen=True)
class TunedSteps:
    """The best steps to target over the searched (eta, beta), the arguments that gave it, and the work done.

    ``steps`` is ``inf`` (and ``eta``, ``beta`` NaN) when no searched setting reaches the target within
    ``max_steps``.  ``evaluations`` counts calls of the steps function.
    """

    steps: float
    eta: float
    beta: float
    evaluations: int


def _logit(fraction: float) -> float:
    return math.log(fraction / (1.0 - fraction))


def tune_steps_to_target(
    model: DiagonalQuadratic,
    target: float,
    *,
    betas: Sequence[float] = (0.0,),
    grid_points: int = 24,
    refine_iterations: int = 12,
    smallest_fraction: float = 1e-7,
    largest_fraction: float = 1.0 - 1e-6,
    max_steps: int = DEFAULT_MAX_STEPS,
    steps_function: StepsFunction | Callable[..., float] = steps_to_target,
) -> TunedSteps:
    r"""Minimise the steps to target over :math:`\eta` and over the grid ``betas`` (Zhang et al.'s tuned curves).

    For each :math:`\beta` the stable interval is :math:`0<\eta<\eta_{\max}=` threshold :math:`/\max_ih_i`
    (:func:`theory.quadratic.stability_threshold`: 2 for SGD, :math:`2(1+\beta)/(1-\beta)` for SGDM).  Search
    variable :math:`u=\operatorname{logit}(\eta/\eta_{\max})`, which resolves both small rates and rates just
    below the threshold (where SGD's optimum sits at large batch):

    1. grid: ``grid_points`` values of :math:`u` equally spaced from :math:`\operatorname{logit}` of
       ``smallest_fraction`` to that of ``largest_fraction``;
    2. refinement: around the incumbent :math:`u^*` with bracket :math:`[u_-,u_+]` (its grid neighbours), probe
       the midpoints of :math:`[u_-,u^*]` and :math:`[u^*,u_+]`; move to a strictly better probe, else shrink the
       bracket to the probes; ``refine_iterations`` times (the bracket halves each time).

    Every call passes ``max_steps`` = (best so far) - 1, so a setting that cannot beat the incumbent stops early;
    ties keep the first setting found (grid order, then ``betas`` order).  ``steps_function`` is the method under
    test (default :func:`steps_to_target`), called as ``steps_function(model, target, eta, beta,
    max_steps=...)``.
    """
    target = _check_target(target)
    momenta = [check_momentum(b) for b in betas]
    if not momenta:
        raise ValueError("betas must contain at least one momentum value")
    points = _check_positive_int("grid_points", grid_points, minimum=2)
    iterations = _check_positive_int("refine_iterations", refine_iterations, minimum=0)
    if not 0.0 < smallest_fraction < largest_fraction < 1.0:
        raise ValueError(
            "need 0 < smallest_fraction < largest_fraction < 1 (fractions of the stability threshold), got "
            f"{smallest_fraction!r}, {largest_fraction!r}"
        )
    horizon = _check_positive_int("max_steps", max_steps, minimum=0)
    h_max = float(np.max(model.curvature))
    best = TunedSteps(math.inf, math.nan, math.nan, 0)
    evaluations = 0

    def evaluate(u: float, beta: float, eta_max: float) -> float:
        nonlocal best, evaluations
        limit = horizon if math.isinf(best.steps) else int(best.steps) - 1
        if limit < 0:
            return math.inf
        eta = eta_max / (1.0 + math.exp(-u))
        evaluations += 1
        steps = float(steps_function(model, target, eta, beta, max_steps=limit))
        if steps < best.steps:
            best = TunedSteps(steps, eta, beta, evaluations)
        return steps

    for beta in momenta:
        eta_max = float(stability_threshold(beta, _stability_method(beta))) / h_max
        grid = np.linspace(_logit(smallest_fraction), _logit(largest_fraction), points)
        values = [evaluate(float(u), beta, eta_max) for u in grid]
        if not np.isfinite(min(values)):
            continue  # this beta never beat the incumbent on the grid (early exits return inf)
        j = int(np.argmin(values))
        low, centre, high = grid[max(j - 1, 0)], grid[j], grid[min(j + 1, points - 1)]
        centre_steps = values[j]
        for _ in range(iterations):
            left, right = (low + centre) / 2.0, (centre + high) / 2.0
            left_steps = evaluate(left, beta, eta_max)
            if left_steps < centre_steps:
                high, centre, centre_steps = centre, left, left_steps
                continue
            right_steps = evaluate(right, beta, eta_max)
            if right_steps < centre_steps:
                low, centre, centre_steps = centre, right, right_steps
                continue
            low, high = left, right
    return TunedSteps(best.steps, best.eta, best.beta, evaluations)


# --- critical batch size ---------------------------------------------------------------------------------------


def critical_batch_size(batch_sizes: Sequence[float], steps: Sequence[float], *, factor: float = 2.0) -> float:
    r"""Batch size where the steps exceed the linear-scaling extrapolation from the smallest batch by ``factor``.

    Perfect scaling from the smallest batch :math:`B_0` predicts :math:`S_{\rm lin}(B)=S(B_0)B_0/B`.  With the
    ratio :math:`\rho(B)=S(B)/S_{\rm lin}(B)` (1 at :math:`B_0`), the critical batch size is where :math:`\rho`
    first reaches ``factor``, interpolated linearly in :math:`(\log B,\log\rho)` between the two neighbouring batch
    sizes; ``inf`` if it never does within the sweep (an infinite step count counts as exceeding).
    ``batch_sizes`` must be increasing and positive, ``steps`` positive (``inf`` allowed after the first).
    """
    sizes = np.asarray(batch_sizes, dtype=np.float64)
    counts = np.asarray(steps, dtype=np.float64)
    if sizes.ndim != 1 or sizes.shape != counts.shape or sizes.size < 2:
        raise ValueError("batch_sizes and steps must be 1-D sequences of the same length >= 2")
    if not (np.all(sizes > 0) and np.all(np.diff(sizes) > 0)):
        raise ValueError(f"batch_sizes must be positive and increasing, got {sizes.tolist()}")
    if not (np.isfinite(counts[0]) and np.all(counts > 0)):
        raise ValueError(f"steps must be > 0 with a finite first entry, got {counts.tolist()}")
    factor = float(factor)
    if not (math.isfinite(factor) and factor > 1.0):
        raise ValueError(f"factor must be a finite number > 1, got {factor!r}")
    ratio = counts * sizes / (counts[0] * sizes[0])
    above = np.flatnonzero(ratio >= factor)
    if above.size == 0:
        return math.inf
    j = int(above[0])
    if not np.isfinite(ratio[j]):
        return float(sizes[j])
    x0, x1 = math.log(sizes[j - 1]), math.log(sizes[j])
    y0, y1 = math.log(ratio[j - 1]), math.log(ratio[j])
    return float(math.exp(x0 + (math.log(factor) - y0) * (x1 - x0) / (y1 - y0)))
