"""Steering a Rewarded Soups directory: theta(w) = sum_i w_i theta_i, built once per requested w and cached.

LoRA runs of one base are served as a LoRA bank (:class:`pluralign.generation.lora_mix.LoRAMix`): one base
model, the K adapters, and each row of a batch mixed by its own request's weights inside the LoRA layers,
exactly base + sum_i w_i s_i B_i A_i (averaging A and B separately would not be). ``mix_adapters=False``
keeps the merged path: each run merged into its base, the soup built per preference and cached.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pluralign.errors import ModelNotFoundError
from pluralign.generation.lora_mix import LoRAMix, lora_bank_dirs
from pluralign.generation.model_bank import ModelBankPolicy
from pluralign.generation.policy import PreferenceLike
from pluralign.models.loading import default_device, load_causal_lm, load_tokenizer
from pluralign.models.manifest import Manifest


def average_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict:
    """``sum_i w_i * sd_i`` for floating tensors (zero weights skipped, so one-hot returns sd_i exactly);
    non-floating buffers are taken from the first state dict."""
    if len(state_dicts) != len(weights):
        raise ValueError(f"got {len(state_dicts)} state dicts but {len(weights)} weights")
    active = [(sd, float(w)) for sd, w in zip(state_dicts, weights) if float(w) != 0.0]
    out = {}
    for key, first in state_dicts[0].items():
        if not torch.is_floating_point(first):
            out[key] = first.clone()
            continue
        acc = None
        for sd, w in active:
            term = sd[key] * w if w != 1.0 else sd[key].clone()
            acc = term if acc is None else acc.add_(term)
        out[key] = acc if acc is not None else torch.zeros_like(first)
    return out


class SoupsPolicy(ModelBankPolicy):
    """Per-objective policies averaged in weight space by the requested preference (``None``: equal weights).

    The soup for each distinct w is cached (at most ``max_cached`` models in memory). Steered by a user's
    choices (``context=``), it is driven by the corner of the inferred weights: on the personal world that
    serves users as well as their true weights, where the weights themselves recover 0.76 of it.
    """

    context_driver = "corner"

    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        device: str | None = None,
        max_cached: int = 4,
        mix_adapters: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = manifest
        runs = manifest.extra.get("runs") or {}
        missing = [n for n in manifest.objectives if n not in runs]
        if missing:
            raise ModelNotFoundError(
                f"{model_dir}: pluralign.json has no Soups run for objective {missing[0]!r}; retrain with `pluralign train soups`"
            )
        self.tokenizer = load_tokenizer(str(self.model_dir))
        self.device = device or default_device()
        self.run_dirs = [self.model_dir / runs[n] for n in manifest.objectives]
        self.max_loaded = max(1, max_cached)
        self._merged: tuple[list[dict], Any] | None = None
        if mix_adapters and lora_bank_dirs(self.run_dirs):
            self.lora = LoRAMix.load(self.run_dirs, device=self.device)
        else:
            self._load_merged()

    def _load_merged(self) -> tuple[list[dict], Any]:
        """Every run merged into its base (state dicts on the CPU) and a template model to load soups into."""
        if self._merged is None:
            models = [load_causal_lm(str(d), device="cpu", merge_adapter=True) for d in self.run_dirs]
            self._merged = ([{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in models], models[0])
        return self._merged

    @property
    def state_dicts(self) -> list[dict]:
        return self._load_merged()[0]

    @property
    def template(self) -> Any:
        return self._load_merged()[1]

    def adapter_weights(self, weights: tuple[float, ...]) -> tuple[float, ...]:
        """The soup's weights are the preference's: member i (objective i's run) at w_i."""
        return tuple(weights)

    def key_for(self, weights: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(round(w, 6) for w in weights)

    def build(self, weights: tuple[float, ...]):
        model = copy.deepcopy(self.template)
        model.load_state_dict(average_state_dicts(self.state_dicts, weights))
        return model.to(self.device).eval()

    def model_for(self, preference: PreferenceLike | None):
        """The souped model theta(w) for ``preference``, from the bank when it was built before."""
        return self.bank_model(self.key_for(self.weights_for(preference)))

def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> SoupsPolicy:
    return SoupsPolicy(model_dir, manifest, **kwargs)
