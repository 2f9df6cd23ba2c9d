"""MORLHF: one RL policy per preference point, trained on the weighted sum of z-scored rewards (METHODS.md §4)."""
