"""fig_batch_scaling (issue #17): renders at scale "tiny", and every plotted number is the exact theory.

One tiny build (module fixture) provides the plotted data, read back from the figure store; each tuned point is
recomputed with theory.batch_scaling.steps_to_target on the same model, the critical batch sizes from the stored
steps, the same-eta points at eta = eta*_SGD(B0) B / B0, and the binning check against the unbinned model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from empirical.records import ResultStore
from paper_figures.build import build_figures, figure_cache_key
from paper_figures.catalog import FIGURE_MODULES
from paper_figures.nqm_batch_scaling import TARGET_FRACTION, batch_scaling_sweep
from paper_figures.registry import FigureContext, available_figures, get_figure
from theory.batch_scaling import critical_batch_size, expected_loss_at, nqm, steps_to_target

FIGURE = "fig_batch_scaling"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("batch_scaling")
    cache, out = root / "cache", root / "out"
    (outcome,) = build_figures([FIGURE], scale="tiny", cache_dir=cache, out=out, progress=False)
    context = FigureContext(scale="tiny", cache_dir=cache)
    spec = get_figure(FIGURE)
    settings = spec.settings(context)
    record = ResultStore(context.figures_dir).load(figure_cache_key(spec, settings))
    return {"outcome": outcome, "data": record.metrics["data"], "settings": settings, "out": out}


def _steps(value: float | None) -> float:
    return math.inf if value is None else float(value)


def test_registered_after_the_other_theory_figures_and_renders(tiny: dict[str, Any]) -> None:
    assert FIGURE_MODULES.index("paper_figures.nqm_batch_scaling") == FIGURE_MODULES.index("paper_figures.slow_sde") + 1
    assert FIGURE in available_figures() and get_figure(FIGURE).kind == "theory"
    outcome = tiny["outcome"]
    assert sorted(path.suffix for path in outcome.files) == [".pdf", ".png"]
    for path in outcome.files:
        assert Path(path).stat().st_size > 1000
    assert outcome.summary["target"].startswith(f"{TARGET_FRACTION:g} x initial loss")
    assert outcome.compute_wall_time_s < 30


def test_quick_and_full_settings_sweep_4_to_2_to_the_20_by_factors_of_4() -> None:
    for scale in ("quick", "full"):
        settings = get_figure(FIGURE).settings(FigureContext(scale=scale))
        assert settings["batch_sizes"] == [4**j for j in range(1, 11)]
        assert settings["dimension"] == 10_000


def test_tuned_points_are_exact_steps_to_target(tiny: dict[str, Any]) -> None:
    scaling, settings = tiny["data"]["scaling"], tiny["settings"]
    target = scaling["target"]
    assert target == pytest.approx(TARGET_FRACTION * nqm(4, dimension=1000, bins=30).initial_loss)
    for i, power in enumerate(scaling["powers"]):
        for j, batch in enumerate(scaling["batch_sizes"]):
            model = nqm(batch, dimension=settings["dimension"], bins=settings["bins"], preconditioner_power=power)
            eta = scaling["sgd_eta"][i][j]
            assert scaling["sgd_steps"][i][j] == steps_to_target(model, target, eta, 0.0)
            eta, beta = scaling["sgdm_eta"][i][j], scaling["sgdm_beta"][i][j]
            assert beta in settings["betas"]
            assert scaling["sgdm_steps"][i][j] == steps_to_target(model, target, eta, beta)
            # the reported step reaches the target and the one before does not
            k = int(scaling["sgdm_steps"][i][j])
            before, at = expected_loss_at(model, eta, beta, [max(k - 1, 0), k])
            assert at <= target and (k == 0 or before > target)


def test_critical_batch_sizes_and_the_momentum_gap(tiny: dict[str, Any]) -> None:
    scaling = tiny["data"]["scaling"]
    sizes = scaling["batch_sizes"]
    for i in range(len(scaling["powers"])):
        sgd = [_steps(v) for v in scaling["sgd_steps"][i]]
        sgdm = [_steps(v) for v in scaling["sgdm_steps"][i]]
        assert scaling["sgd_critical"][i] == pytest.approx(critical_batch_size(sizes, sgd))
        assert scaling["sgdm_critical"][i] == pytest.approx(critical_batch_size(sizes, sgdm))
        assert scaling["sgdm_critical"][i] > scaling["sgd_critical"][i]
        assert sgdm[0] == pytest.approx(sgd[0], rel=0.05)  # small batch: momentum does not help
        assert sgd[-1] / sgdm[-1] > 2  # large batch: it does
        # nearly perfect scaling from the smallest to the next batch size (x16 in the tiny sweep, below B_crit)
        assert sgd[0] / sgd[1] == pytest.approx(sizes[1] / sizes[0], rel=0.15)


def test_same_eta_points_follow_the_linear_scaling_rule_and_the_stability_bounds(tiny: dict[str, Any]) -> None:
    scaling, settings = tiny["data"]["scaling"], tiny["settings"]
    sizes, target = scaling["batch_sizes"], scaling["target"]
    base = scaling["sgd_eta"][0][0]
    assert scaling["same_eta_beta"] == 0.9 and scaling["sgdm_eta_bound"] == pytest.approx(38.0)
    for j, batch in enumerate(sizes):
        eta = scaling["same_eta"][j]
        assert eta == pytest.approx(base * batch / sizes[0])
        model = nqm(batch, dimension=settings["dimension"], bins=settings["bins"])
        for key, beta, bound in (("same_eta_sgd", 0.0, 2.0), ("same_eta_sgdm", 0.9, 38.0)):
            if eta >= bound:
                assert scaling[key][j] is None
            else:
                assert _steps(scaling[key][j]) == steps_to_target(model, target, eta, beta)
    assert scaling["same_eta_sgd"][0] == scaling["sgd_steps"][0][0]
    assert scaling["same_eta_sgdm"][0] == pytest.approx(scaling["same_eta_sgd"][0], rel=0.02)  # coincide


def test_binning_check_is_against_the_unbinned_model(tiny: dict[str, Any]) -> None:
    scaling, settings = tiny["data"]["scaling"], tiny["settings"]
    checks = scaling["binning_checks"]
    assert {(c["power"], c["batch_size"], c["method"]) for c in checks} >= {(0.0, 4, "SGD"), (0.5, 1048576, "SGDM")}
    for check in checks[:2]:
        full = nqm(check["batch_size"], dimension=settings["dimension"], preconditioner_power=check["power"])
        assert check["steps_unbinned"] == steps_to_target(full, scaling["target"], check["eta"], check["beta"])
    summary = tiny["outcome"].summary
    assert summary["binning: max relative steps error"] == pytest.approx(
        max(abs(c["steps_binned"] / c["steps_unbinned"] - 1) for c in checks), rel=1e-3
    )


def test_sweep_rejects_bad_batch_sizes_and_targets() -> None:
    with pytest.raises(ValueError, match="increasing integers >= 1"):
        batch_scaling_sweep([16, 4])
    with pytest.raises(ValueError, match="increasing integers >= 1"):
        batch_scaling_sweep([0, 4])
    with pytest.raises(ValueError, match="target_fraction"):
        batch_scaling_sweep([4, 16], target_fraction=1.5)


def test_unstable_same_eta_points_are_stored_as_none_and_plotted_as_gaps(tiny: dict[str, Any]) -> None:
    scaling = tiny["data"]["scaling"]
    sgd = np.array([_steps(v) for v in scaling["same_eta_sgd"]])
    eta = np.array(scaling["same_eta"])
    assert np.all(np.isinf(sgd[eta >= 2.0])) and np.any(eta >= 2.0)  # the sweep reaches SGD's bound
