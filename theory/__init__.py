"""Pure mathematics of SGD with momentum at small learning rate: SymPy derivations, NumPy/SciPy numerics.

This package imports no torch.
"""

from theory.forms import Proof, all_proofs, dampening_first_step_gap, format_proofs
from theory.params import (
    MomentumParams,
    averaged_lr_schedule,
    check_learning_rate,
    check_momentum,
    effective_lr,
    pytorch_lr,
)
from theory.svag import check_svag_factor, svag_coefficients

__all__ = [
    "MomentumParams",
    "Proof",
    "all_proofs",
    "averaged_lr_schedule",
    "check_learning_rate",
    "check_momentum",
    "check_svag_factor",
    "dampening_first_step_gap",
    "effective_lr",
    "format_proofs",
    "pytorch_lr",
    "svag_coefficients",
]
