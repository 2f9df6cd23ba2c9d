"""``pluralign train modpo``: DPO on one objective with a margin from the others, one model per weight vector."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.modpo.config import MODPOConfig

HELP = "MODPO: DPO on one objective's pairs with margins from the others, steered by the nearest weight vector"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.modpo.trainer import train_modpo

    return train_command(MODPOConfig, train_modpo, argv, "modpo")
