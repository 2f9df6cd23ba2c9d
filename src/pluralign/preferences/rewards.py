"""Preference-to-reward mappings (RiC, METHODS.md §1): the desired reward per objective for a preference vector.

``linf``, ``l2`` and ``linear`` map weights between each objective's low and high reward; ``quantile`` maps them to
quantiles of the training scores. RiC (text and images) writes the result into its reward tags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pluralign.errors import ConfigError, PreferenceError
from pluralign.preferences.weights import validate_weights

MAPPINGS = ("linf", "l2", "linear", "linf_mid")


def preference_to_rewards(
    weights: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    method: str = "linf",
    floor_at_middle: Sequence[bool] | None = None,
) -> np.ndarray:
    """Map preference weights to the desired rewards RiC writes into the prompt (METHODS.md §1).

    - ``linf`` (the paper's rule): f_i = lo_i + min(1, K w_i) (hi_i - lo_i)
    - ``l2``: f_i = lo_i + (w_i / ||w||_2) (hi_i - lo_i)
    - ``linear``: f_i = lo_i + w_i (hi_i - lo_i)
    - ``linf_mid``: f_i = m_i + min(1, K w_i) (hi_i - m_i), m_i = (lo_i + hi_i) / 2: ``linf`` above the middle,
      so a weight of 0 asks for an objective's middle, not its lowest (for objectives that do not conflict
      at their low end: on the hh world the least helpful answers are off-topic, not harmless)

    ``floor_at_middle`` (one flag per objective) does for the flagged objectives alone what ``linf_mid``
    does for all: their lowest desired reward is the middle of their bounds, so a weight of 0 asks for a
    typical level of that objective, not for its worst. Values are returned unrounded; the tag formatter
    rounds them like the training tags.
    """
    w = validate_weights(weights)
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    if lo.shape != w.shape or hi.shape != w.shape:
        raise PreferenceError(f"low/high must have {w.size} values, one per objective (got {lo.size} and {hi.size})")
    k = w.size
    if method == "linf_mid":
        method, floor_at_middle = "linf", [True] * k
    if floor_at_middle is not None:
        floor = np.asarray(floor_at_middle, dtype=bool)
        if floor.shape != w.shape:
            raise PreferenceError(f"floor_at_middle must have {w.size} flags, one per objective (got {floor.size})")
        lo = np.where(floor, (lo + hi) / 2, lo)
    if method == "linf":
        frac = np.minimum(1.0, k * w)
    elif method == "l2":
        frac = w / math.sqrt(float((w**2).sum()))
    elif method == "linear":
        frac = w
    else:
        raise PreferenceError(f"unknown mapping {method!r}; use one of {', '.join(MAPPINGS)}")
    return lo + frac * (hi - lo)




def middle_floor_flags(objectives: Sequence[str], floored: Sequence[str]) -> list[bool]:
    """One ``floor_at_middle`` flag per objective, from the names of the floored ones (a one-line
    ConfigError for a name that is not an objective)."""
    for name in floored:
        if name not in objectives:
            raise ConfigError(f"floor_at_middle {name!r} is not an objective here; use one of {', '.join(objectives)}")
    return [n in floored for n in objectives]

# RiC's diffusion mapping (ric_txt2img): desired rewards are quantiles of the training rewards.
QUANTILE_MAPPING = "quantile"


QUANTILE_TOP = 0.9999999


QUANTILE_TABLE_SIZE = 1001


def preference_to_quantiles(weights: Sequence[float], top: float = QUANTILE_TOP) -> np.ndarray:
    """Quantile levels RiC asks for at inference on diffusion models (METHODS.md §1).

    The dominant objective (largest weight, the first on ties) asks for its ``top``-quantile (0.9999999);
    every other objective i for its ``K * w_i``-quantile, capped at ``top``. So (0.5, 0.5) -> both at the
    top, one-hot -> (top, 0.0), and w_i = 0 -> the minimum of objective i.
    """
    w = validate_weights(weights)
    if not 0.0 < top <= 1.0:
        raise PreferenceError(f"top quantile must be in (0, 1], got {top}")
    levels = np.minimum(w.size * w, top)
    levels[int(np.argmax(w))] = top
    return levels


def quantile_table(values: Sequence[float], size: int = QUANTILE_TABLE_SIZE) -> list[float]:
    """``size`` evenly spaced quantiles (levels 0..1) of ``values``: enough to map any level later."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        raise PreferenceError("a quantile table needs at least one finite value")
    return [float(x) for x in np.quantile(v, np.linspace(0.0, 1.0, size))]


def preference_to_rewards_by_quantile(
    weights: Sequence[float], tables: Sequence[Sequence[float]], top: float = QUANTILE_TOP
) -> np.ndarray:
    """Desired rewards under the quantile mapping: objective i's value at level :func:`preference_to_quantiles`.

    ``tables[i]`` is :func:`quantile_table` of objective i's training rewards (z-scores for RiC's tags);
    levels between table entries are interpolated linearly, as ``numpy.quantile`` does between samples.
    """
    levels = preference_to_quantiles(weights, top)
    if len(tables) != levels.size:
        raise PreferenceError(f"got {len(tables)} quantile tables for {levels.size} objectives; give one per objective")
    out = []
    for level, table in zip(levels, tables):
        t = np.asarray(table, dtype=np.float64)
        out.append(float(np.interp(level, np.linspace(0.0, 1.0, t.size), t)))
    return np.asarray(out)
