"""Test your own bound: how a researcher checks an inequality about SGD / SGDM against the exact theory.

Copy this file next to your own tests and run ``pytest test_my_bound.py``.  The recipe:

1. draw inputs from the public strategies of :mod:`theory.strategies` (stable by construction: every
   ``eta * h_i`` is inside the stability region, ``Sigma`` is PSD);
2. compute both sides from the exact oracles (:func:`theory.quadratic.stationary_covariance`,
   :func:`theory.quadratic.sde_stationary_covariance`, ...): no sampling, so a failure is a counterexample;
3. assert ``left <= right`` up to float rounding, and ``note()`` both sides so a failure report shows them.

Reading a counterexample.  When the assertion fails, Hypothesis shrinks the input and prints it.  The conjecture of
:func:`test_conjecture_momentum_shrinks_every_direction`, written as a plain ``@given`` test asserting that
``C_SGD - C_SGDM`` has no negative eigenvalue (with ``note(...)`` of both sides along the worst direction ``w``),
fails with (abridged)::

    Failing test case: test_conjecture(
        p=QuadraticProblem(H=array([[1. , 0. ],
                [0. , 0.5]]), Sigma=array([[0.64596329, 0.22732436],
                [0.22732436, 0.85403671]]), eta=0.5, beta=0.99, basis=...),
    )
    w' C_SGDM w = np.float64(0.2735921495397178), w' C_SGD w = np.float64(0.25448843954951694)

Read it as: the smallest problem the search could find (2-D: curvatures 1 and 1/2, a noise covariance with
eigenvalues 1 and 1/2 rotated by 1 rad, so it correlates the two directions), the hyper-parameters
(``eta * h_max = 1/2``, ``beta = 0.99``) and the two sides: along ``w`` SGDM's stationary variance is 7.5% above
SGD's.  Shrinking moves toward 1-D, identity rotations, ``beta = 0`` and round numbers, so whatever is left is what
the violation needs (here: two different curvatures, correlated noise, momentum).  Re-run it exactly with
``@example(...)``, or call the oracles on those values.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, find, given, note, settings

from theory.quadratic import sde_stationary_covariance, stationary_covariance
from theory.quadratic_symbolic import stationary_variance_symbolic
from theory.strategies import momenta, stable_quadratics

RTOL = 1e-9  # float rounding of the exact oracles (float64, d <= 4)


# --- 1. a bound that holds -------------------------------------------------------------------------------------------


@given(stable_quadratics("sgd", commuting=None, max_dim=4))
def test_sgd_stationary_loss_is_within_the_discretisation_factor_of_the_sde(p) -> None:
    r"""My bound: :math:`\operatorname{tr}(HC_{\rm SGD})\le\frac{1}{1-\eta h_{\max}/2}\operatorname{tr}(HP_{\rm SME1})`.

    (Per eigen-direction the exact-to-SDE ratio is :math:`2/(2-\eta h_i)`.)  ``p`` is a
    :class:`theory.quadratic.QuadraticProblem`: ``p.H``, ``p.Sigma``, ``p.eta``, ``p.beta`` and the eigenbasis.
    """
    h_max = float(np.linalg.eigvalsh(p.H)[-1])
    left = np.trace(p.H @ stationary_covariance(p.H, p.Sigma, p.eta))
    right = np.trace(p.H @ sde_stationary_covariance(p.H, p.Sigma, p.eta)) / (1 - p.eta * h_max / 2)
    note(f"left = {left!r}, right = {right!r}, eta*h_max = {p.eta * h_max!r}")
    assert left <= right * (1 + RTOL)


@given(stable_quadratics("sgd", commuting=False, betas=momenta(max_value=0.999)))
def test_momentum_never_raises_the_stationary_loss_at_the_same_eta(p) -> None:
    """The catalogue's sgdm_loss_le_sgd.noncommuting, written as a plain test (it holds: see docs/guide/bounds.md)."""
    sgd = np.trace(p.H @ stationary_covariance(p.H, p.Sigma, p.eta, 0.0)) / 2
    sgdm = np.trace(p.H @ stationary_covariance(p.H, p.Sigma, p.eta, p.beta)) / 2
    note(f"SGDM loss = {sgdm!r}, SGD loss = {sgd!r}")
    assert sgdm <= sgd * (1 + RTOL)


