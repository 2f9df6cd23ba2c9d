"""FiLM conditioning of a causal LM on a latent z: every transformer block output h -> gamma(z) * h + beta(z).

gamma(z) = 1 + W_g z and beta(z) = W_b z are linear maps from z initialised at zero, so a fresh conditioner
leaves the model exactly as it was (METHODS.md §5). The conditioner holds the current z; forward hooks on
the blocks read it. With no z set the hooks do nothing, so the same model also runs unconditioned.
z may have one row (broadcast over the batch, e.g. for generation) or one row per sequence.

Gradient checkpointing: transformers before 5.x checkpoints a block's whole ``__call__``, hooks included,
so the backward pass re-runs the hook after :meth:`FiLM.condition` has exited. Each hook therefore
records the z it applied to a checkpointed block's input and applies that same z when the block is
recomputed (matched by the input tensor, dropped once used or once the input is freed); where the
checkpoint wraps only ``forward`` (newer transformers) the records are never used and simply expire.
"""

from __future__ import annotations

import weakref
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
        # per block: (weak ref to a checkpointed input, its data_ptr, shape, the z applied to it)
        self._records: list[list[tuple]] = [[] for _ in range(cfg.num_layers)]

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
            self._handles.append(block.register_forward_hook(self._hook(i), with_kwargs=True))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._records = [[] for _ in range(self.cfg.num_layers)]

    def _replayed(self, i: int, x: torch.Tensor | None) -> torch.Tensor | None:
        """The z recorded for block ``i``'s input ``x`` by the original forward (a recompute), or None."""
        live = [r for r in self._records[i] if r[0]() is not None]
        self._records[i] = live
        if x is None:
            return None
        for n, (_, ptr, shape, z) in enumerate(live):
            if ptr == x.data_ptr() and shape == tuple(x.shape):
                del live[n]
                return z
        return None

    def _hook(self, i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output):  # noqa: ANN202
            x = args[0] if args else kwargs.get("hidden_states")
            x = x if isinstance(x, torch.Tensor) else None
            z = self._replayed(i, x)
            if z is None:
                z = self._z
                if z is None:
                    return output
                # (a reentrant checkpoint runs the first forward under no_grad: record regardless)
                if x is not None and module.training and getattr(module, "gradient_checkpointing", False):
                    self._records[i].append((weakref.ref(x), x.data_ptr(), tuple(x.shape), z))
            hidden = output[0] if isinstance(output, tuple) else output
            z = z.to(hidden.dtype)
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
