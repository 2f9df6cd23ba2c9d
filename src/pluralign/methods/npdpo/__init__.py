"""NP-DPO: a policy FiLM-conditioned on a latent inferred from the user's choices (METHODS.md §5)."""
