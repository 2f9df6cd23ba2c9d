"""SPOConfig: DPO on dimensions plus SPO's per-round betas and margin weights alpha."""

from __future__ import annotations

from dataclasses import dataclass, field

from pluralign.errors import ConfigError
from pluralign.training.dpo_stage import DimensionDPOConfig


@dataclass
class SPOConfig(DimensionDPOConfig):
    """Options of ``pluralign train spo``: one round per dimension, in the order of ``dimensions``."""

    alpha: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={"help": "weight of each earlier round's implicit reward in the margin (one value, or one per round)"},
    )
    round_beta: list[float] = field(
        default_factory=list, metadata={"help": "beta of each round (default: beta for every round)"}
    )

    def betas(self, rounds: int) -> list[float]:
        """beta_1..beta_rounds."""
        return self._per_round(self.round_beta or [self.beta], rounds, "round_beta")

    def alphas(self, rounds: int) -> list[float]:
        """alpha_1..alpha_rounds (alpha_j weighs round j's implicit reward in later rounds)."""
        values = self._per_round(self.alpha, rounds, "alpha")
        if any(a < 0 for a in values):
            raise ConfigError(f"alpha must be >= 0, got {self.alpha}")
        return values

    @staticmethod
    def _per_round(values: list[float], rounds: int, name: str) -> list[float]:
        if len(values) == 1:
            return [float(values[0])] * rounds
        if len(values) in (rounds, rounds - 1):
            return [float(v) for v in values] + [float(values[-1])] * (rounds - len(values))
        raise ConfigError(f"{name} has {len(values)} values for {rounds} rounds; give one value or one per round")
