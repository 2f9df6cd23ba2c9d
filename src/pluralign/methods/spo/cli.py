"""``pluralign train spo``: sequential DPO over dimensions with earlier rounds' implicit rewards as margin."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.spo.config import SPOConfig

HELP = "SPO: one DPO round per preference dimension, keeping earlier dimensions through a margin"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.spo.trainer import train_spo

    return train_command(SPOConfig, train_spo, argv, "spo")
