"""K LoRA adapters on one base model, mixed per row of a batch, in weight space or in logit space.

A LoRA model bank (Rewarded Soups' per-objective runs, MORLHF's grid, MODPO's members trained with
``--use_peft``) differs from its base only by low-rank updates ``s_i B_i A_i``. The soup for a preference
``w`` is therefore exact and cheap to apply inside every LoRA layer:

    y = W x + sum_i w_i * s_i * B_i A_i x

with ``w`` a per-row tensor, so requests with different preferences share one forward pass (PEFT's
``adapter_names=`` mixed batches give each row one adapter; ``add_weighted_adapter`` merges one new
adapter per preference). :class:`LoRAMix` loads the base and the K adapters with PEFT, turns PEFT's own
adapter path off, and adds the mixed update with a forward hook on each ``peft.tuners.lora.layer.Linear``
(its ``lora_A`` / ``lora_B`` / ``scaling``), as one pair of matrix products for all K adapters.

Logit-space mixing ("MOD", multi-objective decoding, arXiv 2406.18853) runs each adapter as its own row
(one-hot weights) and mixes the next-token log-probabilities: ``log p(y) = sum_i w_i log p_i(y)`` up to
normalisation (:func:`mix_logprobs`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from pluralign.errors import ConfigError

MIXINGS = ("weights", "logits")


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (``base_model_name_or_path``)."""
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    return str(config.get("base_model_name_or_path") or "")


def lora_bank_dirs(dirs: Sequence[str | Path]) -> bool:
    """True when every folder is a LoRA adapter of one and the same base model (a bank :class:`LoRAMix` serves)."""
    if not dirs or not all(is_adapter_dir(d) for d in dirs):
        return False
    bases = {adapter_base(d) for d in dirs}
    if len(bases) != 1:
        return False
    configs = [json.loads((Path(d) / "adapter_config.json").read_text()) for d in dirs]
    return all(str(c.get("peft_type", "LORA")).upper() == "LORA" and not c.get("use_dora") for c in configs)


