"""Rewards-in-Context for text-to-image diffusion models (METHODS.md §1, ``ric_txt2img``)."""
