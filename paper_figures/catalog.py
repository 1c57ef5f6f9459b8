"""Imports every figure module (each registers its spec), in the order ``mvm figures`` builds them."""

# The order of these lines is the build order (theory figures first: they are fast).
# isort: off
from paper_figures import slow_sde  # noqa: F401
from paper_figures import batch_sweep  # noqa: F401
from paper_figures import svag_sweep  # noqa: F401
# isort: on
