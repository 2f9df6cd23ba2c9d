"""``pluralign train ric``: Rewards-in-Context (offline SFT on reward-tagged prompts + online MORS)."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.ric.config import RiCConfig

HELP = "Rewards-in-Context: SFT on reward-tagged prompts, online multi-objective rejection sampling"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.ric.trainer import train_ric

    return train_command(RiCConfig, train_ric, argv, "ric")
