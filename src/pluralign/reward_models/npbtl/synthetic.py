"""The NP-BTL paper's synthetic users (METHODS.md §5): options y ~ U[0, 1], two hidden user types.

Type 0: r(y) = y if y < 0.5 else 2y (prefers larger values); type 1: r(y) = y if y < 0.5 else 1 - y
(prefers values near 0.5). Choices are deterministic. The draws follow the paper's generator (NumPy seed 0,
``rand(N, 2)`` then an 80/10/10 split by ``choice``), so seed 0 gives the very pairs the paper used.
"""

from __future__ import annotations

import numpy as np
import torch

from pluralign.training.user_pairs import UserPairs

SPLITS = ("train", "val", "test")


def reward(y: np.ndarray, user_type: int) -> np.ndarray:
    """The hidden reward of option values ``y`` for user type 0 or 1."""
    if user_type == 0:
        return np.where(y < 0.5, y, 2 * y)
    return np.where(y < 0.5, y, 1 - y)


def synthetic_users(n_pairs: int = 20000, seed: int = 0) -> dict[str, dict[str, UserPairs]]:
    """``{split: {"type0": UserPairs, "type1": UserPairs}}`` with 1-d features (the option value itself)."""
    rng = np.random.RandomState(seed)
    options = rng.rand(n_pairs, 2)
    split = rng.choice(list(SPLITS), n_pairs, p=[0.8, 0.1, 0.1])
    out: dict[str, dict[str, UserPairs]] = {s: {} for s in SPLITS}
    for user_type in (0, 1):
        r = reward(options, user_type).astype(np.float32)
        b_wins = r[:, 1] > r[:, 0]
        chosen = np.where(b_wins, options[:, 1], options[:, 0]).astype(np.float32)[:, None]
        rejected = np.where(b_wins, options[:, 0], options[:, 1]).astype(np.float32)[:, None]
        for s in SPLITS:
            m = split == s
            out[s][f"type{user_type}"] = UserPairs(torch.from_numpy(chosen[m]), torch.from_numpy(rejected[m]))
    return out


def oracle_accuracy(
    users: dict[str, UserPairs], ks: list[int], repeats: int = 1000, num_targets: int = 20, seed: int = 0
) -> dict[int, float]:
    """Bayes-optimal accuracy (%) given k context choices, by the protocol of ``accuracy_by_context_size``.

    The oracle knows both reward functions: the posterior keeps the types consistent with every context
    choice, and a target is predicted by the posterior vote (a tie counts as half right).
    """
    rng = np.random.default_rng(seed)
    out: dict[int, float] = {}
    for k in ks:
        scores = []
        for u in users.values():
            c, r = u.chosen[:, 0].numpy(), u.rejected[:, 0].numpy()
            prefers = np.stack([reward(c, t) > reward(r, t) for t in (0, 1)])  # (2, n): type t agrees
            for _ in range(repeats):
                idx = rng.permutation(len(c))[: k + num_targets]
                ctx, tgt = idx[:k], idx[k:]
                posterior = prefers[:, ctx].all(axis=1).astype(float)
                vote = (posterior[:, None] * prefers[:, tgt]).sum(0) / posterior.sum()
                scores.append(np.where(vote > 0.5, 1.0, np.where(vote == 0.5, 0.5, 0.0)).mean())
        out[k] = 100.0 * float(np.mean(scores))
    return out
