"""``pluralign train dpo``: DPO on one dimension's pairs, or on several dimensions merged."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import parse_config
from pluralign.methods.dpo.trainer import train_dpo
from pluralign.training.dpo_stage import DimensionDPOConfig

HELP = "DPO on one preference dimension, or on several merged (the baseline of SPO and MODPO)"


def run(argv: Sequence[str]) -> int:
    config = parse_config(DimensionDPOConfig, argv, prog="pluralign train dpo")
    train_dpo(config)
    return 0
