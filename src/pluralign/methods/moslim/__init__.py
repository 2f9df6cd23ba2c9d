"""MOSLIM (METHODS.md §2): preferences as intensities in the prompt, RL on a multi-head classification reward model."""
