"""``pluralign train spo``: sequential DPO over dimensions with earlier rounds' implicit rewards as margin."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import parse_config
from pluralign.methods.spo.config import SPOConfig
from pluralign.methods.spo.trainer import train_spo

HELP = "SPO: one DPO round per preference dimension, keeping earlier dimensions through a margin"


def run(argv: Sequence[str]) -> int:
    config = parse_config(SPOConfig, argv, prog="pluralign train spo")
    train_spo(config)
    return 0
