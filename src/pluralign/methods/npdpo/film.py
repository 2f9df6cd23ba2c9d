"""FiLM conditioning of a causal LM on a latent z: every transformer block output h -> gamma(z) * h + beta(z).

gamma(z) = 1 + W_g z and beta(z) = W_b z are linear maps from z initialised at zero, so a fresh conditioner
leaves the model exactly as it was (METHODS.md §5). The conditioner holds the current z; forward hooks on
the blocks read it. With no z set the hooks do nothing, so the same model also runs unconditioned.
z may have one row (broadcast over the batch, e.g. for generation) or one row per sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from pluralign.errors import ConfigError


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a Hugging Face causal LM (GPT-2's ``h``, Llama's ``layers``, ...)."""
    config = getattr(model, "config", None)
    n = getattr(config, "num_hidden_layers", None) if config is not None else None
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    for m in candidates:
        if n is None or len(m) == n:
            return m
    raise ConfigError(f"cannot find the transformer blocks of {type(model).__name__}; FiLM needs a decoder stack")


@dataclass
class FiLMConfig:
    latent_dim: int
    hidden_size: int
    num_layers: int


class FiLM(nn.Module):
    """Per-block gamma/beta maps from z, and the hooks that apply them."""

    def __init__(self, cfg: FiLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gamma = nn.ModuleList(nn.Linear(cfg.latent_dim, cfg.hidden_size) for _ in range(cfg.num_layers))
        self.beta = nn.ModuleList(nn.Linear(cfg.latent_dim, cfg.hidden_size) for _ in range(cfg.num_layers))
        for lin in [*self.gamma, *self.beta]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self._z: torch.Tensor | None = None
        self._handles: list = []

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    @classmethod
    def for_model(cls, model: nn.Module, latent_dim: int) -> FiLM:
        blocks = transformer_blocks(model)
        return cls(FiLMConfig(latent_dim, int(model.config.hidden_size), len(blocks)))

    def attach(self, model: nn.Module) -> FiLM:
        """Register the hooks on ``model``'s blocks (once)."""
        self.detach()
        blocks = transformer_blocks(model)
        if len(blocks) != self.cfg.num_layers:
            raise ConfigError(f"FiLM was built for {self.cfg.num_layers} blocks but the model has {len(blocks)}")
        for i, block in enumerate(blocks):
            self._handles.append(block.register_forward_hook(self._hook(i)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, i: int):
        def hook(module: nn.Module, args: tuple, output):  # noqa: ANN202
            if self._z is None:
                return output
            hidden = output[0] if isinstance(output, tuple) else output
            z = self._z.to(hidden.dtype)
            gamma = (1.0 + self.gamma[i](z)).unsqueeze(1)  # (B or 1, 1, H)
            beta = self.beta[i](z).unsqueeze(1)
            new = gamma * hidden + beta
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    @contextmanager
    def condition(self, z: torch.Tensor | None) -> Iterator[None]:
        """Run the model conditioned on ``z`` (shape (B, latent) or (1, latent)) inside the block."""
        previous, self._z = self._z, z
        try:
            yield
        finally:
            self._z = previous
