"""Multi-objective rejection sampling (METHODS.md §1, online stage): pure functions, unit-tested.

- :func:`sample_desired_rewards`: u ~ U[lo, hi]^K, keep the smallest coordinate, set the others to hi
  (aims generation at the Pareto frontier);
- :func:`mors_thresholds` / :func:`mors_accept`: keep a sample iff for SOME objective its z-score is at
  least that objective's ``quantile`` over the batch.
"""

from __future__ import annotations

import numpy as np


def sample_desired_rewards(n: int, low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    k = low.size
    u = rng.uniform(low, high, size=(n, k))
    # the coordinate that stays is the smallest in [0, 1] units, so objectives with other ranges are fair
    frac = (u - low) / np.where(high > low, high - low, 1.0)
    keep = frac.argmin(axis=1)
    out = np.tile(high, (n, 1))
    out[np.arange(n), keep] = u[np.arange(n), keep]
    return out


def mors_thresholds(z: np.ndarray, quantile: float = 0.7) -> np.ndarray:
    """Per-objective threshold: the ``quantile`` of each column of the (N, K) z-score matrix."""
    return np.quantile(np.asarray(z, dtype=float), quantile, axis=0)


def mors_accept(z: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean mask: rows at or above the threshold on at least one objective."""
    return (np.asarray(z, dtype=float) >= np.asarray(thresholds)[None, :]).any(axis=1)
