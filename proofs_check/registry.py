"""Registry of claim checks and :func:`run_all`, the one entry point that runs them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from proofs_check.result import ClaimResult

__all__ = ["Claim", "available_claims", "register", "run_all"]

CheckFunction = Callable[[bool], list[ClaimResult]]


@dataclass(frozen=True)
class Claim:
    """A registered check: ``check(quick)`` returns one result per measured sub-claim."""

    claim_id: str
    number: int
    reference: str
    statement: str
    check: CheckFunction


_REGISTRY: dict[str, Claim] = {}


def register(claim_id: str, number: int, reference: str, statement: str) -> Callable[[CheckFunction], CheckFunction]:
    """Decorator adding ``check(quick) -> list[ClaimResult]`` under ``claim_id``.

    ``number`` is the claim's number in DESIGN.md section 5; reports list claims in that order.
    """

    def decorate(check: CheckFunction) -> CheckFunction:
        if claim_id in _REGISTRY:
            raise ValueError(f"claim {claim_id!r} is registered twice")
        _REGISTRY[claim_id] = Claim(claim_id, number, reference, statement, check)
        return check

    return decorate


def available_claims() -> dict[str, Claim]:
    """Registered claims, ordered by their number in DESIGN.md section 5."""
    import proofs_check.claims  # noqa: F401  (registers every claim module)

    return {c.claim_id: c for c in sorted(_REGISTRY.values(), key=lambda c: c.number)}


def run_all(quick: bool = True, only: Sequence[str] | None = None, progress: bool = False) -> list[ClaimResult]:
    """Run every registered claim check (or those in ``only``) and return their results in order.

    ``quick`` selects the CI-sized version of each check.  Unknown ids in ``only`` raise ``ValueError``
    listing the registered ones.
    """
    claims = available_claims()
    selected = list(claims) if not only else list(only)
    unknown = [claim_id for claim_id in selected if claim_id not in claims]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; registered claims: {sorted(claims)}")
    iterator = selected
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(selected, desc="claims", unit="claim")
    results: list[ClaimResult] = []
    for claim_id in iterator:
        start = time.perf_counter()
        claim_results = claims[claim_id].check(quick)
        elapsed = time.perf_counter() - start
        results.extend(replace(r, wall_time_s=elapsed / len(claim_results)) for r in claim_results)
    return results
