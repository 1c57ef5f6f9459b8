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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from theory.params import check_learning_rate, check_momentum
from theory.validation import check_bool, check_nonnegative

__all__ = ["NormalizedSGDM", "check_weight_decay", "normalized_sgdm_update_"]


def check_weight_decay(weight_decay: float) -> float:
    """Return ``weight_decay`` as a float, or raise ``ValueError`` unless it is a finite real number >= 0."""
    return check_nonnegative(weight_decay, "weight_decay")


def _check_group(group: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters of one param group, validated: ``lr``, ``momentum``, ``weight_decay``, ``nesterov``.

    Called at every step, so plain in-range floats take a fast path (a few comparisons; NaN fails them) and
    everything else goes through :mod:`theory.validation`, which names the offending key.
    """
    lr, beta, decay, nesterov = group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]
    if (
        type(lr) is float
        and type(beta) is float
        and type(decay) is float
        and type(nesterov) is bool
        and 0.0 < lr < math.inf
        and 0.0 <= beta < 1.0
        and 0.0 <= decay < math.inf
    ):
        return {"lr": lr, "momentum": beta, "weight_decay": decay, "nesterov": nesterov}
    return {
        "lr": check_learning_rate(group["lr"], "lr (effective learning rate eta)"),
        "momentum": check_momentum(group["momentum"], "momentum (beta)"),
        "weight_decay": check_weight_decay(group["weight_decay"]),
        "nesterov": check_bool(group["nesterov"], "nesterov"),
    }


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
    hyper-parameters, and ``state_dict`` round-trips the momentum buffers :math:`m`.  The hyper-parameters are
    checked at construction, in :meth:`add_param_group`, in :meth:`load_state_dict` and again at every
    :meth:`step`, because ``param_groups`` is a public mutable list (a scheduler or a user may write a NaN into
    it) and a loaded state may come from anywhere; a bad value raises ``ValueError`` naming it before any
    parameter moves.

    ``foreach`` chooses the implementation of the update (:func:`normalized_sgdm_update_`): PyTorch's multi-tensor
    ``_foreach`` kernels (``True``; one kernel launch per operation for all tensors on a GPU) or a loop over the
    tensors (``False``, the reference form).  ``None`` (default) takes ``_foreach`` wherever it exists, which is
    every supported torch: on CUDA it saves the launches, and on the CPU the ``_foreach`` ops run the same
    per-tensor kernels as the loop, so the two forms give bitwise equal iterates there (tested) and results stored
    before the option existed stay as they were.  It is an attribute of the optimizer, not of its state dict.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": check_learning_rate(lr, "lr (effective learning rate eta)"),
            "momentum": check_momentum(momentum, "momentum (beta)"),
            "weight_decay": check_weight_decay(weight_decay),
            "nesterov": check_bool(nesterov, "nesterov"),
        }
        if foreach is not None:
            check_bool(foreach, "foreach")
        self.foreach = foreach
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate per-group overrides at the boundary, not inside step().
        if "lr" in param_group:
            param_group["lr"] = check_learning_rate(param_group["lr"], "lr (effective learning rate eta)")
        if "momentum" in param_group:
            param_group["momentum"] = check_momentum(param_group["momentum"], "momentum (beta)")
        if "weight_decay" in param_group:
            param_group["weight_decay"] = check_weight_decay(param_group["weight_decay"])
        if "nesterov" in param_group:
            param_group["nesterov"] = check_bool(param_group["nesterov"], "nesterov")
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state as ``torch.optim.Optimizer`` does, after checking every group's hyper-parameters."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, Mapping) else None
        if not isinstance(groups, list):
            raise ValueError("state_dict must be a NormalizedSGDM state dict with a list of 'param_groups'")
        for group in groups:
            missing = [key for key in ("lr", "momentum", "weight_decay", "nesterov") if key not in group]
            if missing:
                raise ValueError(f"state_dict param group lacks {missing}")
            _check_group(group)
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Perform one step of eq. (3); ``closure`` re-evaluates the loss, as in ``torch.optim.SGD``."""
        checked = [_check_group(group) for group in self.param_groups]  # all groups, before any update
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, hyper in zip(self.param_groups, checked, strict=True):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("NormalizedSGDM does not support sparse gradients")
            self._update_group(params, hyper)
        return loss

    def _update_group(self, params: list[torch.Tensor], group: Mapping[str, Any]) -> None:
        buffers = None
        if group["momentum"] != 0.0:
            buffers = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buffers.append(state["momentum_buffer"])
        normalized_sgdm_update_(
            params,
            [p.grad for p in params],
            buffers,
            lr=group["lr"],
            momentum=group["momentum"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            foreach=self.foreach,
        )


@torch.no_grad()
def normalized_sgdm_update_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor] | None,
    *,
    lr: float | torch.Tensor,
    momentum: float | torch.Tensor,
    weight_decay: float | torch.Tensor | None = 0.0,
    nesterov: bool = False,
    foreach: bool | None = None,
) -> None:
    r"""One step of paper eq. (3) in place on ``params`` and their momentum ``buffers`` (pure tensor arithmetic).

    .. math::
        g_k=\nabla f_{\omega_k}(x_k)+\lambda x_k,\qquad
        m_{k+1}=\beta m_k+(1-\beta)\,g_k,\qquad
        x_{k+1}=x_k-\eta\,m_{k+1}

    (``nesterov``: :math:`x_{k+1}=x_k-\eta\big((1-\beta)g_k+\beta m_{k+1}\big)`), with ``grads`` the
    :math:`\nabla f_{\omega_k}(x_k)`, ``lr`` :math:`=\eta`, ``momentum`` :math:`=\beta` and ``weight_decay``
    :math:`=\lambda` (``None`` or ``0.0``: none).  The one implementation of the update for
    :class:`NormalizedSGDM` and the vectorised ensemble (:mod:`empirical.ensemble`):

    * Python floats, shared by every tensor (:class:`NormalizedSGDM`): PyTorch's ``_foreach`` kernels
      (``foreach`` ``None`` or ``True``) or, with ``foreach=False``, the same operations tensor by tensor (the
      reference form; bitwise equal on the CPU); ``grads`` are left as they are, and ``buffers`` may be ``None``
      when :math:`\beta=0` (SGD, no buffer kept);
    * 1-D tensors holding one value per member of an ensemble, whose tensors stack the members along their
      leading axis: each hyper-parameter broadcasts over its member's slice, ``grads`` are overwritten with
      :math:`g_k`, and every member keeps a buffer (:math:`\beta_i=0` makes it :math:`g_k`, which is SGD).
      ``nesterov`` is not available in this form.
    """
    if isinstance(lr, torch.Tensor):
        if nesterov:
            raise ValueError("nesterov momentum needs hyper-parameters given as floats")
        if buffers is None:
            raise ValueError("per-member hyper-parameters need a momentum buffer for every tensor")
        one_minus_beta, neg_lr = 1.0 - momentum, -lr
        for p, m, g in zip(params, buffers, grads, strict=True):
            shape = (-1,) + (1,) * (p.dim() - 1)  # one value per member, broadcast over its slice
            if weight_decay is not None:
                g.addcmul_(weight_decay.view(shape), p)  # type: ignore[union-attr]
            m.mul_(momentum.view(shape)).addcmul_(one_minus_beta.view(shape), g)  # type: ignore[union-attr]
            p.addcmul_(neg_lr.view(shape), m)
        return
    eta, beta = lr, momentum
    if beta != 0.0 and buffers is None:
        raise ValueError("momentum beta > 0 needs a momentum buffer for every tensor")
    if foreach is False:
        _reference_update_(params, grads, buffers, eta, beta, weight_decay or 0.0, nesterov)  # type: ignore[arg-type]
        return
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if beta == 0.0:
        torch._foreach_add_(params, grads, alpha=-eta)
        return
    assert buffers is not None
    torch._foreach_mul_(buffers, beta)
    torch._foreach_add_(buffers, grads, alpha=1.0 - beta)
    if nesterov:
        direction = torch._foreach_mul(grads, 1.0 - beta)
        torch._foreach_add_(direction, buffers, alpha=beta)
    else:
        direction = buffers
    torch._foreach_add_(params, direction, alpha=-eta)


def _reference_update_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor] | None,
    eta: float,
    beta: float,
    weight_decay: float,
    nesterov: bool,
) -> None:
    """Eq. (3) tensor by tensor: the operations of the ``_foreach`` form, in the same order, one tensor at a time."""
    for index, (p, grad) in enumerate(zip(params, grads, strict=True)):
        g = grad.add(p, alpha=weight_decay) if weight_decay else grad
        if beta == 0.0:
            p.add_(g, alpha=-eta)
            continue
        m = buffers[index]  # type: ignore[index]
        m.mul_(beta)
        m.add_(g, alpha=1.0 - beta)
        direction = g.mul(1.0 - beta).add_(m, alpha=beta) if nesterov else m
        p.add_(direction, alpha=-eta)
