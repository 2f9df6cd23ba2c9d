"""MOSLIM's reward mapping (METHODS.md §2): per-head class probabilities -> one scalar reward.

    r = (1/k) * sum_i  m_i * (p_i[t_i] - mean_i) / std_i

p_i is head i's class distribution, t_i the intensity the prompt asks for, k the number of objectives and
m_i the mask (1 iff the prompt specifies objective i) or, in the weighted generalisation, a weight w_i.
Where mean_i/std_i come from is a choice (``stats``):

- ``"head"``: statistics of p_i[c] for each class c over the reward model's held-out split (measured when
  the reward model was trained, saved in its ``multihead.json``), so a rare extreme class is judged
  against what the head usually gives that class;
- ``"batch"``: running statistics of p_i[t_i] over every specified sample seen so far in training
  (updated with the current batch before it is normalised);
- ``"none"``: mean 0, std 1 (the raw probability of the asked-for class).

This module also turns preference weights into intensity targets for inference (:func:`preference_to_levels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pluralign.errors import ConfigError, PreferenceError
from pluralign.preferences.rewards import preference_to_rewards

STATS_MODES = ("head", "batch", "none")
LEVEL_MAPPINGS = ("linear", "linf", "l2")
ZERO_WEIGHT = ("unspecified", "lowest")


def moslim_reward(
    probs: Sequence[np.ndarray],
    targets: np.ndarray,
    weights: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
) -> np.ndarray:
    """The scalar reward per sample.

    ``probs``: per head an (N, K_i) array; ``targets``: (N, k) intensity indices (any value where the
    weight is 0); ``weights``: (N, k) mask (0/1) or weights; ``mean``/``std``: (N, k) statistics of
    p_i[t_i]. Returns an (N,) array.
    """
    targets = np.asarray(targets)
    weights = np.asarray(weights, dtype=np.float64)
    k = len(probs)
    if targets.shape != weights.shape or targets.shape[1] != k:
        raise ValueError(f"targets {targets.shape} and weights {weights.shape} must both be (N, {k})")
    chosen = np.zeros(weights.shape, dtype=np.float64)
    for i, p in enumerate(probs):
        t = np.where(weights[:, i] != 0, targets[:, i], 0).astype(np.int64)
        if ((t < 0) | (t >= p.shape[1])).any():
            raise ValueError(f"a target of head {i} is outside 0..{p.shape[1] - 1}")
        chosen[:, i] = p[np.arange(p.shape[0]), t]
    return (weights * (chosen - mean) / std).sum(axis=1) / k


class RewardMapping:
    """Maps class probabilities, targets and masks to MOSLIM's scalar reward, holding the statistics.

    ``class_stats``: ``{head: [{"mean", "std"} per class]}`` in objective order (needed for ``"head"``).
    With ``"batch"``, :meth:`__call__` keeps running per-head moments across calls.
    """

    def __init__(
        self,
        objectives: Sequence[str],
        num_classes: Sequence[int],
        stats: str = "head",
        class_stats: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
        min_std: float = 1e-3,
    ) -> None:
        if stats not in STATS_MODES:
            raise ConfigError(f"stats {stats!r} is not one of {STATS_MODES}")
        self.objectives = list(objectives)
        self.num_classes = [int(k) for k in num_classes]
        self.stats = stats
        self.min_std = min_std
        if stats == "head":
            missing = [n for n in self.objectives if not class_stats or n not in class_stats]
            if missing:
                raise ConfigError(
                    f"stats='head' needs the reward model's class statistics for head {missing[0]!r}; "
                    "retrain the reward model or use stats=batch"
                )
            self.class_mean = [np.array([c["mean"] for c in class_stats[n]]) for n in self.objectives]
            self.class_std = [
                np.maximum(np.array([c["std"] for c in class_stats[n]]), min_std) for n in self.objectives
            ]
        k = len(self.objectives)
        self.count = np.zeros(k)
        self.running_mean = np.zeros(k)
        self.running_m2 = np.zeros(k)

    def _update(self, chosen: np.ndarray, weights: np.ndarray) -> None:
        """Chan et al.'s parallel update of the per-head moments with this batch's specified samples."""
        for i in range(chosen.shape[1]):
            x = chosen[weights[:, i] != 0, i]
            if x.size == 0:
                continue
            n_a, n_b = self.count[i], float(x.size)
            delta = x.mean() - self.running_mean[i]
            total = n_a + n_b
            self.running_mean[i] += delta * n_b / total
            self.running_m2[i] += ((x - x.mean()) ** 2).sum() + delta**2 * n_a * n_b / total
            self.count[i] = total

    def statistics(
        self, probs: Sequence[np.ndarray], targets: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) mean and std of p_i[t_i] under the chosen ``stats`` mode."""
        n, k = targets.shape
        if self.stats == "none":
            return np.zeros((n, k)), np.ones((n, k))
        if self.stats == "head":
            t = np.where(weights != 0, targets, 0).astype(np.int64)
            mean = np.stack([self.class_mean[i][t[:, i]] for i in range(k)], axis=1)
            std = np.stack([self.class_std[i][t[:, i]] for i in range(k)], axis=1)
            return mean, std
        chosen = np.stack(
            [
                p[np.arange(n), np.where(weights[:, i] != 0, targets[:, i], 0).astype(np.int64)]
                for i, p in enumerate(probs)
            ],
            axis=1,
        )
        self._update(chosen, weights)
        std = np.sqrt(self.running_m2 / np.maximum(self.count, 1.0))
        return np.tile(self.running_mean, (n, 1)), np.tile(np.maximum(std, self.min_std), (n, 1))

    def __call__(self, probs: Sequence[np.ndarray], targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
        targets = np.asarray(targets)
        weights = np.asarray(weights, dtype=np.float64)
        mean, std = self.statistics(probs, targets, weights)
        return moslim_reward(probs, targets, weights, mean, std)


def preference_to_levels(weights: Sequence[float], num_classes: Sequence[int], method: str = "linear") -> list[int]:
    """Intensity targets for preference weights: level_i = round(f_i(w) * (K_i - 1)) with RiC's maps
    (``linear``: f_i = w_i; ``linf``: min(1, K w_i); ``l2``: w_i / ||w||_2), so w_i = 0 asks for the lowest
    class and w_i = 1 for the highest."""
    if method not in LEVEL_MAPPINGS:
        raise PreferenceError(f"unknown preference mapping {method!r}; use one of {', '.join(LEVEL_MAPPINGS)}")
    k = np.asarray(num_classes, dtype=np.float64)
    levels = preference_to_rewards(weights, np.zeros_like(k), k - 1, method=method)
    return [int(np.floor(v + 0.5 + 1e-9)) for v in levels]


def preference_targets(
    weights: Sequence[float], num_classes: Sequence[int], method: str = "linear", zero_weight: str = "unspecified"
) -> list[int | None]:
    """What a preference asks a MOSLIM policy for: :func:`preference_to_levels`, except where w_i = 0.

    ``zero_weight="unspecified"`` (default) leaves such an objective out of the prompt (masked, as in
    training, where each objective is unspecified with ``unspecified_probability``): a weight of 0 means
    "I do not care about objective i", not "make it as bad as possible". ``"lowest"`` asks for its lowest
    level (e.g. the least harmless answer), which is what the plain level mapping gives.
    """
    if zero_weight not in ZERO_WEIGHT:
        raise ConfigError(f"zero_weight {zero_weight!r} is not one of {', '.join(ZERO_WEIGHT)}")
    levels: list[int | None] = list(preference_to_levels(weights, num_classes, method))
    if zero_weight == "unspecified":
        levels = [None if float(w) == 0.0 else lv for w, lv in zip(weights, levels)]
    return levels
