"""# Check your own momentum variant against the paper's claims

A claim check of `proofs_check` takes a `MethodSet`: the implementations it verifies (the SGD and SGDM
simulators, the symbolic update rule, the PyTorch optimizer, the stationary covariance, ...).  The predictions come
from the theory, never from the set under test, so replacing one field by your own implementation checks *your*
implementation against every claim that reads that field.  The package's own set is `REFERENCE`; the deliberately
wrong sets of `MUTANTS` show that the checks do fail wrong methods (the kill matrix of `mvm verify --mutants`).

Then the second half: test your own *bound* (an inequality about SGD / SGDM) with the Hypothesis strategies of
`theory.strategies`, which draw stable quadratic problems, against the exact oracles.

This page runs the quick checks of one claim (the coupling identity, seconds) so that it builds fast;
`run_all(quick=True, methods=mine)` without `only=` runs all nine.
"""

# %%
# The reference set passes the coupling claim: `y_k = x_k - eta beta/(1-beta) m_k` follows SGD exactly, and the
# gap `|x_k - y_k|` scales as `sqrt(eta/(1-beta))`.
import dataclasses

from proofs_check import MUTANTS, REFERENCE, available_claims, format_table, run_all

claim = available_claims()["coupling"]
print("statement:", claim.statement)
print("reads the fields:", claim.fields)
print(format_table(run_all(quick=True, only="coupling", methods=REFERENCE)))

# %%
# Your own variant.  Here: a symbolic update rule (`update_step(x, m, g, eta, beta) -> (x_next, m_next)`) that
# applies the momentum one step late, `x_{k+1} = x_k - eta m_k`, a plausible bug.  The identity check proves
# symbolically that the rule is not eq. (3), so the verdict is FAIL.


def my_update_step(x, m, g, eta, beta):
    m_next = beta * m + (1 - beta) * g
    return x - eta * m, m_next


mine = dataclasses.replace(REFERENCE, update_step=my_update_step)
results = run_all(quick=True, only="coupling", methods=mine)
print(format_table(results))
assert not all(r.passed for r in results)

# %%
# The mutants: each lists the claims (or sub-claims) it must break.  `sgdm_beta_ignored` simulates SGD in place
# of SGDM; the coupling gap then no longer scales with `1 - beta`.
mutant = MUTANTS["sgdm_beta_ignored"]
print(mutant.description, "-> must break", mutant.must_break)
results = run_all(quick=True, only="coupling", methods=mutant.methods)
print(format_table(results))
for r in results:
    if r.status == "error":  # a method the check cannot even run on counts as broken, with the reason kept
        print(r.claim_id, "->", r.details["error"])

# %%
# ## Test your own bound
#
# `theory.strategies.stable_quadratics` draws quadratic problems whose every `eta * h_i` is inside the stability
# region, with a PSD noise covariance; the exact oracles (`theory.quadratic.stationary_covariance`, ...) give both
# sides with no sampling, so a failure is a counterexample.  First a bound that holds: SGD's stationary loss is
# within the discretisation factor `1 / (1 - eta h_max / 2)` of the SDE's.
import numpy as np
from hypothesis import HealthCheck, find, given, settings

from theory.quadratic import sde_stationary_covariance, stationary_covariance
from theory.strategies import momenta, stable_quadratics

search = settings(database=None, derandomize=True, max_examples=100, suppress_health_check=list(HealthCheck))
worst = []


@search
@given(stable_quadratics("sgd", commuting=None, max_dim=4))
def my_bound(p):
    h_max = float(np.linalg.eigvalsh(p.H)[-1])
    left = np.trace(p.H @ stationary_covariance(p.H, p.Sigma, p.eta))
    right = np.trace(p.H @ sde_stationary_covariance(p.H, p.Sigma, p.eta)) / (1 - p.eta * h_max / 2)
    worst.append(left / right)
    assert left <= right * (1 + 1e-9)


my_bound()
print(f"holds on {len(worst)} drawn problems; largest left/right = {max(worst):.6f}")

# %%
# A conjecture that fails: "momentum shrinks the stationary covariance in every direction" (C_SGDM <= C_SGD in the
# Loewner order).  `hypothesis.find` returns the shrunk counterexample: two directions with different curvatures
# and correlated noise.


def momentum_raises_some_direction(p):
    gap = stationary_covariance(p.H, p.Sigma, p.eta, 0.0) - stationary_covariance(p.H, p.Sigma, p.eta, p.beta)
    return bool(np.linalg.eigvalsh(gap)[0] < -1e-10 * np.linalg.norm(gap))


p = find(stable_quadratics("sgd", commuting=False, betas=momenta()), momentum_raises_some_direction, settings=search)
print("counterexample: eta =", p.eta, "beta =", p.beta)
print("H =\n", np.round(p.H, 4), "\nSigma =\n", np.round(p.Sigma, 4))
