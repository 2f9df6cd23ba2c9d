"""From a dataset of users' choices to per-user-type feature tensors (shared by NP-BTL and BTL training)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pluralign.data.attributes import attribute_pairs, group_by_attribute
from pluralign.embeddings import Embedder
from pluralign.errors import ConfigError
from pluralign.methods.npbtl.config import PairwiseRewardDataConfig
from pluralign.methods.npbtl.training import UserPairs


def make_embedder(cfg: PairwiseRewardDataConfig) -> Embedder:
    return Embedder(
        cfg.embedding_model,
        pooling=cfg.embedding_pooling,
        cache_dir=cfg.embedding_cache,
        max_length=cfg.max_length,
        trust_remote_code=cfg.trust_remote_code,
    )


def embed_pairs(
    embedder: Embedder, pairs: list[dict[str, Any]], progress: Callable[[str], None] | None = None
) -> UserPairs:
    """Features of each pair's chosen and rejected responses (one embedding call for all of them)."""
    prompts = [p["prompt"] for p in pairs]
    vecs = embedder.embed(
        prompts + prompts,
        [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs],
        progress=(lambda d, t: progress(f"embedded {d}/{t}")) if progress else None,
    )
    n = len(pairs)
    return UserPairs(torch.from_numpy(vecs[:n]), torch.from_numpy(vecs[n:]))


def load_user_pairs(
    cfg: PairwiseRewardDataConfig, embedder: Embedder, progress: Callable[[str], None] | None = None
) -> tuple[dict[str, UserPairs], dict[str, UserPairs]]:
    """``(train, eval)`` feature pairs per user type (attribute), split per type with ``eval_fraction``."""
    if not cfg.dataset:
        raise ConfigError("--dataset is required: a file or hub id with pairs by attribute, or per-attribute ratings")
    if not 0 <= cfg.eval_fraction < 1:
        raise ConfigError(f"--eval_fraction must be in [0, 1), got {cfg.eval_fraction}")
    pairs = attribute_pairs(
        cfg.dataset,
        attributes=cfg.attributes or None,
        format=cfg.format,
        conflicting_only=cfg.conflicting_only,
        prompt_column=cfg.prompt_column,
    )
    rng = np.random.default_rng(cfg.seed)
    train: dict[str, UserPairs] = {}
    held: dict[str, UserPairs] = {}
    for name, group in group_by_attribute(pairs).items():
        order = rng.permutation(len(group))
        n_eval = int(round(cfg.eval_fraction * len(group)))
        feats = embed_pairs(embedder, [group[i] for i in order], progress)
        train[name] = UserPairs(feats.chosen[n_eval:], feats.rejected[n_eval:])
        if n_eval:
            held[name] = UserPairs(feats.chosen[:n_eval], feats.rejected[:n_eval])
        if progress:
            progress(f"user type {name!r}: {len(group) - n_eval} training pairs, {n_eval} held out")
    return train, held


def context_tensor(context: Any, embedder: Embedder, dim: int) -> torch.Tensor:
    """A user's choices as the context encoder's input: (1, n, 2, dim) embeddings of (chosen, rejected);
    ``None`` (no choices yet) gives an empty set, i.e. the learnt default user."""
    from pluralign.preference_inference import validate_context

    if context is None:
        return torch.zeros(1, 0, 2, dim)
    choices = validate_context(context)
    prompts = [c[0] for c in choices]
    vecs = torch.from_numpy(embedder.embed(prompts + prompts, [c[1] for c in choices] + [c[2] for c in choices]))
    if vecs.shape[1] != dim:
        raise ConfigError(f"embedding size {vecs.shape[1]} does not match the model's {dim}; same encoder?")
    n = len(choices)
    return torch.stack([vecs[:n], vecs[n:]], dim=1).unsqueeze(0)
