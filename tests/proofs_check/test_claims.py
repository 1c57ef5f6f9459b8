"""Claim checks pass for the package's methods (REFERENCE) and fail for deliberately wrong ones (MUTANTS).

The quick verification and the quick kill matrix run once per session (module fixtures); the tests read their
results.  The default run puts one mutant per claim through the matrix (``SENTINELS``, about 1.5 minutes on 2
cores); ``pytest --slow`` runs every mutant (about 8 minutes) and the tests that need all of them.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mvm.cli import main
from proofs_check import (
    MUTANTS,
    REFERENCE,
    ClaimResult,
    MethodSet,
    available_claims,
    changed_fields,
    format_kill_matrix,
    format_markdown,
    kill_matrix,
    order_at_least,
    run_all,
)
from proofs_check.mutants import affected_claims, killed


@pytest.fixture(scope="module")
def reference_results() -> dict[str, ClaimResult]:
    return {r.claim_id: r for r in run_all(quick=True)}


# One wrong method per claim, chosen for the narrowest set of claims it affects, so the default run still shows
# every claim failing a wrong method.  The sgdm mutant is the one that breaks theorem 3.5, theorem 4.5 and the
# coupling gap at once.
SENTINELS = (
    "torch_dampening",  # form_equivalence
    "sgdm_noise_free",  # theorem_3_5, theorem_4_5, coupling, same_sde, momentum_matters
    "svag_noise_ell+1",  # svag
    "lemma_2_4_sqrt_sigma",  # lemma_2_4
    "steps_to_target_at_gamma",  # batch_scaling
    "stationary_sgd_for_sgdm",  # same_sde.stationary
    "sgd_step_doubled",  # momentum_matters.stability
)


@pytest.fixture(scope="module")
def matrix(request):
    names = None if request.config.getoption("--slow") else SENTINELS
    return kill_matrix(quick=True, names=names, jobs=2)


def _slow_unless_sentinel(names):
    return [name if name in SENTINELS else pytest.param(name, marks=pytest.mark.slow) for name in names]


def test_sentinels_include_a_must_break_mutant_for_every_claim() -> None:
    broken = {wanted.split(".")[0] for name in SENTINELS for wanted in MUTANTS[name].must_break}
    assert set(available_claims()) <= broken, set(available_claims()) - broken


def test_every_claim_passes_for_the_reference(reference_results) -> None:
    failing = [
        (r.claim_id, r.status, r.measured, r.ci_low, r.ci_high) for r in reference_results.values() if not r.passed
    ]
    assert not failing


def test_every_result_names_the_fields_its_verdict_depends_on(reference_results) -> None:
    names = {f.name for f in dataclasses.fields(MethodSet)}
    for result in reference_results.values():
        assert result.fields, result.claim_id
        assert set(result.fields) <= names, result.claim_id
        claim = available_claims()[result.claim_id.split(".")[0]]
        assert set(result.fields) <= set(claim.fields), result.claim_id


@pytest.mark.slow
def test_every_mutant_is_killed_by_the_claims_it_must_break(matrix) -> None:
    assert set(matrix.killed) == set(MUTANTS)
    survivors = {name: matrix.survived[name] for name, ok in matrix.killed.items() if not ok}
    assert not survivors, format_kill_matrix(matrix)


def test_the_sentinel_mutants_are_killed_by_the_claims_they_must_break(matrix) -> None:
    survivors = {name: matrix.survived[name] for name, ok in matrix.killed.items() if not ok}
    assert not survivors, format_kill_matrix(matrix)


@pytest.mark.parametrize("name", _slow_unless_sentinel(sorted(MUTANTS)))
def test_each_must_break_id_has_a_failing_sub_result(matrix, name) -> None:
    mutant = MUTANTS[name]
    results = matrix.results[name]
    for wanted in mutant.must_break:
        if wanted in mutant.full_only:
            continue
        mine = [r for r in results if r.claim_id == wanted or r.claim_id.startswith(wanted + ".")]
        assert mine, f"{name}: no sub-result under {wanted}"
        assert any(not r.passed for r in mine), f"{name} passes {wanted}"


@pytest.mark.slow
def test_every_sub_result_is_failed_by_some_mutant(reference_results, matrix) -> None:
    failed_by: dict[str, list[str]] = {claim_id: [] for claim_id in reference_results}
    for name, results in matrix.results.items():
        for r in results:
            if not r.passed and r.claim_id in failed_by:
                failed_by[r.claim_id].append(name)
    assert not [claim_id for claim_id, names in failed_by.items() if not names], failed_by


def test_a_mutant_fails_only_where_its_changed_fields_are_used(reference_results, matrix) -> None:
    # a failing verdict must name a field the mutant changed: otherwise it would fail for the wrong reason
    for name, results in matrix.results.items():
        changed = set(changed_fields(MUTANTS[name].methods))
        for r in results:
            if not r.passed:
                assert changed & set(r.fields), (name, r.claim_id, r.fields)
            else:
                assert r.claim_id in reference_results


def test_unaffected_claims_are_not_rerun() -> None:
    assert affected_claims(MUTANTS["torch_dampening"]) == ["form_equivalence"]
    assert changed_fields(REFERENCE) == ()
    assert changed_fields(MUTANTS["momentum_lagged"].methods) == ("sgdm", "torch_sgdm", "update_step")


def test_killed_requires_every_listed_id() -> None:
    mutant = MUTANTS["sgdm_lr+10%"]
    passing = ClaimResult("theorem_3_5.alpha=0", "r", "s", 0.5, 0.5, 0.4, 0.6, True, "c")
    failing = ClaimResult("theorem_3_5.alpha=0", "r", "s", 0.5, 0.0, -0.1, 0.1, False, "c")
    assert not killed(mutant, [passing], quick=True)[0]
    ok, survived = killed(mutant, [failing], quick=True)
    assert not ok and "momentum_matters.regime" in survived


# --- verdict rules -----------------------------------------------------------------------------------------------


def test_order_rule_passes_a_clean_power_law() -> None:
    etas = 0.1 / 2 ** np.arange(7)
    errors = 0.3 * etas**0.5
    verdict = order_at_least(etas, errors, 0.01 * errors, minimum=0.5, tolerance=0.1)
    assert verdict.passed and verdict.order == pytest.approx(0.5)


def test_order_rule_fails_a_plateau_that_the_point_estimate_would_pass() -> None:
    # error = C eta^0.5 + a floor: the slope over the whole sweep is still 0.31, the last factor 8 only 0.25
    etas = 0.1 / 2 ** np.arange(7)
    errors = 0.3 * etas**0.5 + 0.02
    verdict = order_at_least(etas, errors, 0.0002 * np.ones(7), minimum=0.375, tolerance=0.1)
    assert verdict.order > 0.275  # the old rule (point estimate >= p0 - tol) would have passed
    assert verdict.status == "fail" and verdict.local_order == pytest.approx(
        np.log(0.0535 / 0.0319) / np.log(8), abs=0.01
    )


def test_order_rule_says_unresolved_at_the_noise_floor() -> None:
    etas = 0.1 / 2 ** np.arange(5)
    verdict = order_at_least(etas, [0.01, 0.008, 0.006, 0.004, 0.002], [0.001] * 5, minimum=0.5, tolerance=0.1)
    assert verdict.status == "unresolved" and not verdict.passed and np.isnan(verdict.order)


def test_order_rule_uses_the_interval_not_the_point() -> None:
    etas = 0.1 / 2 ** np.arange(7)
    errors = 0.3 * etas**0.45
    tight = order_at_least(etas, errors, 0.001 * errors, minimum=0.5, tolerance=0.1)
    loose = order_at_least(etas, errors, 0.3 * errors, minimum=0.5, tolerance=0.1)
    assert tight.passed and not loose.passed  # same point estimate 0.45 >= 0.4, wide interval fails


# --- runs that survive a bad method ------------------------------------------------------------------------------


def _exploding_sgdm(problem, eta, beta, *, sigma=None, time_scale=None):
    raise RuntimeError("boom")


def test_an_exception_becomes_an_error_result_and_other_claims_still_run() -> None:
    methods = dataclasses.replace(REFERENCE, sgdm=_exploding_sgdm)
    results = run_all(quick=True, only=["coupling", "lemma_2_4"], methods=methods)
    by_id = {r.claim_id: r for r in results}
    assert by_id["coupling.identity"].passed
    gap = by_id["coupling.gap.alpha=0"]
    assert gap.status == "error" and not gap.passed and "RuntimeError: boom" in gap.details["error"]
    assert all(by_id[i].passed for i in ("lemma_2_4.symbolic", "lemma_2_4.residual_order", "lemma_2_4.svag"))


def test_run_all_accepts_one_id_as_a_string_and_rejects_unknown_ids() -> None:
    assert {r.claim_id.split(".")[0] for r in run_all(only="lemma_2_4")} == {"lemma_2_4"}
    with pytest.raises(ValueError, match="registered claims"):
        run_all(only=["no_such_claim"])
    with pytest.raises(ValueError, match="MethodSet"):
        run_all(only="lemma_2_4", methods=object())


def test_claim_result_status_must_agree_with_passed() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        ClaimResult("c", "r", "s", 0, 0, 0, 0, True, "c", status="fail")
    assert ClaimResult("c", "r", "s", 0, 0, 0, 0, False, "c").status == "fail"


# --- mvm verify --------------------------------------------------------------------------------------------------


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
            "details", "fields", "status"} <= set(records[0])  # fmt: skip
    assert md_path.read_text().startswith("| claim")


def test_mvm_verify_exit_codes(tmp_path, capsys) -> None:
    assert main(["verify", "--only", "nope", "--no-progress"]) == 2
    assert "registered claims" in capsys.readouterr().err
    assert main(["verify", "--mutants", "nope", "--no-progress"]) == 2
    assert "known:" in capsys.readouterr().err
    assert main(["verify", "--only", "lemma_2_4", "--json", str(tmp_path), "--no-progress"]) == 3
    assert str(tmp_path) in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["verify", "--only", "lemma_2_4", "--markdown", str(blocker / "r.md"), "--no-progress"]) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_mvm_verify_mutants_prints_the_kill_matrix(capsys) -> None:
    code = main(["verify", "--quick", "--mutants", "lemma_2_4_sqrt_sigma", "torch_dampening", "--jobs", "1",
                 "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "2 killed, 0 survived" in out
    assert "FAIL 2/3" in out and "=" in out


def test_mvm_verify_mutants_exits_1_when_a_mutant_survives(monkeypatch, capsys) -> None:
    import proofs_check.methods as methods_module

    harmless = methods_module.Mutant("the reference itself", REFERENCE, ("lemma_2_4",))
    monkeypatch.setitem(methods_module.MUTANTS, "harmless", harmless)
    # an unchanged set affects no claim, so nothing runs and the mutant survives
    assert main(["verify", "--quick", "--mutants", "harmless", "--jobs", "1", "--no-progress"]) == 1
    assert "SURVIVED" in capsys.readouterr().out


def test_markdown_summary_line(reference_results) -> None:
    results = [r for r in reference_results.values() if r.claim_id.startswith("lemma_2_4")]
    assert format_markdown(results).rstrip().endswith("3 passed, 0 failed")


def test_markdown_escapes_pipes_inside_cells() -> None:
    result = ClaimResult("c", "ref", "s", 1.0, 1.0, 1.0, 1.0, True, "|measured - predicted| <= 1e-9")
    text = format_markdown([result])
    header, *rows = [line for line in text.splitlines() if line.startswith("|") and "---" not in line]
    for row in rows:  # every row has as many unescaped separators as the header
        assert row.replace("\\|", "").count("|") == header.count("|")
