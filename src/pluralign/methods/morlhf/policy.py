"""Steering a MORLHF model directory: generate with the run trained at the nearest preference point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ModelNotFoundError
from pluralign.generation.lora_mix import LoRAMix, lora_bank_dirs, one_hot
from pluralign.generation.model_bank import ModelBankPolicy
from pluralign.generation.policy import PreferenceLike
from pluralign.models.loading import default_device, load_causal_lm, load_tokenizer
from pluralign.models.manifest import Manifest


class MORLHFPolicy(ModelBankPolicy):
    """A set of RL policies, one per trained preference; a request goes to the nearest one (Euclidean).

    ``preference=None`` means equal weights. At most ``max_loaded`` runs are kept in memory. Runs trained as
    LoRA adapters of one base are served as one LoRA bank (``mix_adapters=False``: one merged model per run),
    so requests for different runs share every forward pass.
    """

    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        device: str | None = None,
        max_loaded: int = 2,
        mix_adapters: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = manifest
        runs = manifest.extra.get("runs") or []
        if not runs:
            raise ModelNotFoundError(
                f"{model_dir}: pluralign.json lists no MORLHF runs; retrain with `pluralign train morlhf`"
            )
        self.preferences = np.array([r["preference"] for r in runs], dtype=np.float64)
        self.run_dirs = [self.model_dir / r["path"] for r in runs]
        self.tokenizer = load_tokenizer(str(self.model_dir))
        self.device = device or default_device()
        self.max_loaded = max(1, max_loaded)
        if mix_adapters and lora_bank_dirs(self.run_dirs):
            self.lora = LoRAMix.load(self.run_dirs, device=self.device)

    def key_for(self, weights: tuple[float, ...]) -> int:
        """Index of the trained run whose preference is nearest to ``weights`` (Euclidean)."""
        return int(np.argmin(((self.preferences - np.asarray(weights)) ** 2).sum(axis=1)))

    def adapter_weights(self, weights: tuple[float, ...]) -> tuple[float, ...]:
        """The nearest run alone (its adapter at weight 1)."""
        return one_hot(len(self.run_dirs), self.key_for(weights))

    def nearest_run(self, preference: PreferenceLike | None) -> int:
        """Index of the trained run whose preference is nearest to ``preference``."""
        return self.key_for(self.weights_for(preference))

    def build(self, index: int):
        return load_causal_lm(str(self.run_dirs[index]), device=self.device, merge_adapter=True)


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> MORLHFPolicy:
    return MORLHFPolicy(model_dir, manifest, **kwargs)
