"""Imports every claim module, in the order of DESIGN.md section 5, so that each registers itself."""

from proofs_check import coupling, form_equivalence, lemma_2_4, svag, theorem_3_5

__all__ = ["coupling", "form_equivalence", "lemma_2_4", "svag", "theorem_3_5"]
