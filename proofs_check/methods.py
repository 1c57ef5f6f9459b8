r"""What the claim checks verify: :class:`MethodSet`, the package's own set :data:`REFERENCE`, and :data:`MUTANTS`.

A claim of the paper is a statement about a *method* (an update rule, a simulator, an optimizer, a closed
form).  Every check of :mod:`proofs_check` takes a :class:`MethodSet` and verifies the fields it names in
:attr:`proofs_check.result.ClaimResult.fields`; the predictions it compares with come from the theory (SymPy
derivations, exact closed forms, thresholds), never from the set under test.  So

>>> import dataclasses
>>> from proofs_check import run_all
>>> from proofs_check.methods import REFERENCE
>>> mine = dataclasses.replace(REFERENCE, sgdm=my_sgdm)          # doctest: +SKIP
>>> run_all(quick=True, methods=mine)                            # doctest: +SKIP

verifies a user's own SGDM against every claim about SGDM.

:data:`MUTANTS` are deliberately wrong sets, each with the claims it must break (:class:`Mutant`); ``mvm verify
--mutants`` runs them and prints the kill matrix.  A mutant changes as few fields as possible, so a failing
verdict tells which implementation it caught.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from empirical.optim import NormalizedSGDM
from theory.batch_scaling import steps_to_target
from theory.forms import Step, normalized_nesterov_step, normalized_step, sgd_step
from theory.loss_change import LossChangeTerms, lemma_2_4_terms
from theory.problems import Problem
from theory.quadratic import stationary_covariance
from theory.simulate import SGD, SGDM, SVAG, Method
from theory.svag import svag_coefficients

__all__ = [
    "MUTANTS",
    "REFERENCE",
    "LaggedSGDM",
    "MethodSet",
    "Mutant",
    "changed_fields",
    "lr_error_mutant",
    "noise_variance_mutant",
]

#: ``sgd(problem, eta, *, sigma=None, time_scale=None)``; ``sigma=None`` is the canonical :math:`\eta^{-1/2}`.
SGDFactory = Callable[..., Method]
#: ``sgdm(problem, eta, beta, *, sigma=None, time_scale=None)``.
SGDMFactory = Callable[..., Method]
#: ``svag(problem, eta, ell, beta, *, sigma=None)``.
SVAGFactory = Callable[..., Method]
#: ``torch_sgdm(params, eta, beta) -> torch.optim.Optimizer``.
TorchFactory = Callable[[Iterable[torch.Tensor], float, float], torch.optim.Optimizer]
#: ``stationary_covariance(H, Sigma, eta, beta) -> (d, d) ndarray``.
StationaryCovariance = Callable[[np.ndarray, np.ndarray, float, float], np.ndarray]
#: ``loss_expansion(grad, hess, noise_cov, eta) -> LossChangeTerms`` (Lemma 2.4).
LossExpansion = Callable[..., LossChangeTerms]


def _sgd(problem: Problem, eta: float, *, sigma: float | None = None, time_scale: float | None = None) -> Method:
    r"""SGD :math:`x_{k+1}=x_k-\eta(\nabla\mathcal L(x_k)+\sigma B(x_k)z_k)` (:class:`theory.simulate.SGD`)."""
    return SGD(problem, eta, sigma=sigma, time_scale=time_scale)


def _sgdm(
    problem: Problem, eta: float, beta: float, *, sigma: float | None = None, time_scale: float | None = None
) -> Method:
    r"""Paper eq. (3), :class:`theory.simulate.SGDM`.

    .. math:: m_{k+1}=\beta m_k+(1-\beta)g_k,\qquad x_{k+1}=x_k-\eta m_{k+1}
    """
    return SGDM(problem, eta, beta=beta, sigma=sigma, time_scale=time_scale)


def _svag(problem: Problem, eta: float, ell: float, beta: float = 0.0, *, sigma: float | None = None) -> Method:
    r"""SVAG (Definition 5.1, :class:`theory.simulate.SVAG`).

    Learning rate :math:`\eta/\ell`, gradient :math:`r_1g^{(1)}+r_2g^{(2)}`.
    """
    return SVAG(problem, eta, ell=ell, sigma=sigma, beta=beta)


def _torch_sgdm(params: Iterable[torch.Tensor], eta: float, beta: float) -> torch.optim.Optimizer:
    """Eq. (3) as a torch optimizer at effective learning rate ``eta`` (:class:`empirical.optim.NormalizedSGDM`)."""
    return NormalizedSGDM(params, lr=eta, momentum=beta)


@dataclass(frozen=True)
class MethodSet:
    r"""Every implementation a claim of :mod:`proofs_check` verifies, one field per concept.

    Simulators (:class:`theory.simulate.Method` factories; ``sigma=None`` means the canonical noise scale
    :math:`\sigma=\eta^{-1/2}`, ``time_scale=None`` one step per :math:`\eta` of continuous time):

    * ``sgd(problem, eta, *, sigma, time_scale)``: SGD.
    * ``sgdm(problem, eta, beta, *, sigma, time_scale)``: normalized SGDM, paper eq. (3), at effective rate
      :math:`\eta`.
    * ``svag(problem, eta, ell, beta, *, sigma)``: SVAG (Definition 5.1) at :math:`\eta/\ell` per step.

    Formulas and rules:

    * ``svag_coefficients(ell) -> (r1, r2)``: Definition 5.1's coefficients.
    * ``torch_sgdm(params, eta, beta)``: eq. (3) as a ``torch.optim.Optimizer``.
    * ``stationary_covariance(H, Sigma, eta, beta)``: exact stationary covariance of eq. (3) on
      :math:`\tfrac12x^\top Hx` with additive noise of covariance :math:`\Sigma` (SGD at :math:`\beta=0`).
    * ``loss_expansion(grad, hess, noise_cov, eta) -> LossChangeTerms``: Lemma 2.4's descent, curvature-induced
      and noise-induced terms.
    * ``update_step``, ``nesterov_step``, ``sgd_step``: one deterministic update ``(x, m, g, eta, beta) -> (x, m)``
      of eq. (3), normalized Nesterov and SGD, on SymPy symbols and NumPy arrays alike (:data:`theory.forms.Step`).
    * ``steps_to_target(model, target, eta, beta=0.0, *, max_steps)``: the first step at which eq. (3)'s exact
      expected loss on a diagonal noisy quadratic reaches ``target`` (:func:`theory.batch_scaling.steps_to_target`).
    """

    sgd: SGDFactory = _sgd
    sgdm: SGDMFactory = _sgdm
    svag: SVAGFactory = _svag
    svag_coefficients: Callable[[float], tuple[float, float]] = svag_coefficients
    torch_sgdm: TorchFactory = _torch_sgdm
    stationary_covariance: StationaryCovariance = stationary_covariance
    loss_expansion: LossExpansion = lemma_2_4_terms
    update_step: Step = normalized_step
    nesterov_step: Step = normalized_nesterov_step
    sgd_step: Step = sgd_step
    steps_to_target: Callable[..., float] = steps_to_target


#: The package's own implementations.
REFERENCE = MethodSet()


def changed_fields(methods: MethodSet, base: MethodSet = REFERENCE) -> tuple[str, ...]:
    """Names of the fields in which ``methods`` differs from ``base`` (by identity of the implementation)."""
    return tuple(f.name for f in fields(MethodSet) if getattr(methods, f.name) is not getattr(base, f.name))


# --- mutants ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """A deliberately wrong :class:`MethodSet` and the claims it must break.

    ``must_break`` holds claim ids or sub-result ids (``"theorem_3_5"`` or ``"theorem_3_5.alpha=0"``): the mutant is
    *killed* when at least one sub-result under every listed id fails (or errors).  ``full_only`` lists the ids only
    the full run can be expected to break, with the reason, so the quick kill matrix marks them instead of failing.
    """

    description: str
    methods: MethodSet
    must_break: tuple[str, ...]
    full_only: Mapping[str, str] = field(default_factory=dict)


def _sgdm_at(rate: Callable[[float, float], float]) -> SGDMFactory:
    """Eq. (3) run at the learning rate ``rate(eta, beta)`` but observed on the grid (and noise scale) of ``eta``."""

    def sgdm(problem, eta, beta, *, sigma=None, time_scale=None):
        return SGDM(
            problem,
            rate(eta, beta),
            beta=beta,
            sigma=eta**-0.5 if sigma is None else sigma,
            time_scale=eta if time_scale is None else time_scale,
        )

    return sgdm


def lr_error_mutant(relative_error: float) -> SGDMFactory:
    r"""SGDM with a learning-rate error: eq. (3) at :math:`(1+\epsilon)\eta`, observed on the grid of :math:`\eta`."""
    return _sgdm_at(lambda eta, beta: eta * (1 + relative_error))


def noise_variance_mutant(relative_error: float) -> SGDMFactory:
    r"""SGDM with gradient-noise variance :math:`(1+\epsilon)\sigma^2` (noise scale times :math:`\sqrt{1+\epsilon}`)."""

    def sgdm(problem, eta, beta, *, sigma=None, time_scale=None):
        base = eta**-0.5 if sigma is None else sigma
        return SGDM(problem, eta, beta=beta, sigma=base * math.sqrt(1 + relative_error), time_scale=time_scale)

    return sgdm


# eq. (3) fed the PyTorch convention the wrong way round (lr = eta / (1 - beta)), and run at gamma = eta (1 - beta)
_sgdm_at_eta_over_one_minus_beta = _sgdm_at(lambda eta, beta: eta / (1 - beta))
_sgdm_at_gamma = _sgdm_at(lambda eta, beta: eta * (1 - beta))


def _sgd_lr_plus_10_percent(problem, eta, *, sigma=None, time_scale=None):
    # SGD simulated at 1.1 eta, observed on the grid (and with the noise scale) of eta
    return SGD(
        problem,
        1.1 * eta,
        sigma=eta**-0.5 if sigma is None else sigma,
        time_scale=eta if time_scale is None else time_scale,
    )


def _noise_free_sgdm(problem, eta, beta, *, sigma=None, time_scale=None):
    return SGDM(problem, eta, beta=beta, sigma=0.0, time_scale=time_scale)


def _beta_ignored(problem, eta, beta, *, sigma=None, time_scale=None):
    return SGD(problem, eta, sigma=sigma, time_scale=time_scale)


@dataclass(frozen=True, eq=False)
class LaggedSGDM(SGDM):
    r"""A wrong SGDM whose parameter step uses the momentum of the previous step (a mutant).

    .. math:: x_{k+1}=x_k-\eta m_k,\qquad m_{k+1}=\beta m_k+(1-\beta)g_k
    """

    _label = "LaggedSGDM"

    def advance(self, state, z, first_step, aux, owns_noise) -> None:
        d = self.problem.dim
        x, m = state[:, :d], state[:, d:]
        grad, noise = self.problem._gradient_fn, self.problem._noise_apply_fn
        for j in range(z.shape[0]):
            k = first_step + j
            beta = float(self.beta) if isinstance(self.beta, float) else float(self.beta[k])
            eta = float(self.eta) if isinstance(self.eta, float) else float(self.eta[k])
            g = grad(x) + self.sigma * noise(x, z[j])
            x -= eta * m
            m *= beta
            m += (1.0 - beta) * g


def _lagged_sgdm(problem, eta, beta, *, sigma=None, time_scale=None):
    return LaggedSGDM(problem, eta, beta=beta, sigma=sigma, time_scale=time_scale)


def _lagged_step(x, m, g, eta, beta):
    return x - eta * m, beta * m + (1 - beta) * g


class _LaggedTorchSGDM(torch.optim.Optimizer):
    """Torch version of :class:`LaggedSGDM` (a mutant)."""

    def __init__(self, params, lr: float, momentum: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer = self.state[p].setdefault("m", torch.zeros_like(p))
                p.add_(buffer, alpha=-group["lr"])
                buffer.mul_(group["momentum"]).add_(p.grad, alpha=1 - group["momentum"])


def _svag_noise_ell_plus_one(problem, eta, ell, beta=0.0, *, sigma=None):
    # per-step noise variance (ell + 1) sigma^2 instead of ell sigma^2
    base = eta**-0.5 if sigma is None else sigma
    return SVAG(problem, eta, ell=ell, sigma=base * math.sqrt((ell + 1) / ell), beta=beta)


def _svag_without_amplification(problem, eta, ell, beta=0.0, *, sigma=None):
    # plain SGD at eta/ell: per-step noise variance sigma^2 instead of ell sigma^2
    base = eta**-0.5 if sigma is None else sigma
    return SVAG(problem, eta, ell=ell, sigma=base / math.sqrt(ell), beta=beta)


def _halves(ell: float) -> tuple[float, float]:
    return 0.5, 0.5


def _expansion_sqrt_sigma(grad, hess, noise_cov, eta) -> LossChangeTerms:
    from scipy.linalg import sqrtm

    return lemma_2_4_terms(grad, hess, np.real(sqrtm(np.atleast_2d(np.asarray(noise_cov, dtype=float)))), eta)


def _expansion_sigma_squared(grad, hess, noise_cov, eta) -> LossChangeTerms:
    cov = np.atleast_2d(np.asarray(noise_cov, dtype=float))
    return lemma_2_4_terms(grad, hess, cov @ cov, eta)


def _sgd_step_doubled(x, m, g, eta, beta):
    # the gradient step taken twice as long (a loss written without its 1/2)
    return x - 2 * eta * g, m


def _steps_to_target_at_gamma(model, target, eta, beta=0.0, **options):
    # SGDM run with gamma = eta (1 - beta) as its effective learning rate
    return steps_to_target(model, target, eta * (1.0 - beta), beta, **options)


def _steps_to_target_noise_averaged(model, target, eta, beta=0.0, **options):
    # momentum wrongly taken to average the gradient noise away: SGDM's noise variance times (1 - beta)/(1 + beta)
    quieter = replace(model, noise=model.noise * (1.0 - beta) / (1.0 + beta))
    return steps_to_target(quieter, target, eta, beta, **options)


def _sgd_covariance_for_sgdm(H, Sigma, eta, beta):
    return stationary_covariance(H, Sigma, eta, 0.0)


def _dampened_torch_sgdm(params, eta, beta):
    return torch.optim.SGD(params, lr=eta, momentum=beta, dampening=beta)


def _torch_at_gamma_twice(params, eta, beta):
    # NormalizedSGDM fed gamma = eta (1 - beta): the PyTorch convention applied on top of eq. (3)
    return NormalizedSGDM(params, lr=eta * (1 - beta), momentum=beta)


_SGDM_WEAK = ("theorem_3_5", "same_sde.weak.sgdm")


def _build_mutants() -> dict[str, Mutant]:
    r = REFERENCE
    return {
        "sgdm_at_eta_over_1_minus_beta": Mutant(
            "eq. (3) simulated at eta/(1-beta) instead of eta",
            replace(r, sgdm=_sgdm_at_eta_over_one_minus_beta),
            ("theorem_3_5", "same_sde.weak.sgdm", "coupling.gap", "theorem_4_5", "momentum_matters.regime"),
        ),
        "sgdm_at_gamma": Mutant(
            "eq. (3) simulated at gamma = eta (1 - beta) instead of eta",
            replace(r, sgdm=_sgdm_at_gamma),
            ("theorem_3_5", "same_sde.weak.sgdm", "coupling.gap", "theorem_4_5", "momentum_matters.regime"),
        ),
        "sgdm_lr+10%": Mutant(
            "eq. (3) simulated at 1.1 eta",
            replace(r, sgdm=lr_error_mutant(0.10)),
            ("theorem_3_5", "same_sde.weak.sgdm", "theorem_4_5.toy.sgdm_alpha0", "momentum_matters.regime"),
        ),
        "sgdm_lr+5%": Mutant(
            "eq. (3) simulated at 1.05 eta",
            replace(r, sgdm=lr_error_mutant(0.05)),
            ("theorem_3_5", "momentum_matters.regime"),
        ),
        "sgdm_noise_variance_x1.1": Mutant(
            "eq. (3) with gradient-noise variance 1.1 sigma^2",
            replace(r, sgdm=noise_variance_mutant(0.10)),
            ("theorem_3_5", "coupling.gap", "theorem_4_5.toy.sgdm_alpha0", "momentum_matters.regime"),
        ),
        "sgdm_noise_free": Mutant(
            "eq. (3) without gradient noise",
            replace(r, sgdm=_noise_free_sgdm),
            ("theorem_3_5", "same_sde.weak.sgdm", "coupling.gap", "theorem_4_5", "momentum_matters.regime"),
        ),
        "sgdm_beta_ignored": Mutant(
            "SGD in place of SGDM (beta ignored)",
            replace(r, sgdm=_beta_ignored),
            ("theorem_3_5.alpha=1", "coupling.gap", "momentum_matters.regime"),
        ),
        "sgd_lr+10%": Mutant(
            "SGD simulated at 1.1 eta",
            replace(r, sgd=_sgd_lr_plus_10_percent),
            ("same_sde.weak.sgd", "theorem_4_5.toy.sgd", "momentum_matters.regime"),
        ),
        "momentum_lagged": Mutant(
            "momentum applied one step late (x_{k+1} = x_k - eta m_k), in every form",
            replace(r, sgdm=_lagged_sgdm, update_step=_lagged_step, torch_sgdm=_LaggedTorchSGDM),
            ("form_equivalence", "coupling.identity", "momentum_matters.stability.heavy_ball"),
        ),
        "torch_dampening": Mutant(
            "torch.optim.SGD(lr=eta, momentum=beta, dampening=beta) as eq. (3)",
            replace(r, torch_sgdm=_dampened_torch_sgdm),
            ("form_equivalence",),
        ),
        "torch_at_gamma": Mutant(
            "NormalizedSGDM given gamma = eta (1 - beta) as its learning rate",
            replace(r, torch_sgdm=_torch_at_gamma_twice),
            ("form_equivalence",),
        ),
        "svag_noise_ell+1": Mutant(
            "SVAG simulator with per-step noise variance (ell + 1) sigma^2 instead of ell sigma^2",
            replace(r, svag=_svag_noise_ell_plus_one),
            ("svag.one_step",),
        ),
        "svag_no_amplification": Mutant(
            "SVAG simulator without variance amplification (plain SGD at eta/ell)",
            replace(r, svag=_svag_without_amplification),
            ("svag.one_step", "svag.weak_order"),
        ),
        "svag_coefficients_half": Mutant(
            "SVAG coefficients (1/2, 1/2)",
            replace(r, svag_coefficients=_halves),
            ("svag.moments", "lemma_2_4.svag"),
        ),
        "lemma_2_4_sqrt_sigma": Mutant(
            "Lemma 2.4's noise term with Sigma^(1/2) in place of Sigma",
            replace(r, loss_expansion=_expansion_sqrt_sigma),
            ("lemma_2_4.symbolic", "lemma_2_4.residual_order"),
        ),
        "lemma_2_4_sigma_squared": Mutant(
            "Lemma 2.4's noise term with Sigma^2 in place of Sigma",
            replace(r, loss_expansion=_expansion_sigma_squared),
            ("lemma_2_4.symbolic", "lemma_2_4.residual_order"),
        ),
        "nesterov_as_heavy_ball": Mutant(
            "the heavy-ball rule of eq. (3) given as normalized Nesterov",
            replace(r, nesterov_step=normalized_step),
            ("form_equivalence", "momentum_matters.stability.nesterov"),
        ),
        "sgd_step_doubled": Mutant(
            "SGD's deterministic step taken at 2 eta",
            replace(r, sgd_step=_sgd_step_doubled),
            ("momentum_matters.stability.sgd",),
        ),
        "steps_to_target_at_gamma": Mutant(
            "NQM steps to target of SGDM run at gamma = eta (1 - beta)",
            replace(r, steps_to_target=_steps_to_target_at_gamma),
            ("batch_scaling.same_eta", "batch_scaling.large_batch"),
        ),
        "steps_to_target_noise_averaged": Mutant(
            "NQM steps to target, SGDM's noise variance times (1 - beta)/(1 + beta): momentum 'averages noise away'",
            replace(r, steps_to_target=_steps_to_target_noise_averaged),
            ("batch_scaling.small_batch",),
        ),
        "stationary_sgd_for_sgdm": Mutant(
            "SGD's stationary covariance returned for SGDM",
            replace(r, stationary_covariance=_sgd_covariance_for_sgdm),
            ("same_sde.stationary",),
        ),
    }


#: Deliberately wrong method sets, by name.
MUTANTS: dict[str, Mutant] = _build_mutants()
