"""Degenerate variants of responses (empty, cut off, one word repeated), for a reward model's training data.

RL samples such text, and a reward model that never saw it rates it arbitrarily: MOSLIM's policy on the
reviews world learned to answer an empty string, which the untrained head called "awful" (docs/moslim.md).
Scored by the world's own objectives, these rows teach the reward model what the real scorers say of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

KINDS = ("empty", "cut", "repeat")


def degenerate_responses(
    samples: Sequence[dict[str, Any]], fraction: float = 0.1, seed: int = 0, prefix: str = " "
) -> list[dict[str, Any]]:
    """``{"prompt", "response"}`` rows: for ``fraction`` of ``samples`` (drawn with ``seed``), the response
    emptied, cut after a random number of words, or one of its words repeated 2-20 times; ``prefix`` goes
    before a non-empty variant (the reviews world's responses start with a space, the chat worlds' do not)."""
    rng = random.Random(seed)
    rows = []
    for sample in rng.sample(list(samples), int(fraction * len(samples))):
        words = str(sample["response"]).split()
        kind = rng.choice(KINDS)
        if kind == "empty" or not words:
            text = ""
        elif kind == "cut":
            text = prefix + " ".join(words[: rng.randint(1, max(1, len(words) - 1))])
        else:
            text = prefix + " ".join([rng.choice(words)] * rng.randint(2, 20))
        rows.append({"prompt": sample["prompt"], "response": text})
    return rows
