"""Neural-process building blocks shared by NP-BTL (reward model) and NP-DPO (policy), METHODS.md §5.

- :class:`ContextEncoder`: a user's choices (chosen, rejected feature pairs) -> latent z. Each pair is
  ``concat(chosen, rejected)`` -> Linear -> hidden, then multi-head self-attention over the set, SUM
  aggregation (so an empty context gives a zero vector and thus a learnt "default user"), then an MLP
  256 -> 256 -> 256 (two linear layers, as the reference's ``MLP(num_hidden=2)``).
  With ``latent=True`` it outputs a Gaussian q(z | C) and samples z (the optional latent path).
- :class:`TargetEncoder`: one option's features -> hidden (MLP d -> 256 -> 256).
- :class:`RewardDecoder`: ``[h; z]`` -> scalar reward (MLP 512 -> 256 -> 1 with batch norm: two linear
  layers after the concatenation, as the paper and its reference code).
- :class:`NPBTL`: the three together (the context-free baseline is :class:`pluralign.objectives.learned.btl.BTL`).

Contexts are batched as ``(B, K, 2, d)`` tensors with a ``(B, K)`` boolean mask (True = a real pair);
K may be 0. Models saved before the paper's layer counts were adopted (three linear layers in the decoder
and the context head) load with ``paper_layers=False``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes: list[int], batch_norm: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them (and BatchNorm before each ReLU when asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class NPConfig:
    """Sizes of the NP modules (saved as JSON next to the safetensors weights)."""

    input_dim: int
    hidden_dim: int = 256
    latent_dim: int = 256
    num_heads: int = 8
    latent: bool = False  # optional latent path: q(z|C) Gaussian, z sampled in training
    paper_layers: bool = True  # decoder 512 -> 256 -> 1 and context head 256 -> 256 -> 256 (False: one more layer)
    decoder: str = "mlp"  # NP-BTL's reward given z: "mlp" (the paper's) or "bilinear" (r = w.x + (V x).z)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> NPConfig:
        data = json.loads(Path(path).read_text())
        data.setdefault("paper_layers", False)  # saved before the field existed: the older, deeper MLPs
        return cls(**data)


class ContextEncoder(nn.Module):
    """Set of (chosen, rejected) feature pairs -> z (deterministic), or q(z|C) = N(mu, sigma) (latent path)."""

    def __init__(self, cfg: NPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pair_proj = nn.Linear(2 * cfg.input_dim, cfg.hidden_dim)
        self.attention = nn.MultiheadAttention(cfg.hidden_dim, cfg.num_heads, batch_first=True)
        out = cfg.latent_dim * (2 if cfg.latent else 1)
        extra = [] if cfg.paper_layers else [cfg.hidden_dim]
        self.head = mlp([cfg.hidden_dim, cfg.hidden_dim, *extra, out])

    def aggregate(self, pairs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, K, 2, d) pairs and (B, K) mask -> (B, hidden) sum over the attended set (zeros when K = 0)."""
        b, k = mask.shape
        if k == 0:
            return pairs.new_zeros(b, self.cfg.hidden_dim)
        x = self.pair_proj(pairs.reshape(b, k, -1))
        # Additive key mask; -1e9 rather than -inf so a row with no real pair stays finite (it is zeroed below).
        key_mask = torch.zeros(b, k, dtype=x.dtype, device=x.device).masked_fill(~mask, -1e9)
        attended, _ = self.attention(x, x, x, key_padding_mask=key_mask, need_weights=False)
        return (attended * mask.unsqueeze(-1).to(x.dtype)).sum(dim=1)

    def distribution(self, pairs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, std) of q(z|C); std is None on the deterministic path."""
        h = self.head(self.aggregate(pairs, mask))
        if not self.cfg.latent:
            return h, None
        mu, raw = h.chunk(2, dim=-1)
        return mu, 0.01 + 0.99 * F.softplus(raw)

    def forward(self, pairs: torch.Tensor, mask: torch.Tensor, sample: bool = False) -> torch.Tensor:
        mu, std = self.distribution(pairs, mask)
        if std is None or not sample:
            return mu
        return mu + std * torch.randn_like(std)


class TargetEncoder(nn.Module):
    """One option's features -> hidden representation (MLP d -> 256 -> 256)."""

    def __init__(self, cfg: NPConfig) -> None:
        super().__init__()
        self.net = mlp([cfg.input_dim, cfg.hidden_dim, cfg.hidden_dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RewardDecoder(nn.Module):
    """``[h; z]`` (or ``h`` alone when ``latent_dim`` is 0) -> scalar reward, MLP with batch norm
    (``paper_layers``: (hidden + latent) -> hidden -> 1, else one more hidden layer)."""

    def __init__(self, hidden_dim: int, latent_dim: int, paper_layers: bool = True) -> None:
        super().__init__()
        extra = [] if paper_layers else [hidden_dim]
        self.net = mlp([hidden_dim + latent_dim, hidden_dim, *extra, 1], batch_norm=True)

    def forward(self, h: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """h: (..., hidden), z: broadcastable (..., latent) -> rewards (...)."""
        if z is not None:
            lead = torch.broadcast_shapes(h.shape[:-1], z.shape[:-1])
            h = torch.cat([h.expand(*lead, h.shape[-1]), z.expand(*lead, z.shape[-1])], dim=-1)
        shape = h.shape[:-1]
        return self.net(h.reshape(-1, h.shape[-1])).reshape(shape)


class NPBTL(nn.Module):
    """Heterogeneous Bradley-Terry: r(x, y; z) with z inferred from the user's context choices."""

    def __init__(self, cfg: NPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.context_encoder = ContextEncoder(cfg)
        if cfg.decoder == "bilinear":
            # r(x; z) = w.x + (V x).z: a linear Bradley-Terry reward (which generalises from a few hundred real
            # pairs, where the MLP memorises them) whose weights the user's z shifts; V starts at zero, so an
            # untrained context changes nothing and the empty context is a learnt linear default user
            self.linear = nn.Linear(cfg.input_dim, 1, bias=False)
            self.modulation = nn.Linear(cfg.input_dim, cfg.latent_dim, bias=False)
            nn.init.zeros_(self.modulation.weight)
        elif cfg.decoder == "mlp":
            self.target_encoder = TargetEncoder(cfg)
            self.decoder = RewardDecoder(cfg.hidden_dim, cfg.latent_dim, cfg.paper_layers)
        else:
            raise ValueError(f"decoder must be mlp or bilinear, got {cfg.decoder!r}")

    def rewards(self, options: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """options: (B, T, d) features, z: (B, latent) -> (B, T) rewards."""
        if self.cfg.decoder == "bilinear":
            return self.linear(options).squeeze(-1) + (self.modulation(options) * z.unsqueeze(1)).sum(-1)
        return self.decoder(self.target_encoder(options), z.unsqueeze(1))

    def forward(
        self, context: torch.Tensor, context_mask: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor
    ) -> torch.Tensor:
        """Log-likelihood margins r(chosen) - r(rejected), shape (B, T), for targets given each row's context."""
        z = self.context_encoder(context, context_mask, sample=self.training)
        t = chosen.shape[1]
        r = self.rewards(torch.cat([chosen, rejected], dim=1), z)
        return r[:, :t] - r[:, t:]

    def kl_term(
        self, context: torch.Tensor, context_mask: torch.Tensor, target: torch.Tensor, target_mask: torch.Tensor
    ) -> torch.Tensor:
        """KL(q(z|C) || q(z|T)) per row (latent path only; the target set includes the context).

        As the reference's loss: both distributions come from the same encoder and both get gradients
        (no stop-gradient on q(z|T)); summed over latent dimensions.
        """
        mu_c, std_c = self.context_encoder.distribution(context, context_mask)
        mu_t, std_t = self.context_encoder.distribution(target, target_mask)
        if std_c is None:
            return mu_c.new_zeros(mu_c.shape[0])
        q_c = torch.distributions.Normal(mu_c, std_c)
        q_t = torch.distributions.Normal(mu_t, std_t)
        return torch.distributions.kl_divergence(q_c, q_t).sum(-1)


def save_module(module: nn.Module, cfg: NPConfig, directory: str | Path, stem: str) -> None:
    """``<stem>.safetensors`` (weights and batch-norm statistics) plus ``<stem>.json`` (sizes)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, directory / f"{stem}.safetensors"
    )
    cfg.save(directory / f"{stem}.json")


def load_module(cls: type[nn.Module], directory: str | Path, stem: str) -> nn.Module:
    """Rebuild ``cls(cfg)`` from :func:`save_module`'s files, in eval mode."""
    from safetensors.torch import load_file

    from pluralign.errors import ModelNotFoundError

    directory = Path(directory)
    if not (directory / f"{stem}.safetensors").is_file():
        raise ModelNotFoundError(f"{directory} has no {stem}.safetensors; it was not saved by this pluralign method")
    module = cls(NPConfig.load(directory / f"{stem}.json"))
    module.load_state_dict(load_file(directory / f"{stem}.safetensors"))
    return module.eval()
