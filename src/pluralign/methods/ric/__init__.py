"""Rewards-in-Context (METHODS.md §1)."""
