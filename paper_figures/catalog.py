"""Imports every figure module (each registers its spec), in the order ``mvm figures`` builds them."""

from paper_figures import (
    alpha_regimes,  # noqa: F401
    lemma_2_4_split,  # noqa: F401
    slow_sde,  # noqa: F401
    stability_regions,  # noqa: F401
    stationary_ratio,  # noqa: F401
    svag_convergence,  # noqa: F401
    weak_error_slopes,  # noqa: F401
)
