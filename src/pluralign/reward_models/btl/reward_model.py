"""A trained BTL reward model: ``score(prompts, responses)``; it is context-free by construction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pluralign.errors import ConfigError, PreferenceError
from pluralign.models.embeddings import Embedder
from pluralign.models.manifest import Manifest
from pluralign.models.neural_process import load_module
from pluralign.reward_models.btl.model import BTL
from pluralign.training.user_pairs import embedder_from_manifest

WEIGHTS = "btl"


class BTLRewardModel:
    """r(x, y) for every user alike."""

    def __init__(self, model: BTL, embedder: Embedder, manifest: Manifest, model_dir: Path) -> None:
        self.model = model.eval()
        self.embedder = embedder
        self.manifest = manifest
        self.model_dir = model_dir

    @torch.no_grad()
    def score(
        self, prompts: Sequence[Any], responses: Sequence[Any], context: Sequence[Any] | None = None
    ) -> list[float]:
        if context is not None:
            raise PreferenceError("a BTL reward model cannot use a context; train --type npbtl for few-shot users")
        if len(prompts) != len(responses):
            raise ConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        feats = torch.from_numpy(self.embedder.embed(list(prompts), list(responses)))
        return self.model.rewards(feats).tolist()


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> BTLRewardModel:
    model = load_module(BTL, model_dir, WEIGHTS)
    return BTLRewardModel(model, embedder_from_manifest(manifest, **kwargs), manifest, Path(model_dir))
