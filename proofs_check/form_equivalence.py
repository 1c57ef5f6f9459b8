r"""Claim 1: the PyTorch form (paper eq. (1)) and the normalized form (eq. (3)) are one method.

Prediction: ``torch.optim.SGD(lr=gamma, momentum=beta)`` and eq. (3) with :math:`\eta=\gamma/(1-\beta)`
produce the same trajectory (symbolic proof by induction in :mod:`theory.forms`; numerically equal up to
float64 rounding), while ``SGD(lr=eta, momentum=beta, dampening=beta)`` does not: its first step moves
:math:`1/(1-\beta)` times as far (THEORY.md 1.4, oracles 1 and 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from proofs_check.methods import REFERENCE, MethodSet
from proofs_check.registry import register
from proofs_check.result import ClaimResult
from proofs_check.verdicts import guarded
from theory.forms import prove_nesterov_equivalence, prove_pytorch_equivalence

__all__ = ["ROUNDING_TOLERANCE", "check_form_equivalence"]

REFERENCE_TEXT = "eq. (1) vs eq. (3) / Definition 3.3; THEORY.md 1.3-1.4, oracles 1-2"
STATEMENT = "SGD(lr=gamma, momentum=beta) == eq. (3) at eta = gamma/(1-beta); dampening=beta differs on step 1"
#: Relative parameter deviation allowed for "the same trajectory" in float64 after thousands of steps.
ROUNDING_TOLERANCE = 1e-12
#: Relative accuracy of the first-step length ratio (one float64 step: rounding only).
RATIO_TOLERANCE = 1e-9
FIELDS = ("torch_sgdm", "update_step", "nesterov_step")


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
    quick: bool = True, methods: MethodSet = REFERENCE, seed: int | None = None, eta: float = 0.1, beta: float = 0.9
) -> list[ClaimResult]:
    """Run ``methods.torch_sgdm(params, eta, beta)`` beside ``torch.optim.SGD(lr=eta*(1-beta), momentum=beta)``.

    The trajectory check passes when SymPy proves ``methods.update_step`` (and ``methods.nesterov_step``) equal to the
    PyTorch forms and the maximal relative parameter deviation after ``steps`` float64 steps is at most
    :data:`ROUNDING_TOLERANCE`; the dampening check passes when the dampened first step is :math:`1/(1-\\beta)` times
    as long as the method's, to :data:`RATIO_TOLERANCE` relative.  Deterministic: ``seed`` is unused.
    """
    steps = 500 if quick else 5000

    def trajectory() -> ClaimResult:
        heavy_ball = prove_pytorch_equivalence(methods.update_step).holds
        nesterov = prove_nesterov_equivalence(methods.nesterov_step).holds
        start = torch.cat([p.detach().flatten() for p in _network().parameters()])
        ours = _trajectory_end(lambda p: methods.torch_sgdm(p, eta, beta), steps)
        torch_sgd = _trajectory_end(lambda p: torch.optim.SGD(p, lr=eta * (1 - beta), momentum=beta), steps)
        deviation = float((ours - torch_sgd).abs().max() / torch_sgd.abs().max())
        moved = float((torch_sgd - start).norm() / start.norm())
        return ClaimResult(
            claim_id="form_equivalence",
            reference=REFERENCE_TEXT,
            statement="SGD(lr=eta(1-beta), momentum=beta) and eq. (3) give the same trajectory",
            predicted=0.0,
            measured=deviation,
            ci_low=deviation,
            ci_high=deviation,
            passed=heavy_ball and nesterov and deviation <= ROUNDING_TOLERANCE,
            criterion=(
                f"symbolic proofs hold (update_step = PyTorch heavy ball, nesterov_step = PyTorch Nesterov) and max "
                f"relative deviation of torch_sgdm <= {ROUNDING_TOLERANCE:g} after {steps} steps"
            ),
            details={
                "steps": steps,
                "eta": eta,
                "beta": beta,
                "heavy_ball_proof_holds": heavy_ball,
                "nesterov_proof_holds": nesterov,
                "relative_move": moved,
            },
            fields=FIELDS,
        )

    def dampening() -> ClaimResult:
        start = torch.cat([p.detach().flatten() for p in _network().parameters()])
        first_ours = _trajectory_end(lambda p: methods.torch_sgdm(p, eta, beta), 1) - start
        first_damp = _trajectory_end(lambda p: torch.optim.SGD(p, lr=eta, momentum=beta, dampening=beta), 1) - start
        ours_norm = float(first_ours.norm())
        ratio = float(first_damp.norm()) / ours_norm if ours_norm > 0 else float("inf")
        predicted_ratio = 1.0 / (1.0 - beta)
        return ClaimResult(
            claim_id="form_equivalence.dampening",
            reference=REFERENCE_TEXT,
            statement="SGD(lr=eta, momentum=beta, dampening=beta) is not eq. (3): first step 1/(1-beta) times longer",
            predicted=predicted_ratio,
            measured=ratio,
            ci_low=ratio,
            ci_high=ratio,
            passed=abs(ratio - predicted_ratio) <= RATIO_TOLERANCE * predicted_ratio,
            criterion=f"|first-step length ratio (dampened / torch_sgdm) - 1/(1-beta)| <= {RATIO_TOLERANCE:g} relative",
            details={"eta": eta, "beta": beta},
            fields=("torch_sgdm",),
        )

    return [
        *guarded("form_equivalence", REFERENCE_TEXT, STATEMENT, FIELDS, trajectory),
        *guarded("form_equivalence.dampening", REFERENCE_TEXT, STATEMENT, ("torch_sgdm",), dampening),
    ]


@register("form_equivalence", 1, REFERENCE_TEXT, STATEMENT, FIELDS)
def _claim(quick: bool, methods: MethodSet, seed: int | None) -> list[ClaimResult]:
    return check_form_equivalence(quick, methods, seed)
