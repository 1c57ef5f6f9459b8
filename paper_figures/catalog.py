"""Imports every figure module (each registers its spec), in the order ``mvm figures`` builds them.

Theory figures come first (seconds), then the empirical figures and tables (minutes of training), so a
quick build shows the cheap results early.  The order is explicit here, not alphabetical.
"""

from importlib import import_module

FIGURE_MODULES = (
    "paper_figures.stationary_ratio",
    "paper_figures.stability_regions",
    "paper_figures.weak_error_slopes",
    "paper_figures.alpha_regimes",
    "paper_figures.svag_convergence",
    "paper_figures.lemma_2_4_split",
    "paper_figures.slow_sde",
    "paper_figures.nqm_batch_scaling",
    "paper_figures.verifier_power",
    "paper_figures.batch_sweep",
    "paper_figures.svag_sweep",
    "paper_figures.lm_finetune",
)

for _name in FIGURE_MODULES:
    import_module(_name)
