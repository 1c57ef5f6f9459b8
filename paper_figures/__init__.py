"""Figures of the paper and of its theory: compute (cached arrays) -> plot.  Nothing imports this package."""

from paper_figures.slow_sde import SlowSDEComparison, plot_slow_sde, slow_sde_comparison

__all__ = ["SlowSDEComparison", "plot_slow_sde", "slow_sde_comparison"]
