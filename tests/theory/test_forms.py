"""Symbolic proofs of the parameterisations and the coupling identity (THEORY.md 1.3, 1.4, 8; oracles 1-3)."""

from __future__ import annotations

import sympy as sp

from theory import forms


def test_every_equivalence_holds() -> None:
    for proof in forms.all_proofs():
        assert proof.holds, proof.name
        assert all(sp.simplify(r) == 0 for r in proof.residuals)


def _unnormalized_step(x, m, g, eta, beta):
    # A plausible mistake: the (1 - beta) factor of eq. (3) dropped.
    m_next = beta * m + g
    return x - eta * m_next, m_next


def _wrong_coupling_step(x, m, g, eta, beta):
    # eq. (3) with the buffer updated after the parameter: breaks the coupling identity.
    return x - eta * m, beta * m + (1 - beta) * g


def test_pytorch_equivalence_fails_for_a_wrong_rule() -> None:
    assert not forms.prove_pytorch_equivalence(_unnormalized_step).holds


def test_coupling_identity_fails_for_a_wrong_rule() -> None:
    assert not forms.prove_coupling_identity(_wrong_coupling_step).holds
    assert not forms.prove_coupling_identity(_unnormalized_step).holds
    assert not forms.prove_scheduled_coupling_identity(_unnormalized_step).holds


def test_heavy_ball_is_not_nesterov() -> None:
    assert not forms.prove_nesterov_equivalence(forms.normalized_step).holds


def test_dampening_first_step_gap_is_minus_eta_beta_g() -> None:
    gap = forms.dampening_first_step_gap()
    assert sp.simplify(gap + forms.eta * forms.beta * forms.g) == 0
    assert gap != 0


def test_unrolled_iterates_agree_for_five_steps() -> None:
    """Direct check beside the induction: five steps with symbolic gradients g_0..g_4."""
    gs = sp.symbols("g0:5", real=True)
    gamma, beta = forms.gamma, forms.beta
    x_pt, b = sp.Symbol("x0"), sp.Integer(0)
    x_n, m = sp.Symbol("x0"), sp.Integer(0)
    x_pol, x_prev = sp.Symbol("x0"), sp.Symbol("x0")
    for g in gs:
        x_pt, b = forms.pytorch_step(x_pt, b, g, gamma, beta)
        x_n, m = forms.normalized_step(x_n, m, g, gamma / (1 - beta), beta)
        x_pol, x_prev = forms.polyak_step(x_pol, x_prev, g, gamma, beta)
        assert sp.simplify(x_pt - x_n) == 0
        assert sp.simplify(x_pt - x_pol) == 0


def test_format_proofs_reports_every_proof() -> None:
    text = forms.format_proofs()
    assert "FAILS" not in text
    assert text.count("[holds]") == len(forms.all_proofs())
    assert "dampening=beta" in text
    assert r"\frac{\eta\beta}{1-\beta}" in forms.format_proofs(latex=True)
