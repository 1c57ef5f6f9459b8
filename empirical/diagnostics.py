r"""Curvature and gradient-noise diagnostics of a network at a checkpoint (``torch.func``), Lemma 2.4.

Take :math:`n` examples with per-example losses :math:`\ell_i(x)` and let

.. math::
    \mathcal L(x)=\frac1n\sum_{i=1}^n\ell_i(x),\qquad H=\nabla^2\mathcal L(x),\qquad
    \bar g=\nabla\mathcal L(x),\qquad
    \Sigma=\frac1n\sum_{i=1}^n\big(\nabla\ell_i(x)-\bar g\big)\big(\nabla\ell_i(x)-\bar g\big)^{\top},

so :math:`\Sigma` is the covariance of one example's gradient.  A mini-batch of :math:`B` examples drawn
with replacement has gradient covariance :math:`\Sigma/B`; drawn without replacement from a training set of
:math:`N` examples (what :class:`empirical.data.EpochSampler` does) it has
:math:`\frac{N-B}{B(N-1)}\Sigma` (THEORY.md 2.1).  Write :math:`\Sigma_B` for that batch covariance.

Lemma 2.4 (reconstructed in THEORY.md 2.3; the expansion itself is derived there and checked in the tests
to leave an :math:`O(\eta^3)` residual) splits the expected one-step change of the loss under SGD with
effective learning rate :math:`\eta` as

.. math::
    \mathbb E\,\mathcal L(x_{k+1})-\mathcal L(x_k)=-\eta\|\bar g\|^2
    +\frac{\eta^2}{2}\Big(\underbrace{\bar g^{\top}H\bar g}_{\text{curvature-induced}}
    +\underbrace{\operatorname{tr}(H\Sigma_B)}_{\text{noise-induced}}\Big)+O(\eta^3).

Their ratio :math:`\rho=\bar g^{\top}H\bar g\,/\operatorname{tr}(H\Sigma_B)` does not depend on
:math:`\eta`.  :math:`\rho\ll1`: gradient noise is the main source of instability, the regime in which the
paper proves that SGD and SGDM at the same :math:`\eta` behave alike (Theorems 3.5, 4.5).
:math:`\rho\gtrsim1`: curvature-induced instability binds (large learning rate or batch), where momentum's
larger stability region :math:`\eta\lambda_{\max}<2\frac{1+\beta}{1-\beta}` versus :math:`\eta\lambda_{\max}<2`
can matter (THEORY.md 2.4).  SVAG with factor :math:`\ell` (Definition 5.1) divides the curvature term per
unit of SDE time by :math:`\ell` and keeps the noise term, so it reports :math:`\rho/\ell`.

Everything is computed on a flat parameter vector with ``torch.func`` (``functional_call``, ``grad``,
``jvp``, ``vmap``) with the model in eval mode (batch-norm layers use their running statistics, so the loss
is a sum over examples):

* :func:`sharpness`: :math:`\lambda_{\max}(H)` by power iteration on Hessian-vector products
  (forward-over-reverse), shifted when the dominant eigenvalue is negative;
* :func:`gradient_noise`: :math:`\operatorname{tr}\Sigma` and :math:`\operatorname{tr}(H\Sigma)`, exactly
  (per-example gradients, :math:`\operatorname{tr}(H\Sigma)=\frac1n\sum_ic_i^{\top}Hc_i` with
  :math:`c_i=\nabla\ell_i-\bar g`) or by Hutchinson's estimator with Rademacher probes :math:`z`:
  :math:`\mathbb E\,z^{\top}\Sigma z=\operatorname{tr}\Sigma` and
  :math:`\mathbb E\,(Hz)^{\top}\Sigma z=\operatorname{tr}(H\Sigma)`, where
  :math:`\Sigma z=\frac1nJ^{\top}(Jz-(\bar g^{\top}z)\mathbf 1)` needs one forward-mode and one reverse-mode
  product with the Jacobian :math:`J` of the per-example losses and no per-example gradients;
* :func:`curvature_noise_split`: the terms of Lemma 2.4, their ratio and the regime.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from empirical.data import derive_seed
from theory.params import check_momentum
from theory.quadratic import stability_threshold
from theory.svag import check_svag_factor

__all__ = [
    "CurvatureNoiseSplit",
    "FlatLoss",
    "GradientNoise",
    "Sharpness",
    "batch_covariance_factor",
    "curvature_noise_split",
    "diagnose_checkpoint",
    "gradient_noise",
    "sharpness",
]

PerExampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


class FlatLoss:
    r"""The loss of ``model`` on fixed examples as functions of one flat parameter vector :math:`x\in\mathbb R^d`.

    ``per_example_loss(outputs, targets)`` returns the :math:`n` losses :math:`\ell_i` (default: cross-entropy).
    The model's own parameters are not changed; buffers (batch-norm statistics) are held fixed.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        per_example_loss: PerExampleLoss = _cross_entropy,
    ) -> None:
        if len(inputs) != len(targets) or len(targets) < 2:
            raise ValueError(f"need at least 2 examples with one target each, got {len(inputs)} and {len(targets)}")
        stochastic = (nn.modules.batchnorm._BatchNorm, nn.Dropout)
        if model.training and any(isinstance(m, stochastic) for m in model.modules()):
            raise ValueError(
                "the model has batch-norm or dropout layers: call model.eval() first so the loss is a "
                "fixed function of the parameters"
            )
        self.model, self.inputs, self.targets, self.loss = model, inputs, targets, per_example_loss
        params = dict(model.named_parameters())
        self.names = list(params)
        self.shapes = [p.shape for p in params.values()]
        self.sizes = [p.numel() for p in params.values()]
        self.buffers = {name: b.detach() for name, b in model.named_buffers()}
        self.x0 = torch.cat([p.detach().reshape(-1) for p in params.values()])

    @property
    def dim(self) -> int:
        return self.x0.numel()

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = flat.split(self.sizes)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes, strict=True)}

    def per_example(self, flat: torch.Tensor) -> torch.Tensor:
        """:math:`(\\ell_1(x),\\dots,\\ell_n(x))`."""
        outputs = functional_call(self.model, (self.unflatten(flat), self.buffers), (self.inputs,))
        return self.loss(outputs, self.targets)

    def mean(self, flat: torch.Tensor) -> torch.Tensor:
        """:math:`\\mathcal L(x)`."""
        return self.per_example(flat).mean()

    def gradient(self, flat: torch.Tensor) -> torch.Tensor:
        return grad(self.mean)(flat)

    def hvp(self, flat: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """:math:`H(x)v` by forward-over-reverse differentiation."""
        return jvp(grad(self.mean), (flat,), (vector,))[1]

    def example_gradients(self, flat: torch.Tensor, rows: slice) -> torch.Tensor:
        """:math:`\\nabla\\ell_i(x)` for the examples ``rows``, shape (rows, d)."""

        def one(x: torch.Tensor, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            outputs = functional_call(self.model, (self.unflatten(x), self.buffers), (inputs.unsqueeze(0),))
            return self.loss(outputs, target.unsqueeze(0)).sum()

        return vmap(grad(one), in_dims=(None, 0, 0))(flat, self.inputs[rows], self.targets[rows])


@dataclass(frozen=True)
class Sharpness:
    """Top Hessian eigenvalue, its eigenvector, the iterations used and whether the tolerance was met."""

    value: float
    vector: torch.Tensor
    iterations: int
    converged: bool


def _power_iteration(
    apply: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, iterations: int, tol: float
) -> tuple[float, torch.Tensor, int, bool]:
    vector = start / start.norm()
    value = 0.0
    for iteration in range(1, iterations + 1):
        image = apply(vector)
        new_value = float(vector @ image)  # Rayleigh quotient
        norm = image.norm()
        if float(norm) == 0.0:
            return 0.0, vector, iteration, True
        vector = image / norm
        if iteration > 1 and abs(new_value - value) <= tol * abs(new_value):
            return new_value, vector, iteration, True
        value = new_value
    return value, vector, iterations, False


def sharpness(loss: FlatLoss, *, generator: torch.Generator, iterations: int = 500, tol: float = 1e-10) -> Sharpness:
    r"""Largest eigenvalue :math:`\lambda_{\max}(H)` of the loss Hessian by power iteration on HVPs.

    Power iteration finds the eigenvalue :math:`\lambda_d` of largest magnitude.  If it is negative (a
    saddle), a second run on :math:`H-\lambda_dI` (whose spectrum is :math:`\ge0`) gives
    :math:`\lambda_{\max}=\mu+\lambda_d`.  Stops when the Rayleigh quotient changes by at most ``tol``
    relative; the start vector is Gaussian from ``generator``.
    """
    x = loss.x0
    start = torch.randn(loss.dim, generator=generator, dtype=x.dtype).to(x.device)
    value, vector, used, converged = _power_iteration(lambda v: loss.hvp(x, v), start, iterations, tol)
    if value < 0:
        shift = value
        mu, vector, more, converged = _power_iteration(lambda v: loss.hvp(x, v) - shift * v, start, iterations, tol)
        value, used = mu + shift, used + more
    return Sharpness(value, vector, used, converged)


@dataclass(frozen=True)
class GradientNoise:
    r""":math:`\operatorname{tr}\Sigma`, :math:`\operatorname{tr}(H\Sigma)` and :math:`\bar g` over the examples.

    ``*_se`` are the standard errors of the Hutchinson estimates (0 for the exact method).
    """

    trace_sigma: float
    trace_h_sigma: float
    mean_gradient: torch.Tensor
    method: str
    probes: int = 0
    trace_sigma_se: float = 0.0
    trace_h_sigma_se: float = 0.0


def gradient_noise(
    loss: FlatLoss,
    *,
    method: str = "exact",
    probes: int = 64,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
) -> GradientNoise:
    r"""Trace of the per-example gradient covariance :math:`\Sigma` and :math:`\operatorname{tr}(H\Sigma)`.

    ``method="exact"``: per-example gradients in chunks of ``chunk_size``,
    :math:`\operatorname{tr}\Sigma=\frac1n\sum_i\|c_i\|^2`,
    :math:`\operatorname{tr}(H\Sigma)=\frac1n\sum_ic_i^{\top}Hc_i`
    (one HVP per example).  ``method="hutchinson"``: ``probes`` Rademacher vectors from ``generator``,
    each costing one HVP, one JVP and one VJP of the per-example losses (module docstring).
    """
    x = loss.x0
    n = len(loss.targets)
    mean_gradient = loss.gradient(x)
    if method == "exact":
        trace_sigma = torch.zeros((), dtype=torch.float64, device=x.device)
        trace_h_sigma = torch.zeros((), dtype=torch.float64, device=x.device)
        batched_hvp = vmap(lambda v: loss.hvp(x, v))
        for start in range(0, n, chunk_size):
            centred = loss.example_gradients(x, slice(start, start + chunk_size)) - mean_gradient
            trace_sigma += (centred**2).sum().double()
            trace_h_sigma += (centred * batched_hvp(centred)).sum().double()
        return GradientNoise(float(trace_sigma) / n, float(trace_h_sigma) / n, mean_gradient, "exact")
    if method != "hutchinson":
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
    if generator is None:
        raise ValueError("the Hutchinson estimator needs a torch.Generator for its probes")
    if int(probes) != probes or probes < 2:
        raise ValueError(f"probes must be an integer >= 2, got {probes!r}")
    _, pullback = vjp(loss.per_example, x)
    sigma_samples, h_sigma_samples = [], []
    for _ in range(int(probes)):
        z = (torch.randint(0, 2, (loss.dim,), generator=generator) * 2 - 1).to(dtype=x.dtype, device=x.device)
        directional = jvp(loss.per_example, (x,), (z,))[1]  # J z
        centred = directional - mean_gradient @ z  # C z
        sigma_z = pullback(centred)[0] / n  # Sigma z = J^T C z / n (the columns of C sum to 0)
        sigma_samples.append(float(centred @ centred) / n)
        h_sigma_samples.append(float(loss.hvp(x, z) @ sigma_z))
    sigma_t = torch.tensor(sigma_samples, dtype=torch.float64)
    h_sigma_t = torch.tensor(h_sigma_samples, dtype=torch.float64)
    root = math.sqrt(len(sigma_samples))
    return GradientNoise(
        float(sigma_t.mean()), float(h_sigma_t.mean()), mean_gradient, "hutchinson", int(probes),
        float(sigma_t.std()) / root, float(h_sigma_t.std()) / root,
    )  # fmt: skip


def batch_covariance_factor(batch_size: int, population: int | None = None) -> float:
    r"""Factor :math:`c` with :math:`\operatorname{Cov}(\text{batch-mean gradient})=c\,\Sigma` (THEORY.md 2.1).

    :math:`c=1/B` for draws with replacement (``population=None``), :math:`c=\frac{N-B}{B(N-1)}` without
    replacement from :math:`N` examples.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if population is None:
        return 1.0 / batch_size
    if int(population) != population or population < max(2, batch_size):
        raise ValueError(f"population must be an integer >= max(2, batch_size={batch_size}), got {population!r}")
    return (population - batch_size) / (batch_size * (population - 1))


@dataclass(frozen=True)
class CurvatureNoiseSplit:
    r"""The terms of Lemma 2.4 at one point, their ratio and what it says about momentum (module docstring).

    ``curvature_term`` :math:`=\bar g^{\top}H\bar g`; ``noise_term`` :math:`=\operatorname{tr}(H\Sigma_B)`;
    ``ratio`` :math:`=\rho`; ``svag_ratio`` :math:`=\rho/\ell`.  With ``eta`` given:
    ``descent`` :math:`=\eta\|\bar g\|^2`, ``second_order`` :math:`=\frac{\eta^2}2(\text{curvature}+\text{noise})`,
    ``eta_sharpness`` :math:`=\eta\lambda_{\max}` against the linear-stability thresholds 2 (SGD) and
    :math:`2\frac{1+\beta}{1-\beta}` (heavy ball, THEORY.md 2.4).
    """

    sharpness: float
    grad_norm_sq: float
    curvature_term: float
    trace_sigma: float
    trace_h_sigma: float
    batch_size: int
    batch_covariance_factor: float
    noise_term: float
    ratio: float
    ell: int
    svag_ratio: float
    regime: str
    eta: float | None = None
    momentum: float = 0.0
    descent: float | None = None
    second_order: float | None = None
    eta_sharpness: float | None = None
    sgd_threshold: float = 2.0
    momentum_threshold: float | None = None
    method: str = "exact"
    examples: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def curvature_noise_split(
    loss: FlatLoss,
    batch_size: int,
    *,
    eta: float | None = None,
    momentum: float = 0.0,
    ell: int = 1,
    population: int | None = None,
    method: str = "exact",
    probes: int = 64,
    generator: torch.Generator | None = None,
    power_iterations: int = 500,
) -> CurvatureNoiseSplit:
    r"""Lemma 2.4's curvature-induced term :math:`\bar g^{\top}H\bar g` and noise-induced term
    :math:`\operatorname{tr}(H\Sigma_B)`, their ratio, the sharpness, and the regime (module docstring).

    ``regime`` is ``"noise-dominated"`` when :math:`\rho/\ell<1` (momentum should matter little at this
    :math:`\eta`, the paper's small-learning-rate regime) and ``"curvature-dominated"`` otherwise (momentum
    may matter).  ``generator`` seeds the power iteration (and the Hutchinson probes); default seed 0.
    """
    momentum = check_momentum(momentum, "momentum (beta)")
    if check_svag_factor(ell) != int(ell):
        raise ValueError(f"ell (SVAG factor) must be an integer >= 1, got {ell!r}")
    factor = batch_covariance_factor(batch_size, population)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    top = sharpness(loss, generator=generator, iterations=power_iterations)
    noise = gradient_noise(loss, method=method, probes=probes, generator=generator)
    g = noise.mean_gradient
    grad_norm_sq = float(g @ g)
    curvature = float(g @ loss.hvp(loss.x0, g))
    noise_term = factor * noise.trace_h_sigma
    ratio = curvature / noise_term if noise_term != 0 else math.inf
    eta_values: dict[str, Any] = {}
    if eta is not None:
        eta_values = {
            "eta": float(eta),
            "descent": eta * grad_norm_sq,
            "second_order": eta**2 / 2 * (curvature + noise_term),
            "eta_sharpness": eta * top.value,
        }
    return CurvatureNoiseSplit(
        sharpness=top.value,
        grad_norm_sq=grad_norm_sq,
        curvature_term=curvature,
        trace_sigma=noise.trace_sigma,
        trace_h_sigma=noise.trace_h_sigma,
        batch_size=int(batch_size),
        batch_covariance_factor=factor,
        noise_term=noise_term,
        ratio=ratio,
        ell=int(ell),
        svag_ratio=ratio / ell,
        regime="noise-dominated" if ratio / ell < 1 else "curvature-dominated",
        momentum=momentum,
        sgd_threshold=float(stability_threshold(0.0, "sgd")),
        momentum_threshold=float(stability_threshold(momentum, "heavy_ball")),
        method=method,
        examples=len(loss.targets),
        **eta_values,
    )


def diagnose_checkpoint(
    path: str | Path,
    *,
    examples: int = 1024,
    method: str = "exact",
    probes: int = 64,
    device: str = "cpu",
    seed: int = 0,
) -> CurvatureNoiseSplit:
    """:func:`curvature_noise_split` of a training run's checkpoint (a run folder or its ``checkpoint.pt``).

    Uses ``examples`` training examples drawn by a generator seeded from ``seed`` (without augmentation),
    the run's batch size, final effective learning rate, momentum and SVAG factor, and the without-replacement
    batch covariance of its epoch sampler.  Models with dict inputs (language models) are not supported.
    """
    from empirical.run import load_run_model

    config, model, dataset = load_run_model(path, device)
    split = dataset.train
    if not hasattr(split, "inputs") or isinstance(split.inputs, Mapping):
        raise ValueError("diagnose_checkpoint needs a dataset held as one tensor of inputs")
    count = min(int(examples), len(split))
    generator = torch.Generator().manual_seed(derive_seed(seed, "diagnostics"))
    rows = torch.randperm(len(split), generator=generator)[:count].to(split.targets.device)
    inputs, targets = split.batch(rows)
    model.eval()
    schedule = config.schedule(len(split))
    return curvature_noise_split(
        FlatLoss(model, inputs, targets),
        config.train.batch_size,
        eta=schedule.lr_at(schedule.steps - 1),
        momentum=schedule.momentum,
        ell=config.svag.ell,
        population=len(split),
        method=method,
        probes=probes,
        generator=generator,
    )
