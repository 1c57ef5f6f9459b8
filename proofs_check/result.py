"""The record every claim check returns, and the verdict vocabulary the checks share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["STATUSES", "ClaimResult", "error_result"]

#: ``pass``: the claim holds for the method under test; ``fail``: the measurement contradicts it; ``unresolved``:
#: the measurement cannot decide (errors at the Monte Carlo noise floor), which is a failure too; ``error``: the
#: check raised (a diverging or malformed method), the message is in ``details["error"]``.
STATUSES = ("pass", "fail", "unresolved", "error")


@dataclass(frozen=True)
class ClaimResult:
    """Predicted vs measured for one claim of the paper, with a confidence interval and a verdict.

    ``criterion`` states the verdict rule with its tolerance in words (e.g. ``"measured >= predicted - 0.1"``);
    ``ci_low``/``ci_high`` bound ``measured`` (equal to it for exact, deterministic measurements).
    ``fields`` names the :class:`proofs_check.methods.MethodSet` fields the verdict depends on; ``status`` is one of
    :data:`STATUSES` and ``passed`` is ``status == "pass"``.
    ``wall_time_s`` is the run time of the claim's check divided evenly among the results it returned.
    """

    claim_id: str
    reference: str
    statement: str
    predicted: float
    measured: float
    ci_low: float
    ci_high: float
    passed: bool
    criterion: str
    details: Mapping[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    fields: tuple[str, ...] = ()
    status: str = ""

    def __post_init__(self) -> None:
        status = self.status or ("pass" if self.passed else "fail")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if (status == "pass") != bool(self.passed):
            raise ValueError(f"status {status!r} contradicts passed={self.passed!r}")
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "passed", bool(self.passed))
        object.__setattr__(self, "fields", tuple(self.fields))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite floats become strings so the JSON stays standard."""
        return {key: _jsonable(value) for key, value in asdict(self).items()}


def error_result(
    claim_id: str, reference: str, statement: str, exc: BaseException, fields: tuple[str, ...] = ()
) -> ClaimResult:
    """A failed result with status ``error`` for a check that raised ``exc`` (type and message in ``details``)."""
    nan = float("nan")
    return ClaimResult(
        claim_id=claim_id,
        reference=reference,
        statement=statement,
        predicted=nan,
        measured=nan,
        ci_low=nan,
        ci_high=nan,
        passed=False,
        criterion="the check raised: see details['error']",
        details={"error": f"{type(exc).__name__}: {exc}"},
        fields=fields,
        status="error",
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value
