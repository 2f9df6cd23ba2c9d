"""The context-free Bradley-Terry reward model on frozen features (the baseline NP-BTL is compared with), and
the trained one as a scorer: ``score(prompts, responses)``, context-free by construction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pluralign.errors import ConfigError, PreferenceError
from pluralign.models.embeddings import Embedder, embedder_from_manifest
from pluralign.models.manifest import Manifest
from pluralign.models.neural_process import NPConfig, RewardDecoder, TargetEncoder, load_module

WEIGHTS = "btl"


class BTL(nn.Module):
    """r(x, y) = decoder(target_encoder(features)); P(a > b) = sigmoid(r(a) - r(b)) for every user alike.

    ``hidden_dim=0`` makes r a linear function of the features (a logistic Bradley-Terry head): on a few
    hundred real pairs it generalises better than the MLP, which memorises them.
    """

    def __init__(self, cfg: NPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.hidden_dim == 0:
            self.linear = nn.Linear(cfg.input_dim, 1)
        else:
            self.target_encoder = TargetEncoder(cfg)
            self.decoder = RewardDecoder(cfg.hidden_dim, 0, cfg.paper_layers)

    def rewards(self, options: torch.Tensor) -> torch.Tensor:
        """options: (..., d) -> rewards (...)."""
        if self.cfg.hidden_dim == 0:
            return self.linear(options).squeeze(-1)
        return self.decoder(self.target_encoder(options))

    def forward(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        """Margins r(chosen) - r(rejected), shape (B, T)."""
        t = chosen.shape[1]
        r = self.rewards(torch.cat([chosen, rejected], dim=1))
        return r[:, :t] - r[:, t:]


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
