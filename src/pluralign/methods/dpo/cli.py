"""``pluralign train dpo``: DPO on one dimension's pairs, or on several dimensions merged."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.dpo.config import DPOConfig

HELP = "DPO on one preference dimension, or on several merged (the baseline of SPO and MODPO)"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.dpo.trainer import train_dpo

    return train_command(DPOConfig, train_dpo, argv, "dpo")
