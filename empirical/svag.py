r"""SVAG (paper Definition 5.1; Li, Malladi, Arora 2021) for any PyTorch optimizer.

SVAG replaces the mini-batch loss by :math:`r_1\mathcal L_{\omega_1}+r_2\mathcal L_{\omega_2}` of two
independent mini-batches, runs :math:`\ell` times as many steps at learning rate :math:`\eta/\ell`, and so
keeps the gradient-noise SDE fixed while shrinking the curvature-induced term of Lemma 2.4 by
:math:`1/\ell`.  Two pieces:

* :func:`svag_loss` / :func:`svag_combine` form the amplified loss or gradient; because they act on losses
  or gradients, they work with ``torch.optim.SGD`` (with or without momentum) and with
  :class:`empirical.optim.NormalizedSGDM` alike;
* :func:`svag_schedule` turns a training schedule into its SVAG schedule (pure function).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from theory.params import check_learning_rate, check_momentum
from theory.svag import check_svag_factor, svag_coefficients

__all__ = ["TrainSchedule", "svag_combine", "svag_loss", "svag_schedule"]


def svag_loss(loss_1: torch.Tensor, loss_2: torch.Tensor, ell: float) -> torch.Tensor:
    r"""SVAG loss of two independent mini-batch losses, Definition 5.1.

    .. math:: \mathcal L^{\ell}_{\bar\omega}=r_1(\ell)\,\mathcal L_{\omega_1}+r_2(\ell)\,\mathcal L_{\omega_2},
              \qquad r_{1,2}=\frac{1\pm\sqrt{2\ell-1}}{2}

    Its gradient is unbiased with covariance :math:`\ell` times that of one mini-batch gradient.
    """
    r1, r2 = svag_coefficients(ell)
    return r1 * loss_1 + r2 * loss_2


def svag_combine(
    grads_1: torch.Tensor | Sequence[torch.Tensor],
    grads_2: torch.Tensor | Sequence[torch.Tensor],
    ell: float,
) -> torch.Tensor | list[torch.Tensor]:
    r"""SVAG gradient :math:`r_1g^{(1)}+r_2g^{(2)}` of two independent mini-batch gradients (Definition 5.1).

    Accepts one tensor or matching sequences of tensors (one per parameter).
    """
    r1, r2 = svag_coefficients(ell)
    if isinstance(grads_1, torch.Tensor) and isinstance(grads_2, torch.Tensor):
        if grads_1.shape != grads_2.shape:
            raise ValueError(f"SVAG gradients must have equal shapes, got {grads_1.shape} and {grads_2.shape}")
        return r1 * grads_1 + r2 * grads_2
    grads_1, grads_2 = list(grads_1), list(grads_2)
    if len(grads_1) != len(grads_2):
        raise ValueError(f"SVAG needs one gradient per parameter in both lists, got {len(grads_1)} and {len(grads_2)}")
    return [svag_combine(a, b, ell) for a, b in zip(grads_1, grads_2, strict=True)]


MomentumScaling = Literal["fixed", "underdamped"]


@dataclass(frozen=True)
class TrainSchedule:
    r"""Optimizer schedule of one training run, in steps, in the normalized parameterisation.

    ``lr`` is the effective learning rate :math:`\eta` (``torch.optim.SGD`` needs
    :math:`\gamma=\eta(1-\beta)`), ``momentum`` is :math:`\beta` (0 for SGD), ``milestones`` are the steps at
    which the learning rate is multiplied by ``lr_decay``, ``warmup_steps`` ramps it linearly from 0,
    ``cosine`` replaces the step decays by a cosine decay to 0 over the steps after warm-up, and ``ell``
    records the SVAG factor already applied (1 for a plain run).
    """

    lr: float
    steps: int
    momentum: float = 0.0
    milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    warmup_steps: int = 0
    ell: float = 1.0
    cosine: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_learning_rate(self.lr, "lr (effective learning rate eta)"))
        object.__setattr__(self, "momentum", check_momentum(self.momentum, "momentum (beta)"))
        object.__setattr__(self, "ell", check_svag_factor(self.ell))
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        milestones = tuple(int(s) for s in self.milestones)
        if any(s < 1 or s > self.steps for s in milestones) or list(milestones) != sorted(set(milestones)):
            raise ValueError(
                f"milestones must be strictly increasing steps in [1, {self.steps}], got {self.milestones!r}"
            )
        object.__setattr__(self, "milestones", milestones)
        if not (0.0 < self.lr_decay <= 1.0):
            raise ValueError(f"lr_decay must lie in (0, 1], got {self.lr_decay!r}")
        if int(self.warmup_steps) != self.warmup_steps or not (0 <= self.warmup_steps <= self.steps):
            raise ValueError(f"warmup_steps must be an integer in [0, {self.steps}], got {self.warmup_steps!r}")
        if self.cosine and milestones:
            raise ValueError("a cosine schedule has no milestones: give either cosine=True or milestones, not both")

    def lr_at(self, step: int) -> float:
        r"""Effective learning rate :math:`\eta_k` used at step ``step`` (0-based), warm-up and decays applied.

        .. math:: \eta_k=\eta\,\min\Big(1,\frac{k+1}{W}\Big)\,d(k),\qquad
                  d(k)=\rho^{\#\{s\in\text{milestones}:\,k\ge s\}}\ \text{or}\
                  d(k)=\tfrac12\Big(1+\cos\frac{\pi\max(0,k-W)}{K-W}\Big)\ \text{(cosine)},

        with :math:`W` the warm-up steps, :math:`K` the steps and :math:`\rho` ``lr_decay``.
        """
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.cosine:
            span = max(1, self.steps - self.warmup_steps)
            return self.lr * warm * 0.5 * (1.0 + math.cos(math.pi * max(0, step - self.warmup_steps) / span))
        decays = sum(1 for s in self.milestones if step >= s)
        return self.lr * warm * self.lr_decay**decays


def svag_schedule(schedule: TrainSchedule, ell: float, momentum_scaling: MomentumScaling = "fixed") -> TrainSchedule:
    r"""The SVAG version of a schedule: same SDE time, :math:`\ell` times as many steps (THEORY.md 6.1, 6.5).

    .. math:: \eta\to\eta/\ell,\qquad K\to\ell K,\qquad \text{milestones and warm-up}\times\ell,

    and for the momentum either ``"fixed"`` (:math:`\beta` unchanged, the paper's Figure 2, the
    :math:`\alpha=0` regime) or ``"underdamped"`` (:math:`1-\beta\to(1-\beta)/\ell`, which keeps the
    underdamped SDE of THEORY.md 3.5 fixed).  ``ell`` must be an integer >= 1 so step counts stay integers.
    """
    ell = check_svag_factor(ell)
    if ell != int(ell):
        raise ValueError(f"ell (SVAG factor) must be an integer so that step counts scale exactly, got {ell!r}")
    factor = int(ell)
    if momentum_scaling == "fixed":
        momentum = schedule.momentum
    elif momentum_scaling == "underdamped":
        # SGD (beta = 0) has no momentum time scale to rescale.
        momentum = 0.0 if schedule.momentum == 0.0 else 1.0 - (1.0 - schedule.momentum) / factor
    else:
        raise ValueError(f"momentum_scaling must be 'fixed' or 'underdamped', got {momentum_scaling!r}")
    return dataclasses.replace(
        schedule,
        lr=schedule.lr / factor,
        steps=schedule.steps * factor,
        momentum=momentum,
        milestones=tuple(s * factor for s in schedule.milestones),
        warmup_steps=schedule.warmup_steps * factor,
        ell=schedule.ell * factor,
    )
