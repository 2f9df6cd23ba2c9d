"""NP-BTL: a reward model that adapts to a user from a few of their choices (neural process, METHODS.md §5)."""
