"""The record every claim check returns, and the small verdict rules the checks share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ClaimResult"]


@dataclass(frozen=True)
class ClaimResult:
    """Predicted vs measured for one claim of the paper, with a confidence interval and a verdict.

    ``criterion`` states the verdict rule with its tolerance in words (e.g. ``"measured >= predicted - 0.1"``);
    ``ci_low``/``ci_high`` bound ``measured`` (equal to it for exact, deterministic measurements).
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite floats become strings so the JSON stays standard."""
        return {key: _jsonable(value) for key, value in asdict(self).items()}


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
