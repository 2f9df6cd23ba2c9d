"""Bounds of the desired rewards RiC asks for, online and at inference (METHODS.md §1).

- ``"data"`` (default): min and max of each objective's z-scores on the training data. The model is only
  ever asked for rewards it saw in its training tags, which matters when an objective is skewed or
  bounded (e.g. a length or a probability: the demo's conciseness spans about -2.4..+1.6 z).
- ``"gaussian"``: the reference implementation's bounds: min and max of 100,000 standard-normal draws,
  rounded to one decimal (about -4.3..+4.3), the same for every objective (``sample_goals`` and the
  evaluation's ``np.random.randn`` reference in YangRui2015/RiC). Asks for more than the data reached,
  which pushes towards the frontier when the z-scores are roughly Gaussian (reward-model logits).

The chosen bounds are stored in ``pluralign.json`` (``extra.desired_low`` / ``extra.desired_high``), so
inference uses exactly the bounds training used.
"""

from __future__ import annotations

import numpy as np

from pluralign.errors import ConfigError

BOUNDS = ("data", "gaussian")
GAUSSIAN_DRAWS = 100_000


def gaussian_bounds(k: int, seed: int = 0, draws: int = GAUSSIAN_DRAWS) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): min and max of ``draws`` N(0, 1) samples, one decimal, repeated for K objectives."""
    x = np.random.default_rng(seed).standard_normal(draws)
    return np.full(k, round(float(x.min()), 1)), np.full(k, round(float(x.max()), 1))


def desired_bounds(
    kind: str,
    data_low: np.ndarray,
    data_high: np.ndarray,
    low: float | None = None,
    high: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The per-objective (low, high) of desired z-rewards; explicit ``low``/``high`` override either kind."""
    if kind not in BOUNDS:
        raise ConfigError(f"reward_bounds {kind!r} is not one of {', '.join(BOUNDS)}")
    data_low, data_high = np.asarray(data_low, dtype=float), np.asarray(data_high, dtype=float)
    lo, hi = (data_low, data_high) if kind == "data" else gaussian_bounds(len(data_low), seed)
    lo = np.full_like(lo, low) if low is not None else lo
    hi = np.full_like(hi, high) if high is not None else hi
    if (hi < lo).any():
        raise ConfigError(f"desired-reward bounds are inverted (low {lo.tolist()} > high {hi.tolist()}); fix online_low/online_high")
    return lo, hi
