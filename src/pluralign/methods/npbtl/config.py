"""Options of ``pluralign train reward-model --type npbtl`` (and, through the shared base, ``--type btl``).

The models train on frozen embeddings with a plain Adam loop (there is no TRL trainer for reward heads on
frozen features), so these dataclasses do not extend a TRL config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pluralign.embeddings import DEFAULT_ENCODER


@dataclass
class PairwiseRewardDataConfig:
    """Where the users' choices come from and how (prompt, response) pairs become features."""

    dataset: str | None = field(default=None, metadata={"help": "pairs by attribute/user, or per-attribute ratings"})
    output_dir: str = field(default="reward_model", metadata={"help": "where the trained model is saved"})
    format: str = field(
        default="auto", metadata={"help": "auto | ultrafeedback | pairwise_ids | ratings | pairs (with 'attribute')"}
    )
    attributes: list[str] = field(
        default_factory=list, metadata={"help": "attributes = hidden user types to keep (default: all)"}
    )
    conflicting_only: bool = field(default=False, metadata={"help": "keep only pairs on which the attributes disagree"})
    skip_invalid_pairs: bool = field(
        default=False, metadata={"help": "drop pairs with an empty response or identical responses (else an error)"}
    )
    prompt_column: str = "prompt"
    embedding_model: str = field(
        default=DEFAULT_ENCODER, metadata={"help": "sentence encoder or causal LM (folder or hub id) for features"}
    )
    embedding_pooling: str = field(default="auto", metadata={"help": "auto | mean (sentence encoder) | last (LM)"})
    embedding_cache: str | None = field(default=None, metadata={"help": "cache folder (default ~/.cache/pluralign)"})
    max_length: int = field(default=256, metadata={"help": "token limit of an embedded (prompt, response)"})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of the pairs held out (split by pair, shared by all user types)"}
    )
    hidden_dim: int = 256
    learning_rate: float = 1e-4
    batch_tasks: int = field(default=64, metadata={"help": "tasks per batch (one user type each)"})
    num_targets: int = field(default=20, metadata={"help": "target pairs per task"})
    max_steps: int = 1000
    seed: int = 0
    trust_remote_code: bool = False


@dataclass
class NPBTLConfig(PairwiseRewardDataConfig):
    """NP-BTL: context encoder (self-attention, sum), target encoder, decoder (METHODS.md §5)."""

    output_dir: str = "npbtl_model"
    num_heads: int = 8
    min_context: int = field(default=0, metadata={"help": "smallest context size k in training"})
    max_context: int = field(default=10, metadata={"help": "largest context size k in training"})
    latent: bool = field(default=False, metadata={"help": "optional latent path: q(z|C) Gaussian"})
    beta_kl: float = field(default=0.0, metadata={"help": "weight of KL(q(z|C) || q(z|T)) on the latent path"})
    eval_context_sizes: list[int] = field(default_factory=lambda: [0, 1, 3, 5, 10])
