"""fig_verifier_power: the power study's bookkeeping, its store, and a tiny build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paper_figures import build_figures
from proofs_check.methods import REFERENCE
from proofs_check.power import (
    PowerStore,
    PowerTask,
    detection_rates,
    mutant_for,
    run_power_study,
    smallest_detected,
    wilson_interval,
)


def test_mutant_for_changes_only_sgdm_and_size_zero_is_the_reference() -> None:
    assert mutant_for("learning_rate", 0.0) is REFERENCE
    wrong = mutant_for("noise_variance", 0.1)
    assert wrong.sgdm is not REFERENCE.sgdm and wrong.sgd is REFERENCE.sgd
    with pytest.raises(ValueError, match="kind must be one of"):
        mutant_for("momentum", 0.1)
    with pytest.raises(ValueError, match="size must be"):
        mutant_for("learning_rate", -0.1)


@pytest.mark.parametrize(("failures", "trials"), [(0, 20), (3, 20), (10, 20), (20, 20), (1, 7)])
def test_wilson_bounds_solve_the_score_equation(failures: int, trials: int) -> None:
    # the Wilson interval is {p : (phat - p)^2 <= z^2 p (1 - p) / n}: both ends solve it with equality
    z, phat = 1.959963984540054, failures / trials
    for bound in wilson_interval(failures, trials):
        assert (phat - bound) ** 2 == pytest.approx(z**2 * bound * (1 - bound) / trials, abs=1e-12)


def test_detection_rates_and_smallest_detected() -> None:
    outcomes = {}
    for seed in range(4):
        outcomes[PowerTask("learning_rate", 0.0, seed, "c", True)] = {"c.a": True, "c.b": True}
        outcomes[PowerTask("learning_rate", 0.1, seed, "c", True)] = {"c.a": False, "c.b": True}
        outcomes[PowerTask("learning_rate", 0.01, seed, "c", True)] = {"c.a": seed != 0, "c.b": True}
    rates = detection_rates(outcomes)["learning_rate"]
    assert rates["c"][0.1]["rate"] == 1.0 and rates["c"][0.01]["rate"] == 0.25 and rates["c"][0.0]["rate"] == 0.0
    assert rates["c.b"][0.1]["rate"] == 0.0
    assert smallest_detected(rates["c"]) == 0.1 and smallest_detected(rates["c.b"]) is None


def test_store_round_trips_and_ignores_edited_files(tmp_path: Path) -> None:
    store = PowerStore(tmp_path)
    task = PowerTask("noise_variance", 0.2, 3, "coupling", True)
    store.save(task, {"coupling.gap.alpha=0": False})
    assert store.load(task) == {"coupling.gap.alpha=0": False}
    path = tmp_path / f"{task.key}.json"
    stored = json.loads(path.read_text())
    stored["passed"]["coupling.gap.alpha=0"] = True  # an edited verdict no longer matches its digest
    path.write_text(json.dumps(stored))
    assert store.load(task) is None
    path.write_text("{not json")
    assert store.load(task) is None


def test_study_resumes_from_finished_tasks(tmp_path: Path) -> None:
    store = PowerStore(tmp_path)
    first = run_power_study({"noise_variance": ["coupling"]}, [0.2], [0], store, jobs=1)
    assert len(first) == 2  # the reference and the mutant, one seed
    mutant = PowerTask("noise_variance", 0.2, 0, "coupling", True)
    assert not all(first[mutant].values())  # 20% more noise variance fails the exact gap level
    calls = []
    again = run_power_study(
        {"noise_variance": ["coupling"]}, [0.2], [0], store, jobs=1, on_task=lambda d, t: calls.append((d, t))
    )
    assert again == first and calls == [(2, 2)]  # nothing recomputed


def test_fig_verifier_power_builds_at_tiny_scale(tmp_path: Path) -> None:
    (outcome,) = build_figures(
        ["fig_verifier_power"], scale="tiny", out=tmp_path / "o", cache_dir=tmp_path / "c", progress=False
    )
    assert {p.suffix for p in outcome.files} == {".png", ".pdf"}
    assert all(p.stat().st_size > 1000 for p in outcome.files)
    assert "coupling (noise_variance)" in outcome.summary
