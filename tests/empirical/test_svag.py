"""SVAG (Definition 5.1; THEORY.md 6.1-6.2, oracle 4) with a linear-regression oracle of known covariance."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from empirical.optim import NormalizedSGDM
from empirical.svag import TrainSchedule, svag_combine, svag_loss, svag_schedule
from theory.svag import svag_coefficients

Z = 5.0  # Monte Carlo tolerance in standard errors; one fixed seed, ~60 comparisons, P(|N(0,1)| > 5) = 6e-7


@given(ell=st.floats(1.0, 1e4))
def test_coefficients_sum_to_one_and_square_sum_to_ell(ell: float) -> None:
    r1, r2 = svag_coefficients(ell)
    assert r1 + r2 == pytest.approx(1.0, rel=1e-12)
    assert r1**2 + r2**2 == pytest.approx(ell, rel=1e-12)


def test_ell_one_is_plain_sgd() -> None:
    assert svag_coefficients(1) == (1.0, 0.0)


@pytest.mark.parametrize("ell", [0.5, float("nan"), float("inf"), -2])
def test_bad_ell_rejected(ell: float) -> None:
    with pytest.raises(ValueError, match=r"ell \(SVAG factor\) must be a finite number in \[1, inf\)"):
        svag_coefficients(ell)


class _RegressionOracle:
    """Per-example loss (a_i.w - y_i)^2 / 2 over n fixed examples; a batch of B is drawn with replacement.

    At a fixed w the per-example gradients g_i = a_i (a_i.w - y_i) are known exactly, so the mini-batch
    gradient has mean gbar and covariance Sigma / B with Sigma = mean_i (g_i - gbar)(g_i - gbar)^T.
    """

    def __init__(self, n: int = 40, dim: int = 3, batch: int = 4, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.a = torch.randn(n, dim, generator=gen, dtype=torch.float64)
        self.y = torch.randn(n, generator=gen, dtype=torch.float64)
        self.w = torch.randn(dim, generator=gen, dtype=torch.float64)
        self.batch = batch
        per_example = self.a * (self.a @ self.w - self.y)[:, None]
        self.mean = per_example.mean(0)
        centred = per_example - self.mean
        self.cov = centred.T @ centred / n / batch

    def batch_losses(self, indices: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Mean loss of each row of ``indices`` (shape (paths, B)) at parameters ``w``."""
        residual = self.a[indices] @ w - self.y[indices]
        return 0.5 * (residual**2).mean(-1)


