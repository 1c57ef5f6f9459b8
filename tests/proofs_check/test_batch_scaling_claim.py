"""The draft batch-scaling claim (``proofs_check_batch_scaling_draft.py`` at the repository root, issue #17).

Imported by path: it lives outside ``proofs_check`` until that package's owner moves it in.  The verdict must
depend on the steps-to-target function passed in: the reference passes, a wrong momentum parameterisation fails.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from theory.batch_scaling import DEFAULT_MAX_STEPS, DiagonalQuadratic, steps_to_target

DRAFT = Path(__file__).resolve().parents[2] / "proofs_check_batch_scaling_draft.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proofs_check_batch_scaling_draft", DRAFT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def draft() -> ModuleType:
    return _load()


def _at_pytorch_rate(
    model: DiagonalQuadratic, target: float, eta: float, beta: float = 0.0, *, max_steps: int = DEFAULT_MAX_STEPS
) -> float:
    """Wrong: SGDM run with gamma = eta (1 - beta) as its effective learning rate."""
    return steps_to_target(model, target, eta * (1.0 - beta), beta, max_steps=max_steps)


def test_reference_passes_with_the_stated_numbers(draft: ModuleType) -> None:
    results = {r.claim_id: r for r in draft.check_batch_scaling(quick=True)}
    assert set(results) == {"batch_scaling.small_batch", "batch_scaling.same_eta", "batch_scaling.large_batch"}
    assert all(r.passed for r in results.values()), [r for r in results.values() if not r.passed]
    large = results["batch_scaling.large_batch"]
    assert large.predicted > 10 and large.measured > 10  # SGD is capped at eta < 2; heavy ball is not
    details = large.details
    assert details["sgdm_critical_batch"] > 10 * details["sgd_critical_batch"]
    assert 100 < details["sgd_critical_batch"] < 1000
    for result in results.values():
        assert result.ci_low <= result.measured <= result.ci_high
        assert result.to_dict()["criterion"]


def test_wrong_momentum_parameterisation_fails(draft: ModuleType) -> None:
    results = {r.claim_id: r for r in draft.check_batch_scaling(quick=True, steps_to_target=_at_pytorch_rate)}
    assert not results["batch_scaling.same_eta"].passed
    assert results["batch_scaling.same_eta"].measured > 3  # 1/(1-beta) = 10 times smaller effective rate
    assert not results["batch_scaling.large_batch"].passed
    assert results["batch_scaling.large_batch"].measured < 0.5 * results["batch_scaling.large_batch"].predicted
