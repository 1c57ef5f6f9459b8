r"""PyTorch optimizers in the paper's normalized parameterisation.

:class:`NormalizedSGDM` implements paper eq. (3) (Definition 3.3) directly, so that SGD and SGDM are
compared at the same effective learning rate :math:`\eta` without converting to PyTorch's :math:`\gamma`.
For constant :math:`\beta` it produces the same iterates as ``torch.optim.SGD(lr=eta*(1-beta),
momentum=beta)`` (proved symbolically in :mod:`theory.forms`, checked numerically in the tests), also under
any learning-rate scheduler; it differs from PyTorch when :math:`\beta` itself is scheduled, where eq. (3)
is the form the paper's theory uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from theory.params import check_learning_rate, check_momentum

__all__ = ["NormalizedSGDM", "check_weight_decay"]


def check_weight_decay(weight_decay: float) -> float:
    """Return ``weight_decay`` as a float, or raise ``ValueError`` unless it is finite and >= 0."""
    try:
        value = float(weight_decay)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weight_decay must be a finite number in [0, inf), got {weight_decay!r}") from exc
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"weight_decay must be a finite number in [0, inf), got {weight_decay!r}")
    return value


class NormalizedSGDM(torch.optim.Optimizer):
    r"""SGD with momentum in the normalized form of paper eq. (3).

    .. math::
        g_k=\nabla f_{\omega_k}(x_k)+\lambda x_k,\qquad
        m_{k+1}=\beta m_k+(1-\beta)\,g_k,\qquad
        x_{k+1}=x_k-\eta\,m_{k+1},\qquad m_0=0,

    with ``lr`` :math:`=\eta` (the effective learning rate), ``momentum`` :math:`=\beta\in[0,1)` and
    ``weight_decay`` :math:`=\lambda` (coupled, as in ``torch.optim.SGD``).  ``momentum=0`` is SGD.
    With ``nesterov=True`` the step is :math:`x_{k+1}=x_k-\eta\big((1-\beta)g_k+\beta m_{k+1}\big)`, the
    normalized form of ``torch.optim.SGD(nesterov=True)``.

    Learning-rate schedulers act on ``lr`` (that is, on :math:`\eta`), param groups may carry their own
    hyper-parameters, and ``state_dict`` round-trips the momentum buffers :math:`m`.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = {
            "lr": check_learning_rate(lr, "lr (effective learning rate eta)"),
            "momentum": check_momentum(momentum, "momentum (beta)"),
            "weight_decay": check_weight_decay(weight_decay),
            "nesterov": bool(nesterov),
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate per-group overrides at the boundary, not inside step().
        if "lr" in param_group:
            param_group["lr"] = check_learning_rate(param_group["lr"], "lr (effective learning rate eta)")
        if "momentum" in param_group:
            param_group["momentum"] = check_momentum(param_group["momentum"], "momentum (beta)")
        if "weight_decay" in param_group:
            param_group["weight_decay"] = check_weight_decay(param_group["weight_decay"])
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Perform one step of eq. (3); ``closure`` re-evaluates the loss, as in ``torch.optim.SGD``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("NormalizedSGDM does not support sparse gradients")
            self._update_group(params, group)
        return loss

    def _update_group(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        eta, beta = group["lr"], group["momentum"]
        grads = [p.grad for p in params]
        if group["weight_decay"] != 0.0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if beta == 0.0:
            torch._foreach_add_(params, grads, alpha=-eta)
            return
        buffers = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buffers.append(state["momentum_buffer"])
        torch._foreach_mul_(buffers, beta)
        torch._foreach_add_(buffers, grads, alpha=1.0 - beta)
        if group["nesterov"]:
            direction = torch._foreach_mul(grads, 1.0 - beta)
            torch._foreach_add_(direction, buffers, alpha=beta)
        else:
            direction = buffers
        torch._foreach_add_(params, direction, alpha=-eta)