def mix_logprobs(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """MOD: ``[R * K, V]`` logits (row r's K adapters consecutive) and ``[R, K]`` weights -> ``[R, V]``
    mixed log-probabilities ``sum_k w_rk log_softmax(logits_rk)``."""
    r, k = weights.shape
    logp = torch.log_softmax(logits.float(), dim=-1).view(r, k, -1)
    return (weights.to(logp.dtype).unsqueeze(-1) * logp).sum(dim=1)


class _MixedLayer:
    """One LoRA Linear's K adapters as stacked matrices: ``A [R, in]``, ``B [out, R]``, and per rank column
    which adapter it belongs to and that adapter's scaling."""

    def __init__(self, module: Any, adapters: Sequence[str]) -> None:
        present = [(k, name) for k, name in enumerate(adapters) if name in module.lora_A]
        if any(name in getattr(module, "lora_variant", {}) for _, name in present):
            raise ConfigError("LoRA variants (DoRA, aLoRA, ...) cannot be mixed per row; serve the bank with merged models")
        self.A = torch.cat([module.lora_A[n].weight.detach() for _, n in present], dim=0)
        self.B = torch.cat([module.lora_B[n].weight.detach() for _, n in present], dim=1)
        ranks = [module.lora_A[n].weight.shape[0] for _, n in present]
        self.column_adapter = torch.tensor([k for (k, _), r in zip(present, ranks) for _ in range(r)])
        self.column_scale = torch.tensor(
            [float(module.scaling[n]) for (_, n), r in zip(present, ranks) for _ in range(r)], dtype=torch.float32
        )


class LoRAMix:
    """A PEFT model holding K LoRA adapters, each forward weighted per row by :meth:`rows`.

    Outside a :meth:`rows` block the model is the plain base model. Inside, row ``b`` of every input is
    transformed by ``W + sum_i weights[b, i] * s_i * B_i A_i``.
    """

    def __init__(self, model: Any, adapters: Sequence[str]) -> None:
        from peft.tuners.lora.layer import Linear as LoraLinear, LoraLayer

        self.model = model
        self.adapters = list(adapters)
        self._weights: torch.Tensor | None = None
        self._handles = []
        self.layers = 0
        for module in model.modules():
            if not isinstance(module, LoraLayer):
                continue
            if not isinstance(module, LoraLinear):
                raise ConfigError(
                    f"{type(module).__name__} LoRA layers cannot be mixed per row (only Linear ones); "
                    "serve the bank with merged models"
                )
            mixed = _MixedLayer(module, self.adapters)
            self._handles.append(module.register_forward_hook(self._hook(mixed)))
            self.layers += 1
        if not self.layers:
            raise ConfigError("the model has no LoRA layers to mix")
        model.base_model.disable_adapter_layers()  # PEFT's layers compute W x only; the hooks add the mix
        model.eval()

    @classmethod
    def load(
        cls,
        adapter_dirs: Sequence[str | Path],
        device: str | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> LoRAMix:
        """The base model of ``adapter_dirs`` (one LoRA adapter folder per bank member) with every adapter loaded."""
        from peft import PeftModel

        from pluralign.models.loading import load_causal_lm

        if not lora_bank_dirs(adapter_dirs):
            raise ConfigError("a LoRA mix needs LoRA adapter folders of one base model")
        base = load_causal_lm(adapter_base(adapter_dirs[0]), dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        names = [f"member_{i}" for i in range(len(adapter_dirs))]
        model = PeftModel.from_pretrained(base, str(adapter_dirs[0]), adapter_name=names[0])
        for name, folder in zip(names[1:], adapter_dirs[1:]):
            model.load_adapter(str(folder), adapter_name=name)
        return cls(model.to(base.device), names)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def adapter_bytes(self) -> int:
        """Memory of the K adapters' LoRA matrices."""
        total = 0
        for name, p in self.model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                total += p.numel() * p.element_size()
        return total

    def base_bytes(self) -> int:
        """Memory of the base model's own weights (what one merged model costs)."""
        total = 0
        for name, p in self.model.named_parameters():
            if ".lora_A." not in name and ".lora_B." not in name:
                total += p.numel() * p.element_size()
        return total

    @contextlib.contextmanager
    def rows(self, weights: Sequence[Sequence[float]] | torch.Tensor) -> Iterator[None]:
        """Forwards in this block weight row ``b``'s adapters by ``weights[b]`` (``[rows, K]``)."""
        w = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        if w.dim() != 2 or w.shape[1] != len(self.adapters):
            raise ValueError(f"mix weights must be [rows, {len(self.adapters)}], got {tuple(w.shape)}")
        previous, self._weights = self._weights, w
        try:
            yield
        finally:
            self._weights = previous

    def _hook(self, layer: _MixedLayer):
        moved = {}

        def hook(_module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor:
            w = self._weights
            if w is None:
                return output
            x = args[0]
            if x.shape[0] != w.shape[0]:
                raise RuntimeError(f"a LoRA mix for {w.shape[0]} rows got a batch of {x.shape[0]}")
            if x.device not in moved:
                moved[x.device] = (
                    layer.A.to(x.device),
                    layer.B.to(x.device),
                    layer.column_adapter.to(x.device),
                    layer.column_scale.to(x.device),
                )
            a, b, column_adapter, column_scale = moved[x.device]
            coef = (w[:, column_adapter] * column_scale).to(a.dtype)  # [rows, R]
            h = torch.nn.functional.linear(x.to(a.dtype), a)  # [rows, ..., R]
            h = h * coef.view(coef.shape[0], *([1] * (h.dim() - 2)), coef.shape[1])
            return output + torch.nn.functional.linear(h, b).to(output.dtype)

        return hook


def one_hot(k: int, index: int) -> tuple[float, ...]:
    return tuple(1.0 if i == index else 0.0 for i in range(k))
