"""``pluralign train reward-model --type btl``: one Bradley-Terry reward model for all users (the baseline).

Same data and features as NP-BTL (each attribute's pairs, sampled evenly), no context. Saves
``btl.safetensors`` + ``btl.json`` and ``pluralign.json`` (method "btl").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pluralign.config import parse_config
from pluralign.data.user_pairs import load_user_pairs, make_embedder
from pluralign.models.neural_process import NPConfig
from pluralign.reward_models.btl.config import BTLConfig
from pluralign.reward_models.btl.model import BTL
from pluralign.reward_models.btl.reward_model import WEIGHTS
from pluralign.training.user_tasks import TaskSampler, accuracy_by_context_size, save_pairwise_reward_model, train_tasks


def train_btl(cfg: BTLConfig, progress: Callable[[str], None] = print) -> Path:
    """Train and save a BTL reward model; returns the output directory."""
    torch.manual_seed(cfg.seed)
    embedder = make_embedder(cfg)
    train, held, held_pairs = load_user_pairs(cfg, embedder, progress)
    np_cfg = NPConfig(input_dim=embedder.dim, hidden_dim=cfg.hidden_dim, latent_dim=0)
    model = BTL(np_cfg)
    sampler = TaskSampler(train, cfg.num_targets, 0, 0, seed=cfg.seed)
    stats = train_tasks(
        model,
        sampler,
        cfg.max_steps,
        cfg.batch_tasks,
        cfg.learning_rate,
        progress=lambda step, loss: progress(f"step {step}/{cfg.max_steps} loss {loss:.4f}"),
    )
    accuracy = {}
    if held:
        n_targets = max(1, min(20, min(len(u) for u in held.values())))
        accuracy = accuracy_by_context_size(model, held, [0], repeats=200, num_targets=n_targets, seed=cfg.seed)
        progress(f"held-out accuracy: {accuracy[0]:.1f}%")
    accuracy_extra = {"eval_accuracy": round(accuracy.get(0, float("nan")), 2) if accuracy else None}
    return save_pairwise_reward_model("btl", model, np_cfg, WEIGHTS, cfg, embedder, train, held_pairs, stats,
                                      accuracy_extra, progress)  # fmt: skip


def run(argv: Sequence[str]) -> int:
    cfg = parse_config(BTLConfig, argv, prog="pluralign train reward-model --type btl")
    train_btl(cfg)
    return 0
