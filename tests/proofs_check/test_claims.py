"""Claim checks pass for the package's methods and fail for deliberately wrong ones."""

from __future__ import annotations

import json
import math

import pytest

from empirical.optim import NormalizedSGDM
from mvm.cli import main
from proofs_check import ClaimResult, available_claims, format_markdown, run_all
from proofs_check.coupling import check_coupling
from proofs_check.form_equivalence import check_form_equivalence
from proofs_check.lemma_2_4 import check_lemma_2_4
from proofs_check.momentum_matters import check_momentum_matters
from proofs_check.same_sde import check_same_sde
from proofs_check.svag import check_svag
from proofs_check.theorem_3_5 import check_theorem_3_5
from proofs_check.theorem_4_5 import check_theorem_4_5
from theory.loss_change import LossChangeTerms, lemma_2_4_terms
from theory.quadratic import stationary_covariance
from theory.simulate import SGD, SGDM


def _by_id(results):
    return {r.claim_id: r for r in results}


def test_form_equivalence_passes() -> None:
    results = _by_id(check_form_equivalence(quick=True))
    assert results["form_equivalence"].passed
    assert results["form_equivalence"].details["relative_move"] > 0.01  # the trajectory went somewhere
    assert results["form_equivalence.dampening"].passed


def test_form_equivalence_fails_for_sgdm_at_gamma_instead_of_eta() -> None:
    def sgdm_at_gamma(params, eta, beta):
        return NormalizedSGDM(params, lr=eta * (1 - beta), momentum=beta)

    results = check_form_equivalence(quick=True, method=sgdm_at_gamma)
    assert not any(r.passed for r in results)


def test_lemma_2_4_passes() -> None:
    results = check_lemma_2_4(quick=True)
    assert all(r.passed for r in results), [(r.claim_id, r.measured) for r in results]


def test_lemma_2_4_detects_missing_noise_term() -> None:
    def without_noise(grad, hess, noise_cov, eta):
        terms = lemma_2_4_terms(grad, hess, noise_cov, eta)
        return LossChangeTerms(terms.descent, terms.curvature, 0.0)

    results = _by_id(check_lemma_2_4(quick=True, expansion=without_noise))
    assert not results["lemma_2_4.residual_order"].passed
    assert results["lemma_2_4.residual_order"].measured == pytest.approx(2.0, abs=0.2)  # residual is O(eta^2)


def test_lemma_2_4_detects_wrong_svag_coefficients() -> None:
    def wrong(ell):  # r1 + r2 = 1 but r1^2 + r2^2 = (1 + ell) / 2, not ell
        return (1 + math.sqrt(ell)) / 2, (1 - math.sqrt(ell)) / 2

    assert not _by_id(check_lemma_2_4(quick=True, coefficients=wrong))["lemma_2_4.svag"].passed


def test_run_all_rejects_unknown_ids() -> None:
    with pytest.raises(ValueError, match="registered claims"):
        run_all(only=["no_such_claim"])


def test_registry_lists_claims_in_order() -> None:
    assert list(available_claims())[:3] == ["form_equivalence", "coupling", "theorem_3_5"]