def _svag_gradient_samples(oracle: _RegressionOracle, ell: float, paths: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    idx_1 = torch.randint(len(oracle.y), (paths, oracle.batch), generator=gen)
    idx_2 = torch.randint(len(oracle.y), (paths, oracle.batch), generator=gen)

    def one_path(i1: torch.Tensor, i2: torch.Tensor) -> torch.Tensor:
        def loss(w: torch.Tensor) -> torch.Tensor:
            return svag_loss(oracle.batch_losses(i1[None], w)[0], oracle.batch_losses(i2[None], w)[0], ell)

        return torch.func.grad(loss)(oracle.w)

    return torch.func.vmap(one_path)(idx_1, idx_2)


@pytest.mark.parametrize("ell", [1, 2, 4, 8])
def test_svag_gradient_unbiased_with_covariance_ell_sigma(ell: int) -> None:
    oracle = _RegressionOracle()
    samples = _svag_gradient_samples(oracle, ell, paths=200_000, seed=ell)
    n = samples.shape[0]
    mean_se = samples.std(0) / n**0.5
    assert torch.all((samples.mean(0) - oracle.mean).abs() < Z * mean_se)
    centred = samples - oracle.mean  # exact mean, so the product average is unbiased for the covariance
    products = centred[:, :, None] * centred[:, None, :]
    cov_hat = products.mean(0)
    cov_se = products.std(0) / n**0.5
    assert torch.all((cov_hat - ell * oracle.cov).abs() < Z * cov_se), (cov_hat, ell * oracle.cov)
    if ell > 1:  # the same check tells covariance ell*Sigma from plain Sigma: it can fail
        assert not torch.all((cov_hat - oracle.cov).abs() < Z * cov_se)


def test_svag_loss_gradient_equals_combined_gradients() -> None:
    model = torch.nn.Linear(3, 2).double()
    x1, x2 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    loss_1, loss_2 = model(x1).pow(2).mean(), model(x2).pow(2).mean()
    g1 = torch.autograd.grad(loss_1, list(model.parameters()), retain_graph=True)
    g2 = torch.autograd.grad(loss_2, list(model.parameters()), retain_graph=True)
    g_svag = torch.autograd.grad(svag_loss(loss_1, loss_2, 4.0), list(model.parameters()))
    for a, b in zip(g_svag, svag_combine(g1, g2, 4.0), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.05),
        lambda p: torch.optim.SGD(p, lr=0.05 * 0.1, momentum=0.9),
        lambda p: NormalizedSGDM(p, lr=0.05, momentum=0.9),
    ],
    ids=["sgd", "torch-sgdm", "normalized-sgdm"],
)
def test_svag_step_with_any_optimizer_uses_combined_gradient(make_optimizer) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    reference = torch.nn.Linear(3, 1).double()
    reference.load_state_dict(model.state_dict())
    x1, x2 = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    opt, ref_opt = make_optimizer(model.parameters()), make_optimizer(reference.parameters())
    for _ in range(3):
        opt.zero_grad()
        svag_loss(model(x1).pow(2).mean(), model(x2).pow(2).mean(), 8).backward()
        opt.step()
        g1 = torch.autograd.grad(reference(x1).pow(2).mean(), list(reference.parameters()))
        g2 = torch.autograd.grad(reference(x2).pow(2).mean(), list(reference.parameters()))
        for p, g in zip(reference.parameters(), svag_combine(g1, g2, 8), strict=True):
            p.grad = g
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_svag_schedule_rescales_lr_steps_milestones() -> None:
    base = TrainSchedule(lr=0.2, steps=160, momentum=0.9, milestones=(80, 120), warmup_steps=5)
    svag = svag_schedule(base, 4)
    assert (svag.lr, svag.steps, svag.milestones, svag.warmup_steps, svag.momentum, svag.ell) == (
        0.05,
        640,
        (320, 480),
        20,
        0.9,
        4.0,
    )
    # SDE time t = k * eta_k is preserved at every milestone.
    assert svag.lr_at(svag.milestones[0]) * svag.milestones[0] == pytest.approx(base.lr_at(80) * 80)
    under = svag_schedule(base, 4, momentum_scaling="underdamped")
    assert 1 - under.momentum == pytest.approx((1 - 0.9) / 4)
    assert svag_schedule(dataclasses.replace(base, momentum=0.0), 4, "underdamped").momentum == 0.0
    assert svag_schedule(svag, 2).ell == 8.0


def test_schedule_lr_at_applies_warmup_and_decay() -> None:
    s = TrainSchedule(lr=1.0, steps=100, milestones=(50, 80), lr_decay=0.5, warmup_steps=4)
    assert [s.lr_at(k) for k in (0, 3, 49, 50, 80)] == [0.25, 1.0, 1.0, 0.5, 0.25]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0, "steps": 10}, r"lr \(effective learning rate eta\)"),
        ({"lr": 0.1, "steps": 0}, "steps must be a positive integer"),
        ({"lr": 0.1, "steps": 10, "milestones": (5, 3)}, "milestones must be strictly increasing"),
        ({"lr": 0.1, "steps": 10, "momentum": 1.0}, r"momentum \(beta\)"),
        ({"lr": 0.1, "steps": 10, "warmup_steps": 11}, "warmup_steps"),
    ],
)
def test_schedule_rejects_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainSchedule(**kwargs)


def test_svag_schedule_rejects_fractional_ell_and_unknown_scaling() -> None:
    base = TrainSchedule(lr=0.1, steps=10)
    with pytest.raises(ValueError, match="integer"):
        svag_schedule(base, 2.5)
    with pytest.raises(ValueError, match="momentum_scaling"):
        svag_schedule(base, 2, "sideways")  # type: ignore[arg-type]
