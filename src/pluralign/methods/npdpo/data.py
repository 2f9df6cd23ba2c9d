"""NP-DPO training rows: a target pair of one user type plus the indices of k other pairs of that type.

Context features come from a frozen :class:`~pluralign.models.embeddings.Embedder` and live in one table
(``(P, 2, d)``: chosen and rejected of every pair); rows carry ``context_ids`` into it, and the collator
gathers them, so each row stays small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

from pluralign.errors import DataError
from pluralign.training.user_pairs import embed_pairs

CONTEXT_COLUMN = "context_ids"


def pair_table(embedder, groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[list[dict], torch.Tensor]:
    """All pairs in one list (with their user type) and their (P, 2, d) features."""
    pairs = [dict(p, attribute=name) for name, group in groups.items() for p in group]
    feats = embed_pairs(embedder, pairs)
    return pairs, torch.stack([feats.chosen, feats.rejected], dim=1)


def training_rows(
    pairs: Sequence[Mapping[str, Any]],
    min_context: int,
    max_context: int,
    contexts_per_pair: int = 1,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``{"prompt", "chosen", "rejected", "context_ids"}`` rows; contexts never contain their own target."""
    by_type: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_type.setdefault(str(p["attribute"]), []).append(i)
    small = [t for t, ids in by_type.items() if len(ids) <= max_context]
    if small:
        raise DataError(
            f"user type {small[0]!r} has {len(by_type[small[0]])} pairs; need more than --max_context={max_context}"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for ids in by_type.values():
        pool = np.asarray(ids)
        for pos, i in enumerate(ids):
            others = np.delete(pool, pos)
            for _ in range(contexts_per_pair):
                k = int(rng.integers(min_context, max_context + 1))
                ctx = rng.choice(others, size=k, replace=False).tolist() if k else []
                p = pairs[i]
                rows.append(
                    {"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"], CONTEXT_COLUMN: ctx}
                )
    rng.shuffle(rows)
    return rows


def gather_context(table: torch.Tensor, context_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 2, d) padded context features and their (B, K) mask from per-row index lists."""
    k = max((len(c) for c in context_ids), default=0)
    b, d = len(context_ids), table.shape[-1]
    feats = torch.zeros(b, k, 2, d, dtype=table.dtype)
    mask = torch.zeros(b, k, dtype=torch.bool)
    for r, ids in enumerate(context_ids):
        if len(ids):
            feats[r, : len(ids)] = table[torch.as_tensor(list(ids), dtype=torch.long)]
            mask[r, : len(ids)] = True
    return feats, mask


@dataclass
class ContextPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator plus ``np_context`` (B, K, 2, d) and ``np_context_mask`` (B, K)."""

    table: torch.Tensor | None = None

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        out["np_context"], out["np_context_mask"] = gather_context(
            self.table, [e.get(CONTEXT_COLUMN) or [] for e in examples]
        )
        return out
