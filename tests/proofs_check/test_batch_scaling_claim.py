"""Claim 9 (``proofs_check.batch_scaling``): the verdict depends on ``MethodSet.steps_to_target``.

The reference passes with the stated numbers; a wrong momentum parameterisation (the mutant
``steps_to_target_at_gamma``) fails the equal-eta and large-batch sub-results.
"""

from __future__ import annotations

import pytest

from proofs_check.batch_scaling import check_batch_scaling
from proofs_check.methods import MUTANTS


@pytest.fixture(scope="module")
def reference():
    return {r.claim_id: r for r in check_batch_scaling(quick=True)}


def test_reference_passes_with_the_stated_numbers(reference) -> None:
    assert set(reference) == {"batch_scaling.small_batch", "batch_scaling.same_eta", "batch_scaling.large_batch"}
    assert all(r.passed for r in reference.values()), [r for r in reference.values() if not r.passed]
    large = reference["batch_scaling.large_batch"]
    assert large.predicted > 10 and large.measured > 10  # SGD is capped at eta < 2; heavy ball is not
    details = large.details
    assert details["sgdm_critical_batch"] > 10 * details["sgd_critical_batch"]
    assert 100 < details["sgd_critical_batch"] < 1000
    for result in reference.values():
        assert result.ci_low <= result.measured <= result.ci_high
        assert result.fields == ("steps_to_target",)


def test_momentum_that_averages_noise_away_fails_small_batch() -> None:
    results = {r.claim_id: r for r in check_batch_scaling(True, MUTANTS["steps_to_target_noise_averaged"].methods)}
    assert not results["batch_scaling.small_batch"].passed
    assert results["batch_scaling.small_batch"].measured > 1.25  # SGDM needs far fewer steps than SGD


def test_wrong_momentum_parameterisation_fails() -> None:
    results = {r.claim_id: r for r in check_batch_scaling(True, MUTANTS["steps_to_target_at_gamma"].methods)}
    assert not results["batch_scaling.same_eta"].passed
    assert results["batch_scaling.same_eta"].measured > 3  # 1/(1-beta) = 10 times smaller effective rate
    assert not results["batch_scaling.large_batch"].passed
    assert results["batch_scaling.large_batch"].measured < 0.5 * results["batch_scaling.large_batch"].predicted
