r"""Claim 1: the PyTorch form (paper eq. (1)) and the normalized form (eq. (3)) are one method.

Prediction: ``torch.optim.SGD(lr=gamma, momentum=beta)`` and eq. (3) with :math:`\eta=\gamma/(1-\beta)`
produce the same trajectory (symbolic proof by induction in :mod:`theory.forms`; numerically equal up to
float64 rounding), while ``SGD(lr=eta, momentum=beta, dampening=beta)`` does not: its first step moves
:math:`1/(1-\beta)` times as far (THEORY.md 1.4, oracles 1 and 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from empirical.optim import NormalizedSGDM
from proofs_check.registry import register
from proofs_check.result import ClaimResult
from theory.forms import prove_nesterov_equivalence, prove_pytorch_equivalence

__all__ = ["ROUNDING_TOLERANCE", "check_form_equivalence"]

REFERENCE = "eq. (1) vs eq. (3) / Definition 3.3; THEORY.md 1.3-1.4, oracles 1-2"
STATEMENT = "SGD(lr=gamma, momentum=beta) == eq. (3) at eta = gamma/(1-beta); dampening=beta differs on step 1"
#: Relative parameter deviation allowed for "the same trajectory" in float64 after thousands of steps.
ROUNDING_TOLERANCE = 1e-12

OptimizerFactory = Callable[[Iterable[torch.Tensor], float, float], torch.optim.Optimizer]


def normalized_sgdm(params: Iterable[torch.Tensor], eta: float, beta: float) -> torch.optim.Optimizer:
    """The method under test: eq. (3) at effective learning rate ``eta``."""
    return NormalizedSGDM(params, lr=eta, momentum=beta)


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()


def _trajectory_end(optimizer_factory: Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer], steps: int):
    model = _network()
    optimizer = optimizer_factory(model.parameters())
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        inputs = torch.randn(16, 6, generator=gen, dtype=torch.float64)
        targets = torch.sin(inputs.sum(1, keepdim=True)) + 0.1 * torch.randn(16, 1, generator=gen, dtype=torch.float64)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def check_form_equivalence(
    quick: bool = True, method: OptimizerFactory = normalized_sgdm, eta: float = 0.1, beta: float = 0.9
) -> list[ClaimResult]:
    """Run ``method(params, eta, beta)`` beside ``torch.optim.SGD(lr=eta*(1-beta), momentum=beta)``.

    The trajectory check passes when the maximal relative parameter deviation after ``steps`` float64
    steps is at most :data:`ROUNDING_TOLERANCE`; the dampening check passes when the dampened first step
    is :math:`1/(1-\\beta)` times as long as the method's, to 1e-9 relative.
    """
    steps = 500 if quick else 5000
    symbolic = prove_pytorch_equivalence().holds and prove_nesterov_equivalence().holds
    start = torch.cat([p.detach().flatten() for p in _network().parameters()])

    ours = _trajectory_end(lambda p: method(p, eta, beta), steps)
    torch_sgd = _trajectory_end(lambda p: torch.optim.SGD(p, lr=eta * (1 - beta), momentum=beta), steps)
    deviation = float((ours - torch_sgd).abs().max() / torch_sgd.abs().max())
    moved = float((torch_sgd - start).norm() / start.norm())
    trajectory = ClaimResult(
        claim_id="form_equivalence",
        reference=REFERENCE,
        statement="SGD(lr=eta(1-beta), momentum=beta) and eq. (3) give the same trajectory",
        predicted=0.0,
        measured=deviation,
        ci_low=deviation,
        ci_high=deviation,
        passed=symbolic and deviation <= ROUNDING_TOLERANCE,
        criterion=f"symbolic proof holds and max relative deviation <= {ROUNDING_TOLERANCE:g} after {steps} steps",
        details={"steps": steps, "eta": eta, "beta": beta, "symbolic_proof_holds": symbolic, "relative_move": moved},
    )

    first_ours = _trajectory_end(lambda p: method(p, eta, beta), 1) - start
    first_damp = _trajectory_end(lambda p: torch.optim.SGD(p, lr=eta, momentum=beta, dampening=beta), 1) - start
    ratio = float(first_damp.norm() / first_ours.norm())
    predicted_ratio = 1.0 / (1.0 - beta)
    dampening = ClaimResult(
        claim_id="form_equivalence.dampening",
        reference=REFERENCE,
        statement="SGD(lr=eta, momentum=beta, dampening=beta) is not eq. (3): first step 1/(1-beta) times longer",
        predicted=predicted_ratio,
        measured=ratio,
        ci_low=ratio,
        ci_high=ratio,
        passed=abs(ratio - predicted_ratio) <= 1e-9 * predicted_ratio,
        criterion="|first-step length ratio - 1/(1-beta)| <= 1e-9 relative",
        details={"eta": eta, "beta": beta},
    )
    return [trajectory, dampening]


@register("form_equivalence", 1, REFERENCE, STATEMENT)
def _claim(quick: bool) -> list[ClaimResult]:
    return check_form_equivalence(quick)
