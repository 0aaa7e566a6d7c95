"""Synthetic data: the demo corpus in DAIC-WOZ layout and the leakage probe (generators, not adapters)."""
