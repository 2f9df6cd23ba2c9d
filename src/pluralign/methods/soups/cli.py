"""``pluralign train soups``: one RLOO policy per objective; theta(w) = sum_i w_i theta_i at inference."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.soups.config import SoupsConfig

HELP = "Rewarded Soups baseline: one RL (RLOO) policy per objective, averaged in weight space by preference"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.soups.trainer import train_soups
    from pluralign.training.rl import with_objectives_and_prompts

    return train_command(SoupsConfig, with_objectives_and_prompts(train_soups), argv, "soups")
