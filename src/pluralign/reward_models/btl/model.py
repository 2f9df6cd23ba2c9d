"""The context-free Bradley-Terry reward model on frozen features: the baseline NP-BTL is compared with."""

from __future__ import annotations

import torch
from torch import nn

from pluralign.models.neural_process import NPConfig, RewardDecoder, TargetEncoder


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
