"""Pure mathematics of SGD with momentum at small learning rate: SymPy derivations, NumPy/SciPy numerics.

This package imports no torch.
"""

from theory.forms import Proof, all_proofs, dampening_first_step_gap, format_proofs
from theory.integrators import EulerMaruyama, ExactLinear, LinearTransition, WeakOrder2, linear_transition
from theory.kolmogorov import KolmogorovSolution, kolmogorov_expectation
from theory.params import (
    MomentumParams,
    averaged_lr_schedule,
    check_learning_rate,
    check_momentum,
    effective_lr,
    pytorch_lr,
)
from theory.problems import (
    Problem,
    double_well_2d,
    linear_regression,
    log_cosh_well,
    noisy_quadratic,
    quartic_well,
)
from theory.sde import (
    SDE,
    CoupledLimit,
    DerivedSDE,
    IncrementModel,
    derive_coupled_limit,
    derive_limit_sde,
    derive_sme,
    linear_sde,
    sgd_increment,
    sgd_sde,
    sgdm_increment,
    sgdm_sde,
    svag_increment,
    svag_sde,
)
from theory.simulate import SGD, SGDM, SVAG, DivergenceError, Method, SimulationResult, run_lockstep, simulate
from theory.svag import check_svag_factor, svag_coefficients
from theory.weak_error import WeakErrorResult, WeakOrderFit, fit_weak_order, weak_error

__all__ = [
    "SDE",
    "SGD",
    "SGDM",
    "SVAG",
    "CoupledLimit",
    "DerivedSDE",
    "DivergenceError",
    "EulerMaruyama",
    "ExactLinear",
    "IncrementModel",
    "KolmogorovSolution",
    "LinearTransition",
    "Method",
    "MomentumParams",
    "Problem",
    "Proof",
    "SimulationResult",
    "WeakErrorResult",
    "WeakOrder2",
    "WeakOrderFit",
    "all_proofs",
    "averaged_lr_schedule",
    "check_learning_rate",
    "check_momentum",
    "check_svag_factor",
    "dampening_first_step_gap",
    "derive_coupled_limit",
    "derive_limit_sde",
    "derive_sme",
    "double_well_2d",
    "effective_lr",
    "fit_weak_order",
    "format_proofs",
    "kolmogorov_expectation",
    "linear_regression",
    "linear_sde",
    "linear_transition",
    "log_cosh_well",
    "noisy_quadratic",
    "pytorch_lr",
    "quartic_well",
    "run_lockstep",
    "sgd_increment",
    "sgd_sde",
    "sgdm_increment",
    "sgdm_sde",
    "simulate",
    "svag_coefficients",
    "svag_increment",
    "svag_sde",
    "weak_error",
]
