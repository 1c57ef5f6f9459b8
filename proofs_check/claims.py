"""Imports every claim module so that each registers itself (reports order them by DESIGN.md number)."""

from proofs_check import (
    batch_scaling,
    coupling,
    form_equivalence,
    lemma_2_4,
    momentum_matters,
    same_sde,
    svag,
    theorem_3_5,
    theorem_4_5,
)

__all__ = [
    "batch_scaling",
    "coupling",
    "form_equivalence",
    "lemma_2_4",
    "momentum_matters",
    "same_sde",
    "svag",
    "theorem_3_5",
    "theorem_4_5",
]
