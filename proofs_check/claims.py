"""Imports every claim module, in the order of DESIGN.md section 5, so that each registers itself."""

from proofs_check import form_equivalence, lemma_2_4

__all__ = ["form_equivalence", "lemma_2_4"]
