"""``pluralign train soups``: one RLOO policy per objective; theta(w) = sum_i w_i theta_i at inference."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import parse_config
from pluralign.methods.soups.config import SoupsConfig

HELP = "Rewarded Soups baseline: one RL (RLOO) policy per objective, averaged in weight space by preference"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.soups.trainer import train_soups
    from pluralign.training.rl import prepare_objectives_and_prompts

    config = parse_config(SoupsConfig, argv, prog="pluralign train soups")
    objectives, prompts = prepare_objectives_and_prompts(config)
    out = train_soups(config, objectives, prompts)
    print(f"Rewarded Soups model directory: {out}")
    return 0
