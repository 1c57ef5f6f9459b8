"""Imports every figure module (each registers its spec), in the order ``mvm figures`` builds them."""

from paper_figures import slow_sde  # noqa: F401

# isort: split
from paper_figures import lm_finetune  # noqa: F401  (trains: after the theory figures)
