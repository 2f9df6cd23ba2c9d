"""``pluralign train reward-model --type npbtl``: meta-train NP-BTL on users of hidden types.

Each attribute of the dataset is one user type; tasks are 20 of one type's pairs with a random k-subset
(k uniform in min_context..max_context) as the context. Saves ``npbtl.safetensors`` + ``npbtl.json`` and
``pluralign.json`` (method "npbtl"); prints held-out accuracy by context size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pluralign.config import train_command
from pluralign.errors import ConfigError
from pluralign.models.neural_process import NPBTL, NPConfig
from pluralign.objectives.learned.npbtl import WEIGHTS
from pluralign.reward_models.npbtl.config import NPBTLConfig
from pluralign.training.user_pairs import load_user_splits, make_embedder
from pluralign.training.user_tasks import held_out_accuracy, save_pairwise_reward_model, train_on_user_tasks


def train_npbtl(cfg: NPBTLConfig, progress: Callable[[str], None] = print) -> Path:
    """Train and save an NP-BTL reward model; returns the output directory."""
    torch.manual_seed(cfg.seed)
    embedder = make_embedder(cfg)
    train, validation, held, held_pairs = load_user_splits(cfg, embedder, progress)
    if cfg.max_context > cfg.num_targets:
        raise ConfigError("--max_context must not exceed --num_targets (the context is drawn from the targets)")
    np_cfg = NPConfig(
        input_dim=embedder.dim,
        hidden_dim=cfg.hidden_dim,
        latent_dim=cfg.hidden_dim,
        num_heads=cfg.num_heads,
        latent=cfg.latent,
        decoder=cfg.decoder,
    )
    model = NPBTL(np_cfg)
    stats = train_on_user_tasks(
        model, train, cfg, progress, cfg.min_context, cfg.max_context, cfg.beta_kl, validation=validation
    )
    accuracy = held_out_accuracy(model, held, cfg.eval_context_sizes, cfg.seed)
    if accuracy:
        progress("held-out accuracy by context size: " + ", ".join(f"k={k}: {a:.1f}%" for k, a in accuracy.items()))
    accuracy_extra = {"eval_accuracy_by_k": {str(k): round(a, 2) for k, a in accuracy.items()}}
    return save_pairwise_reward_model("npbtl", model, np_cfg, WEIGHTS, cfg, embedder, train, held_pairs, stats,
                                      accuracy_extra, progress)  # fmt: skip


def run(argv: Sequence[str]) -> int:
    return train_command(NPBTLConfig, train_npbtl, argv, "reward-model --type npbtl")
