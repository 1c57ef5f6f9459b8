"""Imports every figure module (each registers its spec), in the order ``mvm figures`` builds them."""

from paper_figures import slow_sde  # noqa: F401
