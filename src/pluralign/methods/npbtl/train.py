"""``pluralign train reward-model --type npbtl``: meta-train NP-BTL on users of hidden types.

Each attribute of the dataset is one user type; tasks are 20 of one type's pairs with a random k-subset
(k uniform in min_context..max_context) as the context. Saves ``npbtl.safetensors`` + ``npbtl.json`` and
``pluralign.json`` (method "npbtl"); prints held-out accuracy by context size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pluralign.config import parse_config
from pluralign.embeddings import DEFAULT_ENCODER, Embedder
from pluralign.errors import ConfigError
from pluralign.manifest import Manifest
from pluralign.methods.npbtl.config import NPBTLConfig, PairwiseRewardDataConfig
from pluralign.methods.npbtl.data import load_user_pairs, make_embedder
from pluralign.methods.npbtl.modules import NPBTL, NPConfig, save_module
from pluralign.methods.npbtl.reward_model import WEIGHTS
from pluralign.methods.npbtl.training import TaskSampler, accuracy_by_context_size, train_tasks
from pluralign.reward_models import record_held_out_accuracy
from pluralign.training_args import is_main_process, wait_for_everyone


def embedding_record(cfg: PairwiseRewardDataConfig, embedder: Embedder) -> dict:
    """How to rebuild the features at inference (the default encoder is stored by name, not local path)."""
    model = cfg.embedding_model if cfg.embedding_model in (DEFAULT_ENCODER, "default") else embedder.model_name
    return {"model": model, "pooling": embedder.pooling, "max_length": cfg.max_length, "dim": embedder.dim}


def save_pairwise_reward_model(
    method: str,
    model: torch.nn.Module,
    np_cfg: NPConfig,
    weights: str,
    cfg: PairwiseRewardDataConfig,
    embedder: Embedder,
    train: dict,
    held_pairs: Sequence,
    stats: dict,
    accuracy_extra: dict,
    progress: Callable[[str], None],
) -> Path:
    """Write a BTL / NP-BTL reward model (weights, manifest, held-out accuracy) to ``cfg.output_dir``."""
    out = Path(cfg.output_dir)
    train_seconds = round(stats["train_seconds"], 1)
    if is_main_process():
        save_module(model, np_cfg, out, weights)
        Manifest(
            method=method,
            objectives=list(train),
            extra={
                "embedding": embedding_record(cfg, embedder),
                "user_types": list(train),
                "train_seconds": train_seconds,
                **accuracy_extra,
                "config": json.loads(json.dumps(vars(cfg), default=str)),
            },
        ).save(out)
        extra = {"train_pairs": sum(map(len, train.values())), "train_seconds": train_seconds}
        record_held_out_accuracy(out, held_pairs, extra, progress)
    wait_for_everyone()
    progress(f"saved {'NP-BTL' if method == 'npbtl' else method.upper()} reward model to {out}")
    return out


def train_npbtl(cfg: NPBTLConfig, progress: Callable[[str], None] = print) -> Path:
    """Train and save an NP-BTL reward model; returns the output directory."""
    torch.manual_seed(cfg.seed)
    embedder = make_embedder(cfg)
    train, held, held_pairs = load_user_pairs(cfg, embedder, progress)
    if cfg.max_context > cfg.num_targets:
        raise ConfigError("--max_context must not exceed --num_targets (the context is drawn from the targets)")
    np_cfg = NPConfig(
        input_dim=embedder.dim,
        hidden_dim=cfg.hidden_dim,
        latent_dim=cfg.hidden_dim,
        num_heads=cfg.num_heads,
        latent=cfg.latent,
    )
    model = NPBTL(np_cfg)
    sampler = TaskSampler(train, cfg.num_targets, cfg.min_context, cfg.max_context, seed=cfg.seed)
    stats = train_tasks(
        model,
        sampler,
        cfg.max_steps,
        cfg.batch_tasks,
        cfg.learning_rate,
        cfg.beta_kl,
        progress=lambda step, loss: progress(f"step {step}/{cfg.max_steps} loss {loss:.4f}"),
    )
    accuracy = {}
    if held:
        ks = [k for k in cfg.eval_context_sizes if all(len(u) >= k + 1 for u in held.values())]
        n_targets = max(1, min(20, min(len(u) for u in held.values()) - max(ks, default=0)))
        accuracy = accuracy_by_context_size(model, held, ks, repeats=200, num_targets=n_targets, seed=cfg.seed)
        progress("held-out accuracy by context size: " + ", ".join(f"k={k}: {a:.1f}%" for k, a in accuracy.items()))
    accuracy_extra = {"eval_accuracy_by_k": {str(k): round(a, 2) for k, a in accuracy.items()}}
    return save_pairwise_reward_model("npbtl", model, np_cfg, WEIGHTS, cfg, embedder, train, held_pairs, stats,
                                      accuracy_extra, progress)  # fmt: skip


def run(argv: Sequence[str]) -> int:
    cfg = parse_config(NPBTLConfig, argv, prog="pluralign train reward-model --type npbtl")
    train_npbtl(cfg)
    return 0
