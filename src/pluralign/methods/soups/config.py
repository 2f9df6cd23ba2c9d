"""Options of ``pluralign train soups``: RLOO options; one run per objective, all from the same start."""

from __future__ import annotations

from dataclasses import dataclass

from pluralign.training.rl import ObjectiveRLConfig


@dataclass
class SoupsConfig(ObjectiveRLConfig):
    """One RLOO run per objective i on the reward z_i (one-hot weights), from ``model_name_or_path``."""
