"""Sharpness, gradient-noise traces and Lemma 2.4's split against dense Hessians and exact covariances."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from empirical.diagnostics import (
    FlatLoss,
    batch_covariance_factor,
    curvature_noise_split,
    gradient_noise,
    sharpness,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
REL = 1e-4  # the tolerance against the dense computation
Z = 5.0  # Hutchinson estimates: within 5 standard errors (a handful of comparisons, one fixed seed)


def _tiny_mlp(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    inputs = torch.randn(40, 4, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (40,), generator=generator)
    return model, inputs, targets


def _dense_oracle(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
    """Dense Hessian by torch.func.hessian; per-example gradients by plain autograd, one example at a time."""
    loss = FlatLoss(model, inputs, targets)
    hessian = torch.func.hessian(loss.mean)(loss.x0)
    rows = []
    for x, y in zip(inputs, targets, strict=True):
        value = nn.functional.cross_entropy(model(x[None]), y[None])
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, list(model.parameters()))]))
    gradients = torch.stack(rows)
    mean = gradients.mean(0)
    covariance = (gradients - mean).T @ (gradients - mean) / len(targets)
    return hessian, mean, covariance, gradients


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_sharpness_and_noise_traces_match_dense_computation() -> None:
    model, inputs, targets = _tiny_mlp()
    hessian, mean, covariance, _ = _dense_oracle(model, inputs, targets)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    loss = FlatLoss(model, inputs, targets)
    top = sharpness(loss, generator=torch.Generator().manual_seed(1))
    assert top.converged and _rel(top.value, float(eigenvalues[-1])) < REL
    assert _rel(top.value, float(eigenvalues[-2])) > 100 * REL  # the tolerance separates neighbouring eigenvalues
    noise = gradient_noise(loss)
    assert _rel(noise.trace_sigma, float(torch.trace(covariance))) < REL
    assert _rel(noise.trace_h_sigma, float(torch.trace(hessian @ covariance))) < REL
    torch.testing.assert_close(noise.mean_gradient, mean, rtol=1e-10, atol=1e-12)
    split = curvature_noise_split(loss, batch_size=8, eta=0.1, momentum=0.9)
    assert _rel(split.curvature_term, float(mean @ hessian @ mean)) < REL
    assert _rel(split.noise_term, float(torch.trace(hessian @ covariance)) / 8) < REL
    assert split.ratio == pytest.approx(split.curvature_term / split.noise_term)
    assert split.momentum_threshold == pytest.approx(38.0) and split.eta_sharpness == pytest.approx(0.1 * top.value)


def test_the_tolerance_detects_an_uncentred_covariance() -> None:
    """A plausible wrong definition (second moment instead of covariance) misses the 1e-4 tolerance."""
    model, inputs, targets = _tiny_mlp()
    hessian, _, covariance, gradients = _dense_oracle(model, inputs, targets)
    second_moment = gradients.T @ gradients / len(targets)
    wrong = float(torch.trace(hessian @ second_moment))
    assert _rel(wrong, float(torch.trace(hessian @ covariance))) > 100 * REL


class _Quadratic(nn.Module):
    r"""Output :math:`\tfrac12 w^{\top}Aw+w^{\top}u_i` for input rows :math:`u_i`: Hessian :math:`A`, noise cov(u)."""

    def __init__(self, matrix: torch.Tensor, start: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)
        self.w = nn.Parameter(start.clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.w @ self.matrix @ self.w + inputs @ self.w


def _identity_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return outputs


def test_sharpness_at_a_saddle_is_the_top_eigenvalue_not_the_largest_magnitude() -> None:
    generator = torch.Generator().manual_seed(3)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    matrix = rotation @ torch.diag(torch.tensor([-3.0, 1.0, 0.5], dtype=torch.float64)) @ rotation.T
    inputs = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    model = _Quadratic(matrix, torch.randn(3, generator=generator, dtype=torch.float64))
    loss = FlatLoss(model, inputs, torch.zeros(50), per_example_loss=_identity_loss)
    top = sharpness(loss, generator=generator)
    assert _rel(top.value, 1.0) < REL
    centred = inputs - inputs.mean(0)
    covariance = centred.T @ centred / 50  # per-example gradients are A w + u_i
    noise = gradient_noise(loss)
    assert _rel(noise.trace_sigma, float(torch.trace(covariance))) < REL
    assert _rel(noise.trace_h_sigma, float(torch.trace(matrix @ covariance))) < REL


def test_hutchinson_estimates_within_standard_errors() -> None:
    model, inputs, targets = _tiny_mlp(seed=1)
    hessian, _, covariance, _ = _dense_oracle(model, inputs, targets)
    estimate = gradient_noise(
        FlatLoss(model, inputs, targets), method="hutchinson", probes=400, generator=torch.Generator().manual_seed(0)
    )
    assert abs(estimate.trace_sigma - float(torch.trace(covariance))) < Z * estimate.trace_sigma_se
    assert abs(estimate.trace_h_sigma - float(torch.trace(hessian @ covariance))) < Z * estimate.trace_h_sigma_se
    assert 0 < estimate.trace_h_sigma_se < 0.2 * abs(estimate.trace_h_sigma)  # the check has power


def _one_step_residuals(include_noise: bool) -> list[float]:
    """Exact E L(x - eta g_i) (i uniform, B = 1) minus Lemma 2.4's expansion, for eta, eta/2, eta/4."""
    model, inputs, targets = _tiny_mlp(seed=2)
    loss = FlatLoss(model, inputs, targets)
    split = curvature_noise_split(loss, batch_size=1)
    gradients = torch.stack([loss.example_gradients(loss.x0, slice(i, i + 1))[0] for i in range(len(targets))])
    base = float(loss.mean(loss.x0))
    residuals = []
    for eta in (0.02, 0.01, 0.005):
        exact = float(torch.stack([loss.mean(loss.x0 - eta * g) for g in gradients]).mean())
        second = split.curvature_term + (split.noise_term if include_noise else 0.0)
        residuals.append(exact - (base - eta * split.grad_norm_sq + eta**2 / 2 * second))
    return residuals


