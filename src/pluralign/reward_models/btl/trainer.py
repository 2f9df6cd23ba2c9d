"""``pluralign train reward-model --type btl``: one Bradley-Terry reward model for all users (the baseline).

Same data and features as NP-BTL (each attribute's pairs, sampled evenly), no context. Saves
``btl.safetensors`` + ``btl.json`` and ``pluralign.json`` (method "btl").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pluralign.config import train_command
from pluralign.models.neural_process import NPConfig
from pluralign.objectives.learned.btl import BTL, WEIGHTS
from pluralign.reward_models.btl.config import BTLConfig
from pluralign.training.user_pairs import load_user_splits, make_embedder
from pluralign.training.user_tasks import held_out_accuracy, save_pairwise_reward_model, train_on_user_tasks


def train_btl(cfg: BTLConfig, progress: Callable[[str], None] = print) -> Path:
    """Train and save a BTL reward model; returns the output directory."""
    torch.manual_seed(cfg.seed)
    embedder = make_embedder(cfg)
    train, validation, held, held_pairs = load_user_splits(cfg, embedder, progress)
    np_cfg = NPConfig(input_dim=embedder.dim, hidden_dim=cfg.hidden_dim, latent_dim=0)
    model = BTL(np_cfg)
    stats = train_on_user_tasks(model, train, cfg, progress, validation=validation)
    accuracy = held_out_accuracy(model, held, [0], cfg.seed)
    if accuracy:
        progress(f"held-out accuracy: {accuracy[0]:.1f}%")
    accuracy_extra = {"eval_accuracy": round(accuracy.get(0, float("nan")), 2) if accuracy else None}
    return save_pairwise_reward_model("btl", model, np_cfg, WEIGHTS, cfg, embedder, train, held_pairs, stats,
                                      accuracy_extra, progress)  # fmt: skip


def run(argv: Sequence[str]) -> int:
    return train_command(BTLConfig, train_btl, argv, "reward-model --type btl")
