"""A trained ensemble: ``score = mean_k (r_k - mean_k) / std_k`` over its member reward models.

Members are loaded with the ``load_member`` that :func:`pluralign.objectives.trained.load_reward_model` passes
in (any type, an ensemble included; no reward-model type imports another); ``mean_k`` / ``std_k`` are member k's score statistics on the ensemble's training pairs, so
every member counts alike whatever the scale of its rewards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError, PreferenceError
from pluralign.models.manifest import Manifest


class EnsembleRewardModel:
    """The mean of the members' z-scores; see the module docstring."""

    def __init__(
        self,
        members: Sequence[dict[str, Any]],
        manifest: Manifest,
        model_dir: Path,
        load_member: Callable[[str], Any],
    ) -> None:
        if not members:
            raise ConfigError(f"{model_dir}: the ensemble lists no members")
        self.members = [dict(m) for m in members]
        self.manifest = manifest
        self.model_dir = model_dir
        self.load_member = load_member

    @cached_property
    def models(self) -> list[Any]:
        return [self.load_member(m["path"]) for m in self.members]

    def member_scores(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """(members, N) raw scores."""
        return np.stack([np.asarray(rm.score(list(prompts), list(responses)), dtype=np.float64) for rm in self.models])

    def zscores(self, raw: np.ndarray) -> np.ndarray:
        mean = np.array([m["mean"] for m in self.members])[:, None]
        std = np.array([m["std"] for m in self.members])[:, None]
        return (raw - mean) / std

    def score(
        self, prompts: Sequence[Any], responses: Sequence[Any], context: Sequence[Any] | None = None
    ) -> list[float]:
        if context is not None:
            raise PreferenceError("an ensemble reward model takes no context; score an NP-BTL model on its own")
        if len(prompts) != len(responses):
            raise ConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        return self.zscores(self.member_scores(prompts, responses)).mean(0).tolist()


def load(model_dir: Path, manifest: Manifest, load_member: Callable[[str], Any]) -> EnsembleRewardModel:
    return EnsembleRewardModel(manifest.extra.get("members", []), manifest, Path(model_dir), load_member)
