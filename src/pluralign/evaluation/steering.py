"""Steering per prompt, not only on average, and a balanced preference against the starting model.

A front's means can move with the weights while most prompts get the same answer at both ends (a few
prompts that move a lot carry the mean). :func:`steering_share` counts the prompts that move their way;
:func:`against_base` says whether a preference point is at least as good as the starting model on
every objective at once (a model that only trades one objective for another is half a result).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pluralign.evaluation.front import STARTING_FRONTS, Front


def steering_share(front: Front, objective: int) -> float | None:
    """Share of prompts whose score on objective ``objective`` is strictly higher at w_i = 1 than at w_i = 0.

    With K > 2 objectives several grid points have w_i = 0: a prompt's score there is their mean. ``None``
    when the front has no per-prompt scores or its grid lacks either end."""
    if not front.prompt_scores:
        return None
    w = front.weights
    top = [g for g in range(len(w)) if np.isclose(w[g, objective], 1.0)]
    bottom = [g for g in range(len(w)) if np.isclose(w[g, objective], 0.0)]
    if not top or not bottom:
        return None
    s = np.asarray(front.prompt_scores, dtype=float)  # (points, prompts, objectives)
    return float((s[top, :, objective].mean(0) > s[bottom, :, objective].mean(0)).mean())


def against_base(front: Front, base: Front, names: Sequence[str], preference: Sequence[float]) -> dict[str, Any] | None:
    """``front``'s mean scores at ``preference`` beside the starting model's; ``None`` if the grid lacks it."""
    for point in front.points:
        if np.allclose(point["preference"], preference):
            ours, theirs = point["scores"], base.points[0]["scores"]
            at_least = {n: bool(a >= b) for n, a, b in zip(names, ours, theirs)}
            return {
                "preference": [float(x) for x in preference],
                "scores": dict(zip(names, ours)),
                "base": dict(zip(names, theirs)),
                "at_least_base": at_least,
                "both_at_least_base": all(at_least.values()),
            }
    return None


def steering_summary(fronts: Sequence[Front], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per steerable front: the per-prompt steering share of each objective, and the balanced point
    (equal weights) against the starting model's front."""
    base = next((f for f in fronts if f.method in STARTING_FRONTS), None)
    balanced = [1.0 / len(names)] * len(names)
    out: dict[str, dict[str, Any]] = {}
    for f in fronts:
        if f.method in STARTING_FRONTS:
            continue
        out[f.method] = {
            "steering_share": {n: steering_share(f, i) for i, n in enumerate(names)},
            "prompts": len(f.prompt_scores[0]) if f.prompt_scores else 0,
            "balanced_vs_base": against_base(f, base, names, balanced) if base is not None else None,
        }
    return out
