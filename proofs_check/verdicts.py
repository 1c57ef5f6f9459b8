r"""Verdict rules shared by the claim checks: order claims decided on intervals, never on point estimates.

An order claim "the error decays at least like :math:`\eta^{p_0}`" passes only when

1. the error at the smallest :math:`\eta` is resolved: above :data:`FLOOR_Z` standard errors (else ``unresolved``,
   which fails: a fitted order of noise means nothing);
2. the interval of the order fitted over the whole sweep (weighted least squares on the log-log points,
   :func:`theory.weak_error.fit_weak_order`) has its lower bound at or above :math:`p_0-\text{tol}`; and
3. the error is still shrinking at the smallest :math:`\eta`: the *local* order between the last point and the
   point :data:`TAIL_SPAN` times larger in :math:`\eta`, :math:`\log(e_a/e_b)/\log(\eta_a/\eta_b)`, has the lower
   end of its delta-method interval at or above :math:`p_0-\text{tol}` too.  When that span is the whole sweep
   (three points or fewer), rule 2 is dropped: it would test the same range with a meaningless one-degree-of-freedom
   inflation.  A plateau (a method that converges to
   something other than the reference: a learning-rate or noise error) has local order near 0 and fails here even
   when the early points decay.

Both intervals are two-sided 95% (``Z_INTERVAL`` = 1.96), so each rule alone, at a true order exactly on the
threshold, fails 2.5% of the time; the reference methods sit well inside (the measured false-failure rates are in
the power table of docs/guide/verification.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proofs_check.result import ClaimResult, error_result
from theory.weak_error import WeakErrorResult, fit_weak_order

__all__ = [
    "FLOOR_Z",
    "TAIL_SPAN",
    "Z_INTERVAL",
    "OrderVerdict",
    "fields_wanted",
    "guarded",
    "only_fields",
    "order_at_least",
]

#: An error below this many standard errors is at the Monte Carlo noise floor.
FLOOR_Z = 3.0
#: Ratio of the learning rates over which the local order at the small end is measured.
TAIL_SPAN = 8.0
#: Normal quantile of the two-sided 95% intervals.
Z_INTERVAL = 1.959963984540054


@dataclass(frozen=True)
class OrderVerdict:
    """Outcome of :func:`order_at_least`: status, global fit with its interval, local order at the small end."""

    status: str
    order: float
    ci_low: float
    ci_high: float
    local_order: float
    local_ci_low: float
    criterion: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def _as_values(errors, standard_errors) -> tuple[np.ndarray, np.ndarray]:
    if len(errors) and isinstance(errors[0], WeakErrorResult):
        return (np.array([e.estimate for e in errors], float), np.array([e.standard_error for e in errors], float))
    return np.asarray(errors, dtype=float), np.asarray(standard_errors, dtype=float)


def order_at_least(
    etas: Sequence[float],
    errors: Sequence[float] | Sequence[WeakErrorResult],
    standard_errors: Sequence[float] | None = None,
    *,
    minimum: float,
    tolerance: float,
    tail_span: float = TAIL_SPAN,
) -> OrderVerdict:
    r"""Decide "error :math:`=O(\eta^{p})` with :math:`p\ge` ``minimum``" with the rules of the module docstring.

    ``etas`` decreasing or increasing; ``errors`` values with ``standard_errors`` or :class:`WeakErrorResult`\ s.
    """
    eta = np.asarray(etas, dtype=float)
    err, se = _as_values(errors, standard_errors)
    order_by_eta = np.argsort(eta)[::-1]  # largest eta first
    eta, err, se = eta[order_by_eta], err[order_by_eta], se[order_by_eta]
    threshold = minimum - tolerance
    criterion = (
        f"lower 95% bounds of the fitted order and of the local order over the last x{tail_span:g} in eta "
        f">= {minimum:.3g} - {tolerance:g}; error at smallest eta > {FLOOR_Z:g} SE"
    )
    details: dict[str, Any] = {"etas": eta.tolist(), "errors": err.tolist(), "standard_errors": se.tolist()}
    nan = float("nan")
    se = np.maximum(se, 1e-12 * np.abs(err) + 1e-300)  # a deterministic side has SE 0: keep the weights finite
    if not np.all(np.isfinite(err)) or err[-1] <= FLOOR_Z * se[-1] or np.any(err <= 0):
        return OrderVerdict("unresolved", nan, nan, nan, nan, nan, criterion, details)
    fit = fit_weak_order(eta, err, se)
    # local order between the smallest eta and the point closest to tail_span times larger
    a = int(np.argmin(np.abs(np.log(eta / (eta[-1] * tail_span)))))
    span = math.log(eta[a] / eta[-1])
    local = math.log(err[a] / err[-1]) / span
    local_se = math.hypot(se[a] / err[a], se[-1] / err[-1]) / span
    local_low = local - Z_INTERVAL * local_se
    details.update(
        {
            "fit_inflation": fit.inflation,
            "local_order": local,
            "local_order_ci": [local_low, local + Z_INTERVAL * local_se],
            "local_order_etas": [float(eta[a]), float(eta[-1])],
        }
    )
    # With the local span covering the whole sweep (3 points or fewer), the two-point interval is the whole-range
    # test, and a 1-degree-of-freedom Student-t inflation of the fit would say nothing: use the local test alone.
    whole_range = a == 0
    details["global_fit_used"] = not whole_range
    passed = (whole_range or fit.ci_low >= threshold) and local_low >= threshold
    status = "pass" if passed else "fail"
    if whole_range:  # report the interval the verdict used
        return OrderVerdict(
            status, local, local_low, local + Z_INTERVAL * local_se, local, local_low, criterion, details
        )
    return OrderVerdict(status, fit.order, fit.ci_low, fit.ci_high, local, local_low, criterion, details)


_FIELD_FILTER: ContextVar[frozenset[str] | None] = ContextVar("field_filter", default=None)


@contextmanager
def only_fields(names: Iterable[str] | None) -> Iterator[None]:
    """Within the block, sub-checks whose fields do not meet ``names`` are skipped (``None``: run everything).

    A sub-result that names none of the changed fields of a method set computes what it computes for the reference;
    the power study uses this to run only the sub-results an error of ``sgdm`` can move.
    """
    token = _FIELD_FILTER.set(None if names is None else frozenset(names))
    try:
        yield
    finally:
        _FIELD_FILTER.reset(token)


def fields_wanted(fields: Iterable[str]) -> bool:
    """Whether a sub-check naming ``fields`` runs under the active :func:`only_fields` filter (always without one)."""
    wanted = _FIELD_FILTER.get()
    return wanted is None or bool(wanted & set(fields))


def guarded(
    claim_id: str,
    reference: str,
    statement: str,
    fields: tuple[str, ...],
    measure: Callable[[], ClaimResult | list[ClaimResult]],
) -> list[ClaimResult]:
    """Run one sub-check; an exception becomes a failed result with status ``error`` instead of aborting the run.

    Skipped (no result) when an :func:`only_fields` filter is active and ``fields`` does not meet it.
    """
    if not fields_wanted(fields):
        return []
    try:
        outcome = measure()
    except Exception as exc:  # a wrong method may diverge or break any numeric step: report, never abort
        return [error_result(claim_id, reference, statement, exc, fields)]
    return outcome if isinstance(outcome, list) else [outcome]
