"""Registry of claim checks and :func:`run_all`, the one entry point that runs them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from proofs_check.methods import REFERENCE, MethodSet
from proofs_check.result import ClaimResult, error_result
from theory.validation import check_id_list

__all__ = ["KINDS", "Claim", "available_claims", "register", "run_all", "select_claims"]

#: ``check(quick, methods, seed)``: ``seed=None`` is the check's own fixed seed.
CheckFunction = Callable[[bool, MethodSet, "int | None"], list[ClaimResult]]


@dataclass(frozen=True)
class Claim:
    """A registered check: ``check(quick, methods, seed)`` returns one result per measured sub-claim.

    ``fields`` are the :class:`~proofs_check.methods.MethodSet` fields any of its verdicts can depend on: a set that
    differs from the reference only elsewhere gets the reference's verdicts.
    """

    claim_id: str
    number: int
    reference: str
    statement: str
    fields: tuple[str, ...]
    check: Callable[..., list[ClaimResult]]
    kind: str = "theory"


_REGISTRY: dict[str, Claim] = {}


#: ``theory``: claims 1-9, checked on quadratics and SDEs (``check(quick, methods, seed)``); ``empirical``: the
#: real-network claims E1-E4 (``check(setup, methods)``, :mod:`proofs_check.real_networks`).
KINDS = ("theory", "empirical")


def register(
    claim_id: str, number: int, reference: str, statement: str, fields: Sequence[str], kind: str = "theory"
) -> Callable[[Callable[..., list[ClaimResult]]], Callable[..., list[ClaimResult]]]:
    """Decorator adding a check under ``claim_id``: ``check(quick, methods, seed)`` for ``kind="theory"``,
    ``check(setup, methods)`` for ``kind="empirical"``; each returns a list of :class:`ClaimResult`.

    ``number`` is the claim's number in DESIGN.md section 5; reports list claims in that order.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")

    def decorate(check: Callable[..., list[ClaimResult]]) -> Callable[..., list[ClaimResult]]:
        if claim_id in _REGISTRY:
            raise ValueError(f"claim {claim_id!r} is registered twice")
        _REGISTRY[claim_id] = Claim(claim_id, number, reference, statement, tuple(fields), check, kind)
        return check

    return decorate


def available_claims(kind: str = "theory") -> dict[str, Claim]:
    """Registered claims of ``kind`` (:data:`KINDS`), ordered by their number in DESIGN.md section 5."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "theory":
        import proofs_check.claims
    else:
        import proofs_check.real_claims  # noqa: F401  (imports torch: only when asked for)
    chosen = [c for c in _REGISTRY.values() if c.kind == kind]
    return {c.claim_id: c for c in sorted(chosen, key=lambda c: c.number)}


def select_claims(only: str | Sequence[str] | None, kind: str = "theory") -> list[str]:
    """Claim ids of ``kind`` to run: all for ``None`` or empty, one for a string, else the given ids in registry order.

    Raises ``ValueError`` naming the unknown ids and listing the registered ones.
    """
    claims = available_claims(kind)
    wanted = check_id_list(only, "only (claim ids)")
    if not wanted:
        return list(claims)
    unknown = [claim_id for claim_id in wanted if claim_id not in claims]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; registered claims: {sorted(claims)}")
    return [claim_id for claim_id in claims if claim_id in wanted]


def run_all(
    quick: bool = True,
    only: str | Sequence[str] | None = None,
    progress: bool = False,
    methods: MethodSet = REFERENCE,
    seed: int | None = None,
) -> list[ClaimResult]:
    """Run every registered claim check (or those in ``only``) against ``methods`` and return the results in order.

    ``quick`` selects the CI-sized version of each check; ``seed`` replaces every check's fixed seed (the power
    study's replicates).  An exception inside a check becomes one result with status ``error``; the other claims
    still run.  Unknown ids in ``only`` raise ``ValueError`` listing the registered ones.
    """
    if not isinstance(methods, MethodSet):
        raise ValueError(f"methods must be a proofs_check.methods.MethodSet, got {type(methods).__name__}")
    claims = available_claims()
    selected = select_claims(only)
    iterator = selected
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(selected, desc="claims", unit="claim")
    results: list[ClaimResult] = []
    for claim_id in iterator:
        claim = claims[claim_id]
        start = time.perf_counter()
        try:
            claim_results = claim.check(quick, methods, seed)
        except Exception as exc:  # a wrong method must give a failed verdict, not abort the other claims
            claim_results = [error_result(claim_id, claim.reference, claim.statement, exc, claim.fields)]
        elapsed = time.perf_counter() - start
        results.extend(replace(r, wall_time_s=elapsed / len(claim_results)) for r in claim_results)
    return results
