"""Options of ``pluralign train reward-model --type btl``: the context-free baseline on the same features."""

from __future__ import annotations

from dataclasses import dataclass, field

from pluralign.data.user_pairs import PairwiseRewardDataConfig


@dataclass
class BTLConfig(PairwiseRewardDataConfig):
    """Bradley-Terry on frozen embeddings, all users' pairs pooled (what a single reward model learns)."""

    output_dir: str = "btl_model"
    hidden_dim: int = field(default=256, metadata={"help": "MLP width; 0 = a linear Bradley-Terry head"})
