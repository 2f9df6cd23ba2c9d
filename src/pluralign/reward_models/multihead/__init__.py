"""Multi-head classification reward model (MOSLIM, METHODS.md §2): one backbone, one head per objective."""
