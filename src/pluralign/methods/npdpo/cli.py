"""``pluralign train npdpo``: a policy steered by a few of the user's own choices (METHODS.md §5)."""

from __future__ import annotations

from collections.abc import Sequence

HELP = "NP-DPO: DPO with the policy FiLM-conditioned on a context latent of the user's choices"


def run(argv: Sequence[str]) -> int:
    from pluralign.config import parse_config
    from pluralign.methods.npdpo.config import NPDPOConfig
    from pluralign.methods.npdpo.trainer import train_npdpo

    cfg = parse_config(NPDPOConfig, argv, prog="pluralign train npdpo")
    train_npdpo(cfg)
    return 0