def test_lemma_2_4_expansion_leaves_a_third_order_residual() -> None:
    """THEORY.md oracle 20: the split has the right terms iff halving eta divides the residual by about 8."""
    r = _one_step_residuals(include_noise=True)
    assert 6.0 < r[0] / r[1] < 10.0 and 6.0 < r[1] / r[2] < 10.0
    wrong = _one_step_residuals(include_noise=False)  # dropping the noise term leaves an O(eta^2) residual
    assert 3.5 < wrong[1] / wrong[2] < 4.5


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_batch_covariance_factor_by_enumeration(batch: int) -> None:
    values = torch.tensor([0.3, -1.2, 2.5, 0.0, 4.1, -0.7], dtype=torch.float64)
    n = len(values)
    variance = float(((values - values.mean()) ** 2).mean())
    without = torch.stack([values[list(c)].mean() for c in itertools.combinations(range(n), batch)])
    with_replacement = torch.stack([values[list(c)].mean() for c in itertools.product(range(n), repeat=batch)])
    assert float(without.var(unbiased=False)) == pytest.approx(batch_covariance_factor(batch, n) * variance, rel=1e-12)
    assert float(with_replacement.var(unbiased=False)) == pytest.approx(
        batch_covariance_factor(batch) * variance, rel=1e-12
    )


def test_bad_inputs() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with pytest.raises(ValueError, match=r"call model.eval\(\) first"):
        FlatLoss(model, torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    model.eval()
    loss = FlatLoss(model, torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="'exact' or 'hutchinson'"):
        gradient_noise(loss, method="dense")
    with pytest.raises(ValueError, match=r"needs a torch\.Generator"):
        gradient_noise(loss, method="hutchinson")
    with pytest.raises(ValueError, match=r"population must be an integer >= max\(2, batch_size=8\)"):
        batch_covariance_factor(8, 5)
    with pytest.raises(ValueError, match=r"momentum \(beta\) must lie in \[0, 1\)"):
        curvature_noise_split(loss, 2, momentum=1.0)
