"""Imports every real-network claim module so that each registers itself (E1-E4; imports torch)."""

from proofs_check import real_regime, real_small_eta, real_stationary, real_svag

__all__ = ["real_regime", "real_small_eta", "real_stationary", "real_svag"]
