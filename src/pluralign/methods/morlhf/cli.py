"""``pluralign train morlhf``: RLOO on sum_i w_i z_i, one run per preference point of the grid."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.morlhf.config import MORLHFConfig

HELP = "MORLHF baseline: one RL (RLOO) policy per preference point, steered by the nearest trained point"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.morlhf.trainer import train_morlhf
    from pluralign.training.rl import with_objectives_and_prompts

    return train_command(MORLHFConfig, with_objectives_and_prompts(train_morlhf), argv, "morlhf")
