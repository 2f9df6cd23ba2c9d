"""A trained NP-BTL reward model: ``score(prompts, responses, context=[(prompt, chosen, rejected), ...])``.

The context is the user's own choices; z is inferred from them once per call and every response is scored
for that user. Without a context the model scores for its learnt default user (k = 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pluralign.errors import ConfigError
from pluralign.models.embeddings import Embedder, embedder_from_manifest
from pluralign.models.manifest import Manifest
from pluralign.models.neural_process import NPBTL, load_module
from pluralign.preferences.inference import context_tensor

WEIGHTS = "npbtl"


class NPBTLRewardModel:
    """r(x, y; z), z from the user's choices; see the module docstring."""

    def __init__(self, model: NPBTL, embedder: Embedder, manifest: Manifest, model_dir: Path) -> None:
        self.model = model.eval()
        self.embedder = embedder
        self.manifest = manifest
        self.model_dir = model_dir

    @property
    def user_types(self) -> list[str]:
        return list(self.manifest.objectives)

    @torch.no_grad()
    def latent(self, context: Sequence[Any] | None) -> torch.Tensor:
        """z (1, latent) for a user's choices (the default user when ``context`` is None)."""
        pairs = context_tensor(context, self.embedder, self.model.cfg.input_dim)
        return self.model.context_encoder(pairs, torch.ones(pairs.shape[:2], dtype=torch.bool))

    @torch.no_grad()
    def score(
        self, prompts: Sequence[Any], responses: Sequence[Any], context: Sequence[Any] | None = None
    ) -> list[float]:
        """Rewards of (prompt, response) pairs for the user whose choices are ``context``."""
        if len(prompts) != len(responses):
            raise ConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        z = self.latent(context)
        feats = torch.from_numpy(self.embedder.embed(list(prompts), list(responses)))
        return self.model.rewards(feats.unsqueeze(0), z)[0].tolist()


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> NPBTLRewardModel:
    model = load_module(NPBTL, model_dir, WEIGHTS)
    return NPBTLRewardModel(model, embedder_from_manifest(manifest, **kwargs), manifest, Path(model_dir))