def test_mvm_verify_writes_reports_and_exit_code(tmp_path, capsys) -> None:
    json_path, md_path = tmp_path / "r.json", tmp_path / "r.md"
    code = main(["verify", "--quick", "--only", "lemma_2_4", "--json", str(json_path), "--markdown", str(md_path),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "lemma_2_4.svag" in out and "3 passed, 0 failed" in out
    records = json.loads(json_path.read_text())
    assert [r["claim_id"] for r in records] == ["lemma_2_4.symbolic", "lemma_2_4.residual_order", "lemma_2_4.svag"]
    assert {"claim_id", "reference", "statement", "predicted", "measured", "ci_low", "ci_high", "passed",
            "details"} <= set(records[0])  # fmt: skip
    assert md_path.read_text().startswith("| claim")


def test_mvm_verify_unknown_claim_exit_code_2(capsys) -> None:
    assert main(["verify", "--only", "nope", "--no-progress"]) == 2
    assert "registered claims" in capsys.readouterr().err


def test_markdown_summary_line() -> None:
    results = check_lemma_2_4(quick=True)
    assert format_markdown(results).rstrip().endswith("3 passed, 0 failed")


def _sgdm_at_gamma(problem, eta, beta):
    # A deliberately wrong method: SGDM run at the PyTorch learning rate gamma = eta (1 - beta) instead of
    # eta, observed on the same time grid as SGD at eta.
    return SGDM(problem, eta * (1 - beta), beta=beta, time_scale=eta)


def test_theorem_3_5_passes_for_eq3() -> None:
    results = check_theorem_3_5(quick=True)
    assert all(r.passed for r in results), [(r.claim_id, r.measured, r.ci_low, r.ci_high) for r in results]


def test_theorem_3_5_fails_for_sgdm_at_gamma() -> None:
    results = _by_id(check_theorem_3_5(quick=True, method=_sgdm_at_gamma))
    for alpha in ("0", "0.25", "0.5"):
        assert not results[f"theorem_3_5.alpha={alpha}"].passed


def test_coupling_passes() -> None:
    results = check_coupling(quick=True)
    assert all(r.passed for r in results), [(r.claim_id, r.measured) for r in results]


def test_coupling_identity_fails_for_a_wrong_update_rule() -> None:
    def buffer_after_parameter(x, m, g, eta, beta):
        return x - eta * m, beta * m + (1 - beta) * g

    assert not _by_id(check_coupling(quick=True, step=buffer_after_parameter))["coupling.identity"].passed


def test_svag_passes() -> None:
    results = check_svag(quick=True)
    assert all(r.passed for r in results), [(r.claim_id, r.measured) for r in results]


def test_svag_fails_for_wrong_coefficients_and_for_plain_sgd() -> None:
    def wrong(ell):
        return (1 + math.sqrt(ell)) / 2, (1 - math.sqrt(ell)) / 2

    def plain_sgd(problem, eta, ell):  # no variance amplification, no learning-rate reduction
        return SGD(problem, eta, time_scale=eta / ell)

    results = _by_id(check_svag(quick=True, coefficients=wrong, svag_method=plain_sgd))
    assert not any(results[f"svag.moments.ell={ell}"].passed for ell in (2, 4, 8))
    assert not results["svag.weak_order"].passed


def test_same_sde_passes_and_fails_for_sgdm_at_gamma() -> None:
    assert all(r.passed for r in check_same_sde(quick=True))

    def covariance_at_gamma(hessian, noise, eta, beta):
        return stationary_covariance(hessian, noise, eta * (1 - beta) if beta else eta, beta)

    results = _by_id(check_same_sde(quick=True, method=_sgdm_at_gamma, covariance=covariance_at_gamma))
    assert not results["same_sde.weak.sgdm"].passed
    assert not results["same_sde.stationary.order"].passed
    assert not results["same_sde.stationary.coefficient"].passed


def test_momentum_matters_passes() -> None:
    results = check_momentum_matters(quick=True)
    assert all(r.passed for r in results), [(r.claim_id, r.measured) for r in results]


def test_momentum_matters_fails_for_wrong_methods() -> None:
    def unnormalized_step(x, m, g, eta, beta):  # drops the (1 - beta) of eq. (3)
        m_next = beta * m + g
        return x - eta * m_next, m_next

    results = _by_id(check_momentum_matters(quick=True, method=_sgdm_at_gamma, heavy_ball_step=unnormalized_step))
    assert not results["momentum_matters.stability.heavy_ball"].passed
    assert not results["momentum_matters.regime.eta_h=1.9"].passed


def test_theorem_4_5_passes_and_fails_for_sgdm_at_gamma() -> None:
    assert all(r.passed for r in check_theorem_4_5(quick=True))

    def slow_time_sgdm_at_gamma(problem, eta, beta):
        return SGDM(problem, eta * (1 - beta), beta=beta, sigma=1.0, time_scale=eta**2)

    results = _by_id(check_theorem_4_5(quick=True, momentum=slow_time_sgdm_at_gamma))
    assert not results["theorem_4_5.toy.sgdm_alpha0"].passed
    assert not results["theorem_4_5.toy.sgd_vs_sgdm"].passed


def test_markdown_escapes_pipes_inside_cells() -> None:
    result = ClaimResult("c", "ref", "s", 1.0, 1.0, 1.0, 1.0, True, "|measured - predicted| <= 1e-9")
    text = format_markdown([result])
    header, *rows = [line for line in text.splitlines() if line.startswith("|") and "---" not in line]
    for row in rows:  # every row has as many unescaped separators as the header
        assert row.replace("\\|", "").count("|") == header.count("|")
