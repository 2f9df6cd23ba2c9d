"""Prompt-centred rewards for RiC's tags (an option; the paper tags raw z-scored rewards).

A reward model trained on preference pairs (Bradley-Terry) is fixed only up to a constant per prompt: its
loss sees the difference of two responses to the same prompt, never a prompt's level. What it says about a
prompt on its own (a harmful request scores low whatever the answer) is whatever the architecture happened
to give, and the policy cannot change it. With ``center_rewards="prompt"`` every sample's z-rewards have
the mean over the offline responses to its prompt subtracted, so a tag says how a response ranks among
answers to the same request: the only thing an answer controls. Online generations are centred with the
same per-prompt means (their prompts are drawn from the offline data).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from pluralign.errors import ConfigError

CENTERINGS = ("none", "prompt")


def prompt_key(prompt: Any) -> str:
    """A hashable key for a text or chat-message prompt."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def prompt_means(prompts: Sequence[Any], z: np.ndarray) -> dict[str, np.ndarray]:
    """Per prompt, the mean z-reward vector of its rows in ``z`` ((N, K), row i answers ``prompts[i]``)."""
    z = np.asarray(z, dtype=float)
    rows: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        rows.setdefault(prompt_key(p), []).append(i)
    return {k: z[idx].mean(axis=0) for k, idx in rows.items()}


def centred(prompts: Sequence[Any], z: np.ndarray, means: dict[str, np.ndarray]) -> np.ndarray:
    """``z`` with each row's prompt mean subtracted; a prompt without offline responses is an error."""
    z = np.asarray(z, dtype=float)
    out = z.copy()
    for i, p in enumerate(prompts):
        key = prompt_key(p)
        if key not in means:
            raise ConfigError("center_rewards='prompt': a prompt has no offline responses to centre on; use center_rewards='none'")
        out[i] -= means[key]
    return out


def check_centering(kind: str) -> None:
    if kind not in CENTERINGS:
        raise ConfigError(f"center_rewards {kind!r} is not one of {', '.join(CENTERINGS)}")
