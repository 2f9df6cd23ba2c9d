"""``pluralign train npdpo``: a policy steered by a few of the user's own choices (METHODS.md §5)."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.npdpo.config import NPDPOConfig

HELP = "NP-DPO: DPO with the policy FiLM-conditioned on a context latent of the user's choices"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.npdpo.trainer import train_npdpo

    return train_command(NPDPOConfig, train_npdpo, argv, "npdpo")
