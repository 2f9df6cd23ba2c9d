"""From a dataset of users' choices to per-user-type feature tensors (NP-BTL, BTL and NP-DPO), and the options
that say how (:class:`PairwiseRewardDataConfig`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from pluralign.data.attributes import attribute_pairs, group_by_attribute
from pluralign.data.pairs import split_pairs
from pluralign.errors import ConfigError
from pluralign.models.embeddings import DEFAULT_ENCODER, Embedder, default_layer


def make_embedder(cfg: PairwiseRewardDataConfig) -> Embedder:
    return Embedder(
        cfg.embedding_model,
        pooling=cfg.embedding_pooling,
        cache_dir=cfg.embedding_cache,
        max_length=cfg.max_length,
        trust_remote_code=cfg.trust_remote_code,
        layer=default_layer(cfg.embedding_model) if cfg.embedding_layer is None else cfg.embedding_layer,
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


class UserSplits(NamedTuple):
    """Feature pairs per user type: training, validation (empty without ``validation_fraction``) and held out,
    and the held-out pairs themselves."""

    train: dict[str, UserPairs]
    validation: dict[str, UserPairs]
    held: dict[str, UserPairs]
    held_pairs: list[dict[str, Any]]


def load_user_splits(
    cfg: PairwiseRewardDataConfig, embedder: Embedder, progress: Callable[[str], None] | None = None
) -> UserSplits:
    """Training, validation and held-out feature pairs per user type (attribute), split by pair id.

    The splits are by pair id across all user types (:func:`pluralign.data.pairs.split_pairs`): a pair held
    out for one type is held out for every type that chose on it. ``cfg.validation_fraction`` of the
    training pairs (again by pair id) is set aside for early stopping. A plain pairs file is one user type.
    """
    if not cfg.dataset:
        raise ConfigError("--dataset is required: a pairs file (prompt/chosen/rejected), or ratings per attribute")
    if not 0 <= cfg.eval_fraction < 1:
        raise ConfigError(f"--eval_fraction must be in [0, 1), got {cfg.eval_fraction}")
    if not 0 <= cfg.validation_fraction < 0.9:
        raise ConfigError(f"--validation_fraction must be in [0, 0.9), got {cfg.validation_fraction}")
    pairs = choice_pairs(cfg)
    train_pairs, held_pairs = split_pairs(pairs, cfg.eval_fraction, cfg.seed)
    fit_pairs, val_pairs = split_pairs(train_pairs, cfg.validation_fraction, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train: dict[str, UserPairs] = {}
    validation: dict[str, UserPairs] = {}
    held: dict[str, UserPairs] = {}
    for part, out in ((fit_pairs, train), (val_pairs, validation), (held_pairs, held)):
        for name, group in group_by_attribute(part).items():
            order = rng.permutation(len(group))
            out[name] = embed_pairs(embedder, [group[i] for i in order], progress)
    for name in train:
        if progress:
            progress(f"user type {name!r}: {len(train[name])} training pairs, {len(validation.get(name, ()))} for "
                     f"validation, {len(held.get(name, ()))} held out")  # fmt: skip
    return UserSplits(train, validation, held, held_pairs)


def load_user_pairs(
    cfg: PairwiseRewardDataConfig, embedder: Embedder, progress: Callable[[str], None] | None = None
) -> tuple[dict[str, UserPairs], dict[str, UserPairs], list[dict[str, Any]]]:
    """``(train, eval)`` feature pairs per user type and the held-out pairs (:func:`load_user_splits`)."""
    splits = load_user_splits(cfg, embedder, progress)
    return splits.train, splits.held, splits.held_pairs


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
    embedding_pooling: str = field(
        default="auto", metadata={"help": "auto | mean (sentence encoder) | last (LM) | response (mean over its tokens)"}
    )
    embedding_layer: int | None = field(
        default=None,
        metadata={"help": "hidden state pooled: -1 the last layer, k the output of block k (0: embeddings); "
                  "default: 4 for the default all-MiniLM-L6-v2 (measured), the last layer of any other model"},
    )  # fmt: skip
    embedding_cache: str | None = field(default=None, metadata={"help": "cache folder (default ~/.cache/pluralign)"})
    max_length: int = field(default=256, metadata={"help": "token limit of an embedded (prompt, response)"})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of the pairs held out (split by pair, shared by all user types)"}
    )
    hidden_dim: int = 256
    learning_rate: float = 1e-4
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (regularises the heads)"})
    batch_tasks: int = field(default=64, metadata={"help": "tasks per batch (one user type each)"})
    num_targets: int = field(default=20, metadata={"help": "target pairs per task"})
    max_steps: int = 1000
    validation_fraction: float = field(
        default=0.0,
        metadata={"help": "share of the training pairs (by pair) held back to keep the best step and stop early"},
    )
    eval_every: int = field(default=50, metadata={"help": "steps between validation checks"})
    early_stopping_patience: int = field(default=5, metadata={"help": "checks without improvement before stopping"})
    seed: int = 0
    trust_remote_code: bool = False



@dataclass
class UserPairs:
    """One user type's choices as features: ``chosen[i]`` was preferred to ``rejected[i]``; both (N, d)."""

    chosen: torch.Tensor
    rejected: torch.Tensor

    def __len__(self) -> int:
        return int(self.chosen.shape[0])


def choice_pairs(cfg: Any) -> list[dict[str, Any]]:
    """The users' choices of ``cfg.dataset`` as pairs labelled by attribute (the user type), as ``cfg`` selects."""
    return attribute_pairs(
        cfg.dataset,
        attributes=cfg.attributes or None,
        format=cfg.format,
        conflicting_only=cfg.conflicting_only,
        prompt_column=cfg.prompt_column,
        skip_invalid=getattr(cfg, "skip_invalid_pairs", False),
    )
