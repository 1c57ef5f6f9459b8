"""Claim ids where a list is expected: one string is one id, other types are refused (issue 13, item 3)."""

from __future__ import annotations

import pytest

from proofs_check.registry import select_claims
from theory.validation import ParameterTypeError


def test_claim_ids_given_as_one_string_are_one_id_and_other_types_are_refused() -> None:
    assert select_claims("svag") == ["svag"] and select_claims(["svag"]) == ["svag"]
    assert len(select_claims(None)) == len(select_claims([])) > 1
    for bad in (5, 0, ["svag", 3]):
        with pytest.raises(ParameterTypeError, match=r"only \(claim ids\)"):
            select_claims(bad)
