r"""SVAG, the stochastic variance amplified gradient (Li, Malladi, Arora 2021; paper Definition 5.1).

Pure math; the PyTorch side is :mod:`empirical.svag`.
"""

from __future__ import annotations

import math

from theory.validation import check_real

__all__ = ["check_svag_factor", "svag_coefficients"]


def check_svag_factor(ell: float) -> float:
    """Return ``ell`` as a float, or raise ``ValueError`` unless it is a finite real number >= 1 (not a bool)."""
    return check_real(ell, "ell (SVAG factor)", low=1.0)


def svag_coefficients(ell: float) -> tuple[float, float]:
    r"""Coefficients :math:`(r_1, r_2)` of SVAG (Definition 5.1; THEORY.md 6.1).

    .. math:: r_{1,2}(\ell)=\frac{1\pm\sqrt{2\ell-1}}{2},\qquad r_1+r_2=1,\qquad r_1^2+r_2^2=\ell,

    so :math:`r_1g^{(1)}+r_2g^{(2)}` of two independent gradients is unbiased with covariance
    :math:`\ell\,\sigma^2\Sigma` (THEORY.md 6.2).  :math:`\ell=1` gives :math:`(1,0)`: plain SGD.
    """
    ell = check_svag_factor(ell)
    root = math.sqrt(2.0 * ell - 1.0)
    return (1.0 + root) / 2.0, (1.0 - root) / 2.0
