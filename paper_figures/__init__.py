"""Figures and tables of the paper and of its theory: compute (cached records) -> plot.  Nothing imports this.

Build them with :func:`build_figures` (``mvm figures``); :func:`available_figures` lists the IDs.
"""

from paper_figures.alpha_regimes import (
    ALPHA_REGIMES_FIGURE,
    AlphaRegimes,
    alpha_regimes,
    plot_alpha_regimes,
)
from paper_figures.build import (
    MANIFEST_NAME,
    FigureOutcome,
    build_figures,
    figure_cache_key,
    write_gallery,
)
from paper_figures.figure_parts import (
    interval_arrays,
    interval_errorbar,
    restore_dataclass,
)
from paper_figures.lemma_2_4_split import (
    LEMMA_2_4_FIGURE,
    Lemma24Split,
    lemma_2_4_split,
    plot_lemma_2_4_split,
)
from paper_figures.registry import (
    FIGURE_KINDS,
    Computed,
    FigureContext,
    FigureSpec,
    available_figures,
    get_figure,
    plain,
    register,
)
from paper_figures.runs import (
    discard_corrupt_entries,
    record_digest,
    train_figure_runs,
)
from paper_figures.slow_sde import (
    SLOW_SDE_FIGURE,
    SlowSDEComparison,
    plot_slow_sde,
    slow_sde_comparison,
)
from paper_figures.stability_regions import (
    METHOD_COLORS,
    STABILITY_REGIONS_FIGURE,
    StabilityRegions,
    measured_stability_edge,
    plot_stability_regions,
    stability_regions,
    transition_spectral_radius,
)
from paper_figures.stationary_ratio import (
    BETA_COLORS,
    BURN_IN_RELAXATION_TIMES,
    STATIONARY_RATIO_FIGURE,
    StationaryRatioComparison,
    check_burn_in,
    plot_stationary_ratio,
    ratio_of_means_interval,
    ratio_series_coefficients,
    stationary_ratio_comparison,
    stationary_second_moments,
)
from paper_figures.stats import (
    Interval,
    mean_interval,
    paired_difference_interval,
)
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
from paper_figures.svag_convergence import (
    SVAG_CONVERGENCE_FIGURE,
    SVAGConvergence,
    plot_svag_convergence,
    svag_convergence,
    svag_stationary_variance,
)
from paper_figures.weak_error_slopes import (
    WEAK_ERROR_SLOPES_FIGURE,
    WeakErrorSlopes,
    plot_weak_error_slopes,
    weak_error_slopes,
)

__all__ = [
    "ALPHA_REGIMES_FIGURE",
    "BETA_COLORS",
    "BURN_IN_RELAXATION_TIMES",
    "COLUMN_WIDTH",
    "FIGURE_KINDS",
    "FULL_WIDTH",
    "LEMMA_2_4_FIGURE",
    "MANIFEST_NAME",
    "METHOD_COLORS",
    "OPTIMIZER_COLORS",
    "PALETTE",
    "SLOW_SDE_FIGURE",
    "STABILITY_REGIONS_FIGURE",
    "STATIONARY_RATIO_FIGURE",
    "SVAG_CONVERGENCE_FIGURE",
    "WEAK_ERROR_SLOPES_FIGURE",
    "AlphaRegimes",
    "Computed",
    "FigureContext",
    "FigureOutcome",
    "FigureSpec",
    "Interval",
    "Lemma24Split",
    "SVAGConvergence",
    "SlowSDEComparison",
    "StabilityRegions",
    "StationaryRatioComparison",
    "WeakErrorSlopes",
    "alpha_regimes",
    "available_figures",
    "band",
    "build_figures",
    "check_burn_in",
    "discard_corrupt_entries",
    "figure_cache_key",
    "figure_style",
    "get_figure",
    "interval_arrays",
    "interval_errorbar",
    "lemma_2_4_split",
    "mean_interval",
    "measured_stability_edge",
    "new_figure",
    "paired_difference_interval",
    "plain",
    "plot_alpha_regimes",
    "plot_lemma_2_4_split",
    "plot_slow_sde",
    "plot_stability_regions",
    "plot_stationary_ratio",
    "plot_svag_convergence",
    "plot_weak_error_slopes",
    "ratio_of_means_interval",
    "ratio_series_coefficients",
    "record_digest",
    "register",
    "restore_dataclass",
    "save_figure",
    "slow_sde_comparison",
    "stability_regions",
    "stationary_ratio_comparison",
    "stationary_second_moments",
    "svag_convergence",
    "svag_stationary_variance",
    "train_figure_runs",
    "transition_spectral_radius",
    "weak_error_slopes",
    "write_gallery",
]
