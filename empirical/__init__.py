"""PyTorch side of marginal-momentum: optimizers in the paper's parameterisation and SVAG.

May import :mod:`theory`; nothing in :mod:`theory` imports this package.
"""

from empirical.optim import NormalizedSGDM, check_weight_decay
from empirical.svag import TrainSchedule, svag_combine, svag_loss, svag_schedule

__all__ = [
    "NormalizedSGDM",
    "TrainSchedule",
    "check_weight_decay",
    "svag_combine",
    "svag_loss",
    "svag_schedule",
]
