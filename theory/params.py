r"""Momentum parameterisations, the effective learning rate and the averaged schedule.

Four ways of writing heavy-ball momentum appear in the literature (THEORY.md section 1).  With the
gradient :math:`g_k` evaluated at :math:`x_k` they are

* PyTorch / paper eq. (1):  :math:`b_{k+1}=\beta b_k+g_k,\ x_{k+1}=x_k-\gamma b_{k+1}`;
* normalized / paper eq. (3), Definition 3.3:
  :math:`m_{k+1}=\beta m_k+(1-\beta)g_k,\ x_{k+1}=x_k-\eta m_{k+1}`;
* Polyak: :math:`x_{k+1}=x_k-\gamma g_k+\beta(x_k-x_{k-1})` with :math:`x_{-1}=x_0`;
* Li-Tai-E "MSGD": :math:`v_{k+1}=\beta v_k-\gamma g_k,\ x_{k+1}=x_k+v_{k+1}`,

and, for Nesterov momentum, PyTorch's ``nesterov=True`` update and its normalized counterpart.  All of
them coincide for constant hyper-parameters under :math:`\eta=\gamma/(1-\beta)` and the state maps
:math:`m=(1-\beta)b`, :math:`v=-\gamma b`, :math:`x_k-x_{k-1}=-\gamma b_k`.  The symbolic proofs of these
equivalences, and of the coupling identity of THEORY.md section 8, live in :mod:`theory.forms`.

Everything here is plain Python / NumPy: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from theory.validation import check_in_unit_interval, check_positive, check_real

__all__ = [
    "MomentumParams",
    "averaged_lr_schedule",
    "check_learning_rate",
    "check_momentum",
    "effective_lr",
    "pytorch_lr",
]


def check_momentum(beta: float, name: str = "beta") -> float:
    """Return ``beta`` as a float, or raise ``ValueError`` unless it is a real number with :math:`0\\le\\beta<1`.

    A thin name over :func:`theory.validation.check_in_unit_interval`, kept because callers import it.
    """
    return check_in_unit_interval(beta, name)


def check_learning_rate(lr: float, name: str = "learning rate") -> float:
    """Return ``lr`` as a float, or raise ``ValueError`` unless it is a finite real number > 0 (not a bool).

    A thin name over :func:`theory.validation.check_positive`, for learning rates only: other positive
    quantities (time steps, scales, constants) call :func:`~theory.validation.check_positive` directly.
    """
    return check_positive(lr, name)


def effective_lr(gamma: float, beta: float) -> float:
    r"""Effective (normalized) learning rate of PyTorch heavy ball, THEORY.md section 1.3.

    .. math:: \eta = \frac{\gamma}{1-\beta}

    Each gradient eventually moves the iterate by :math:`\gamma\sum_{t\ge0}\beta^t=\gamma/(1-\beta)`;
    this is the :math:`\eta` of the paper's eq. (3), at which SGD and SGDM are compared.
    """
    gamma = check_learning_rate(gamma, "gamma (PyTorch learning rate)")
    beta = check_momentum(beta)
    return gamma / (1.0 - beta)


def pytorch_lr(eta: float, beta: float) -> float:
    r"""PyTorch learning rate that realises normalized SGDM (paper eq. (3)) with ``torch.optim.SGD``.

    .. math:: \gamma = \eta\,(1-\beta)

    Use it with ``dampening=0``; ``dampening=beta`` differs on the first step (THEORY.md 1.4).
    """
    eta = check_learning_rate(eta, "eta (effective learning rate)")
    beta = check_momentum(beta)
    return eta * (1.0 - beta)


@dataclass(frozen=True)
class MomentumParams:
    r"""Constant SGDM hyper-parameters in the normalized form of paper eq. (3).

    .. math:: m_{k+1}=\beta m_k+(1-\beta)g_k,\qquad x_{k+1}=x_k-\eta\,m_{k+1}

    ``beta = 0`` is SGD.  Construct from PyTorch's (lr, momentum) with :meth:`from_pytorch`.
    """

    eta: float
    beta: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eta", check_learning_rate(self.eta, "eta (effective learning rate)"))
        object.__setattr__(self, "beta", check_momentum(self.beta))

    @classmethod
    def from_pytorch(cls, gamma: float, beta: float) -> MomentumParams:
        """Normalized parameters of ``torch.optim.SGD(lr=gamma, momentum=beta, dampening=0)``."""
        return cls(eta=effective_lr(gamma, beta), beta=beta)

    @classmethod
    def from_alpha(cls, eta: float, alpha: float, c: float = 1.0) -> MomentumParams:
        r"""Momentum scaled with the learning rate (Definition 3.1): :math:`1-\beta=c\,\eta^{\alpha}`."""
        eta = check_learning_rate(eta, "eta (effective learning rate)")
        c = check_positive(c, "c (momentum scaling constant)")
        alpha = check_real(alpha, "alpha (momentum-scaling index)", low=0.0)
        one_minus_beta = c * eta**alpha
        if not (0.0 < one_minus_beta <= 1.0):
            raise ValueError(
                f"1 - beta = c * eta**alpha = {one_minus_beta!r} must lie in (0, 1]; "
                f"got eta={eta}, alpha={alpha}, c={c}"
            )
        return cls(eta=eta, beta=1.0 - one_minus_beta)

    @property
    def gamma(self) -> float:
        r"""PyTorch learning rate :math:`\gamma=\eta(1-\beta)`."""
        return self.eta * (1.0 - self.beta)

    @property
    def coupling_coefficient(self) -> float:
        r"""The :math:`\eta\beta/(1-\beta)` of the coupling :math:`y_k=x_k-\frac{\eta\beta}{1-\beta}m_k`."""
        return self.eta * self.beta / (1.0 - self.beta)


def averaged_lr_schedule(
    etas: Sequence[float] | np.ndarray,
    betas: Sequence[float] | np.ndarray | float,
    *,
    extend_last: bool = False,
) -> np.ndarray:
    r"""Averaged learning-rate schedule :math:`\bar\eta_k` of SGDM with time-varying :math:`(\eta_k,\beta_k)`.

    Under paper eq. (3) with :math:`m_{k+1}=\beta_k m_k+(1-\beta_k)g_k` and :math:`x_{k+1}=x_k-\eta_k m_{k+1}`,
    the gradient :math:`g_k` enters :math:`m_{s+1}` (for :math:`s\ge k`) with weight
    :math:`(1-\beta_k)\prod_{\tau=k+1}^{s}\beta_\tau`, so the total displacement it causes by the horizon
    :math:`K` is

    .. math::
        \bar\eta_k=(1-\beta_k)\sum_{s=k}^{K-1}\eta_s\prod_{\tau=k+1}^{s}\beta_\tau,

    computed by the backward recursion :math:`D_{K}=0,\ D_k=\eta_k+\beta_{k+1}D_{k+1}`,
    :math:`\bar\eta_k=(1-\beta_k)D_k`.  This is the learning rate of the SGD that Theorem 3.5 compares
    SGDM with (THEORY.md 1.5; the paper's index convention is unverified, this one follows from
    eq. (3) and the scheduled coupling identity of :mod:`theory.forms`).

    With ``extend_last=True`` the schedule is held at its last value beyond the horizon
    (:math:`D_K=\eta_{K-1}/(1-\beta_{K-1})`, :math:`\beta_K=\beta_{K-1}`), which gives
    :math:`\bar\eta_k=\eta` exactly for a constant schedule (THEORY.md oracle 5).  With the default
    truncation a constant schedule gives :math:`\bar\eta_k=\eta(1-\beta^{K-k})`.

    Parameters
    ----------
    etas:
        Effective learning rates :math:`\eta_0,\dots,\eta_{K-1}`, each finite and positive.
    betas:
        Momentum coefficients :math:`\beta_0,\dots,\beta_{K-1}` in ``[0, 1)``, or one float for all steps.
    """
    eta_arr = np.asarray(etas, dtype=np.float64)
    if eta_arr.ndim != 1 or eta_arr.size == 0:
        raise ValueError(f"etas must be a non-empty 1-D sequence, got shape {eta_arr.shape}")
    if not (np.all(np.isfinite(eta_arr)) and np.all(eta_arr > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(eta_arr) & (eta_arr > 0)))[0])
        raise ValueError(f"etas must be finite and > 0; etas[{bad}] = {eta_arr[bad]!r}")
    beta_arr = np.broadcast_to(np.asarray(betas, dtype=np.float64), eta_arr.shape)
    if not np.all((beta_arr >= 0) & (beta_arr < 1)):
        bad = int(np.flatnonzero(~((beta_arr >= 0) & (beta_arr < 1)))[0])
        raise ValueError(f"betas must lie in [0, 1); betas[{bad}] = {beta_arr[bad]!r}")

    # `carried` holds beta_{k+1} D_{k+1}, the part of D_k contributed by later steps.
    carried = eta_arr[-1] * beta_arr[-1] / (1.0 - beta_arr[-1]) if extend_last else 0.0
    displacement = np.empty(eta_arr.size)
    for k in range(eta_arr.size - 1, -1, -1):
        displacement[k] = eta_arr[k] + carried
        carried = beta_arr[k] * displacement[k]
    return (1.0 - beta_arr) * displacement
