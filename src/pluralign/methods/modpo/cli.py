"""``pluralign train modpo``: DPO on one objective with a margin from the others, one model per weight vector."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import parse_config
from pluralign.methods.modpo.config import MODPOConfig
from pluralign.methods.modpo.trainer import train_modpo

HELP = "MODPO: DPO on one objective's pairs with margins from the others, steered by the nearest weight vector"


def run(argv: Sequence[str]) -> int:
    config = parse_config(MODPOConfig, argv, prog="pluralign train modpo")
    train_modpo(config)
    return 0
