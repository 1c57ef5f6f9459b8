"""NormalizedSGDM against torch.optim.SGD (THEORY.md 1.4, oracles 1 and 2)."""

from __future__ import annotations

import math

import pytest
import torch

from empirical.optim import NormalizedSGDM

REL = 1e-12  # oracle 1: identical trajectories up to float64 rounding


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()


def _batches(steps: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 5, generator=gen, dtype=torch.float64), torch.randn(8, 1, generator=gen, dtype=torch.float64))
        for _ in range(steps)
    ]


def _train(model, optimizer, batches, scheduler=None):
    for inputs, targets in batches:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize(
    ("eta", "beta", "weight_decay", "nesterov"),
    [(0.05, 0.9, 0.0, False), (0.2, 0.5, 1e-3, False), (0.05, 0.9, 0.0, True), (0.1, 0.0, 1e-2, False)],
)
def test_matches_torch_sgd_for_1000_steps(eta: float, beta: float, weight_decay: float, nesterov: bool) -> None:
    batches = _batches(1000)
    ours = _network()
    theirs = _network()
    x_ours = _train(
        ours,
        NormalizedSGDM(ours.parameters(), lr=eta, momentum=beta, weight_decay=weight_decay, nesterov=nesterov),
        batches,
    )
    torch_opt = torch.optim.SGD(
        theirs.parameters(), lr=eta * (1 - beta), momentum=beta, weight_decay=weight_decay, nesterov=nesterov
    )
    x_theirs = _train(theirs, torch_opt, batches)
    assert _max_rel(x_ours, x_theirs) < REL
    start = torch.cat([p.detach().flatten() for p in _network().parameters()])
    assert _max_rel(x_ours, start) > 1e-3  # the runs actually moved


def test_torch_dampening_is_not_eq3_on_first_step() -> None:
    eta, beta = 0.1, 0.9
    batches = _batches(1)
    ours, theirs = _network(), _network()
    x_ours = _train(ours, NormalizedSGDM(ours.parameters(), lr=eta, momentum=beta), batches)
    x_damp = _train(theirs, torch.optim.SGD(theirs.parameters(), lr=eta, momentum=beta, dampening=beta), batches)
    start = torch.cat([p.detach().flatten() for p in _network().parameters()])
    # Oracle 2: the dampened first step moves 1/(1-beta) = 10 times as far.
    ratio = (x_damp - start).norm() / (x_ours - start).norm()
    assert float(ratio) == pytest.approx(1 / (1 - beta), rel=1e-9)


def test_learning_rate_scheduler_acts_on_eta_like_on_gamma() -> None:
    eta, beta = 0.1, 0.9
    batches = _batches(300)
    ours, theirs = _network(), _network()
    opt_ours = NormalizedSGDM(ours.parameters(), lr=eta, momentum=beta)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=eta * (1 - beta), momentum=beta)
    x_ours = _train(ours, opt_ours, batches, torch.optim.lr_scheduler.MultiStepLR(opt_ours, [100, 200], 0.1))
    x_theirs = _train(theirs, opt_theirs, batches, torch.optim.lr_scheduler.MultiStepLR(opt_theirs, [100, 200], 0.1))
    assert opt_ours.param_groups[0]["lr"] == pytest.approx(eta * 0.01)
    assert _max_rel(x_ours, x_theirs) < REL


def test_state_dict_round_trip_resumes_exactly() -> None:
    batches = _batches(60)
    straight = _network()
    opt = NormalizedSGDM(straight.parameters(), lr=0.1, momentum=0.9)
    x_straight = _train(straight, opt, batches)

    first = _network()
    opt_first = NormalizedSGDM(first.parameters(), lr=0.1, momentum=0.9)
    _train(first, opt_first, batches[:30])
    saved_model, saved_opt = first.state_dict(), opt_first.state_dict()
    resumed = _network(seed=123)
    resumed.load_state_dict(saved_model)
    opt_resumed = NormalizedSGDM(resumed.parameters(), lr=0.5, momentum=0.1)
    opt_resumed.load_state_dict(saved_opt)
    assert opt_resumed.param_groups[0]["momentum"] == 0.9
    x_resumed = _train(resumed, opt_resumed, batches[30:])
    assert torch.equal(x_resumed, x_straight)


def test_param_groups_carry_their_own_hyperparameters() -> None:
    batches = _batches(50)
    ours, theirs = _network(), _network()
    o_first, o_second = list(ours.children())[0], list(ours.children())[2]
    t_first, t_second = list(theirs.children())[0], list(theirs.children())[2]
    opt_ours = NormalizedSGDM(
        [{"params": o_first.parameters()}, {"params": o_second.parameters(), "lr": 0.02, "momentum": 0.5}],
        lr=0.1,
        momentum=0.9,
    )
    opt_theirs = torch.optim.SGD(
        [{"params": t_first.parameters()}, {"params": t_second.parameters(), "lr": 0.02 * 0.5, "momentum": 0.5}],
        lr=0.1 * 0.1,
        momentum=0.9,
    )
    assert _max_rel(_train(ours, opt_ours, batches), _train(theirs, opt_theirs, batches)) < REL


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, r"lr \(effective learning rate eta\) must be a finite number in \(0, inf\)"),
        ({"lr": math.nan}, r"lr .* \(0, inf\)"),
        ({"lr": 0.1, "momentum": 1.0}, r"momentum \(beta\) must lie in \[0, 1\)"),
        ({"lr": 0.1, "momentum": -0.5}, r"momentum \(beta\) must lie in \[0, 1\)"),
        ({"lr": 0.1, "weight_decay": -1e-4}, r"weight_decay must be a finite number in \[0, inf\)"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NormalizedSGDM(_network().parameters(), **kwargs)


def test_bad_param_group_override_raises() -> None:
    model = _network()
    opt = NormalizedSGDM(list(model.children())[0].parameters(), lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": list(model.children())[2].parameters(), "momentum": 1.5})
