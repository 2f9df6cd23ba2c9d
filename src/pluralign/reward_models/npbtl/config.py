"""Options of ``pluralign train reward-model --type npbtl`` (and, through the shared base, ``--type btl``).

The models train on frozen embeddings with a plain Adam loop (there is no TRL trainer for reward heads on
frozen features), so these dataclasses do not extend a TRL config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pluralign.errors import ConfigError
from pluralign.training.user_pairs import PairwiseRewardDataConfig


@dataclass
class NPBTLConfig(PairwiseRewardDataConfig):
    """NP-BTL: context encoder (self-attention, sum), target encoder, decoder (METHODS.md §5)."""

    output_dir: str = "npbtl_model"
    # the paper's sizes (METHODS.md §5); training defaults chosen on held-out pairs (docs/reward_models.md):
    # a higher learning rate, stopped early on a validation split by pair
    learning_rate: float = 1e-3
    max_steps: int = 3000
    validation_fraction: float = field(
        default=0.15,
        metadata={"help": "share of the training pairs (by pair) held back to keep the best step and stop early"},
    )
    num_heads: int = 8
    min_context: int = field(default=0, metadata={"help": "smallest context size k in training"})
    max_context: int = field(default=10, metadata={"help": "largest context size k in training"})
    decoder: str = field(
        default="bilinear",
        metadata={"help": "the reward given z: bilinear (r = w.x + (V x).z, a linear head z shifts; measured "
                  "best on real pairs) or mlp (the paper's MLP([h; z]) with batch norm)"},
    )  # fmt: skip
    latent: bool = field(default=False, metadata={"help": "optional latent path: q(z|C) Gaussian"})
    beta_kl: float = field(default=0.0, metadata={"help": "weight of KL(q(z|C) || q(z|T)) on the latent path"})
    eval_context_sizes: list[int] = field(default_factory=lambda: [0, 1, 3, 5, 10])

    def __post_init__(self) -> None:
        if self.decoder not in ("bilinear", "mlp"):
            raise ConfigError(f"--decoder must be bilinear or mlp, got {self.decoder!r}")