# --- 2. a conjecture that fails: find the counterexample and keep it as a regression test --------------------------


def _momentum_raises_some_direction(p) -> bool:
    """True when C_SGD - C_SGDM has a negative eigenvalue (beyond rounding): the conjecture is violated."""
    gap = stationary_covariance(p.H, p.Sigma, p.eta, 0.0) - stationary_covariance(p.H, p.Sigma, p.eta, p.beta)
    return bool(np.linalg.eigvalsh(gap)[0] < -1e-10 * np.linalg.norm(gap))


def test_conjecture_momentum_shrinks_every_direction() -> None:
    """Conjecture: C_SGDM <= C_SGD in the Loewner order at the same eta.  False for non-commuting (H, Sigma).

    ``hypothesis.find`` returns the shrunk counterexample instead of failing, so the finding itself becomes a test.
    (``mvm bounds --only psd_gap.noncommuting`` runs the same search from the catalogue.)
    """
    search = settings(database=None, derandomize=True, max_examples=200, suppress_health_check=list(HealthCheck))
    conjecture_inputs = stable_quadratics("sgd", commuting=False, betas=momenta())
    p = find(conjecture_inputs, _momentum_raises_some_direction, settings=search)
    assert p.H.shape == (2, 2) and p.beta > 0  # the smallest counterexample: two directions, some momentum
    sgd, sgdm = stationary_covariance(p.H, p.Sigma, p.eta, 0.0), stationary_covariance(p.H, p.Sigma, p.eta, p.beta)
    w = np.linalg.eigh(sgd - sgdm)[1][:, 0]  # the direction of the most negative eigenvalue
    assert w @ sgdm @ w > w @ sgd @ w  # along w, SGDM's stationary variance exceeds SGD's
    assert np.trace(p.H @ (sgd - sgdm)) > 0  # ... while the loss still favours SGDM


# --- 3. the same, as a catalogue entry: a report with the largest ratio seen, or the shrunk counterexample ---------


def test_my_bound_through_the_catalogue_search() -> None:
    """:class:`proofs_check.bounds.Bound` + :func:`~proofs_check.bounds.search_bound`: what ``mvm bounds`` runs."""
    from proofs_check.bounds import Bound, search_bound

    def inputs():
        return stable_quadratics("sgd", max_dim=4).map(lambda p: {"H": p.H, "Sigma": p.Sigma, "eta": p.eta})

    def sides(case, methods):  # methods: proofs_check.methods.MethodSet, the implementations under test
        H, Sigma, eta = case["H"], case["Sigma"], case["eta"]
        h_max = float(np.linalg.eigvalsh(H)[-1])
        left = np.trace(H @ methods.stationary_covariance(H, Sigma, eta, 0.0))
        return left, np.trace(H @ sde_stationary_covariance(H, Sigma, eta)) / (1 - eta * h_max / 2)

    bound = Bound(
        id="my.sgd_vs_sde_loss",
        statement=r"\operatorname{tr}(HC_{\rm SGD})\le\frac{\operatorname{tr}(HP_{\rm SME1})}{1-\eta h_{\max}/2}",
        source="mine",
        believed_true=True,
        inputs=inputs,
        inputs_description="stable_quadratics('sgd', max_dim=4)",
        sides=sides,
        left_label="tr(H C_SGD)",
        right_label="tr(H P_SME1) / (1 - eta h_max / 2)",
    )
    result = search_bound(bound, budget=50, seed=0)
    assert result.status == "holds" and result.passed
    assert 0.99 < result.max_ratio <= 1 + 1e-9  # tight: all the noise in the stiffest direction gives equality


def test_check_a_closed_form_against_the_symbolic_derivation() -> None:
    """Numbers can be checked against SymPy too: SGD's 1-D variance eta s^2 / (h (2 - eta h)) (THEORY.md 5.4)."""
    import sympy as sp

    from theory.forms import eta
    from theory.quadratic_symbolic import h, s

    exact = stationary_variance_symbolic("sgd")
    assert sp.simplify(exact - eta * s**2 / (h * (2 - eta * h))) == 0
    value = float(exact.subs({eta: sp.Rational(1, 2), h: 1, s: 1}))
    assert stationary_covariance([[1.0]], [[1.0]], 0.5)[0, 0] == value
