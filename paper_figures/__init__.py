"""Figures and tables of the paper and of its theory: compute (cached records) -> plot.  Nothing imports this."""

from paper_figures.build import MANIFEST_NAME, FigureOutcome, build_figures, figure_cache_key, write_gallery
from paper_figures.registry import (
    FIGURE_KINDS,
    SCALES,
    Computed,
    FigureContext,
    FigureSpec,
    available_figures,
    get_figure,
    plain,
    register,
)
from paper_figures.runs import discard_corrupt_entries, record_digest, train_figure_runs
from paper_figures.slow_sde import SLOW_SDE_FIGURE, SlowSDEComparison, plot_slow_sde, slow_sde_comparison
from paper_figures.stats import Interval, mean_interval, paired_difference_interval
from paper_figures.style import (
    COLUMN_WIDTH,
    FULL_WIDTH,
    OPTIMIZER_COLORS,
    PALETTE,
    band,
    figure_style,
    new_figure,
    save_figure,
)

__all__ = [
    "COLUMN_WIDTH",
    "FIGURE_KINDS",
    "FULL_WIDTH",
    "MANIFEST_NAME",
    "OPTIMIZER_COLORS",
    "PALETTE",
    "SCALES",
    "SLOW_SDE_FIGURE",
    "Computed",
    "FigureContext",
    "FigureOutcome",
    "FigureSpec",
    "Interval",
    "SlowSDEComparison",
    "available_figures",
    "band",
    "build_figures",
    "discard_corrupt_entries",
    "figure_cache_key",
    "figure_style",
    "get_figure",
    "mean_interval",
    "new_figure",
    "paired_difference_interval",
    "plain",
    "plot_slow_sde",
    "record_digest",
    "register",
    "save_figure",
    "slow_sde_comparison",
    "train_figure_runs",
    "write_gallery",
]
