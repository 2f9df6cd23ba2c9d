"""Options of ``pluralign train reward-model --type btl``: the context-free baseline on the same features."""

from __future__ import annotations

from dataclasses import dataclass, field

from pluralign.training.user_pairs import PairwiseRewardDataConfig


@dataclass
class BTLConfig(PairwiseRewardDataConfig):
    """Bradley-Terry on frozen embeddings, all users' pairs pooled (what a single reward model learns)."""

    output_dir: str = "btl_model"
    # defaults chosen on held-out pairs (docs/reward_models.md, "Defaults chosen by measurement"): a linear
    # head (an MLP memorises a few hundred real pairs), a short run at a high learning rate
    hidden_dim: int = field(default=0, metadata={"help": "MLP width; 0 = a linear Bradley-Terry head"})
    learning_rate: float = 1e-2
    max_steps: int = 300
    batch_tasks: int = field(default=16, metadata={"help": "tasks per batch (one user type each)"})
