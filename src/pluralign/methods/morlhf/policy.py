"""Steering a MORLHF model directory: generate with the run trained at the nearest preference point."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ModelNotFoundError
from pluralign.generation.batched import generate_batched
from pluralign.generation.policy import Choice, PreferenceLike, SteerablePolicy
from pluralign.models.loading import default_device, load_causal_lm, load_tokenizer
from pluralign.training.manifest import Manifest


class MORLHFPolicy(SteerablePolicy):
    """A set of RL policies, one per trained preference; a request goes to the nearest one (Euclidean).

    ``preference=None`` means equal weights. At most ``max_loaded`` runs are kept in memory.
    """

    def __init__(self, model_dir: Path, manifest: Manifest, device: str | None = None, max_loaded: int = 2) -> None:
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
        self._loaded: OrderedDict[int, Any] = OrderedDict()

    def nearest_run(self, preference: PreferenceLike | None) -> int:
        """Index of the trained run whose preference is nearest to ``preference``."""
        pref = self.resolve_preference(preference)
        k = len(self.objectives)
        w = np.full(k, 1.0 / k) if pref is None else np.asarray(pref.weights)
        return int(np.argmin(((self.preferences - w) ** 2).sum(axis=1)))

    def model_for_run(self, index: int):
        if index in self._loaded:
            self._loaded.move_to_end(index)
            return self._loaded[index]
        model = load_causal_lm(str(self.run_dirs[index]), device=self.device, merge_adapter=True)
        self._loaded[index] = model
        while len(self._loaded) > self.max_loaded:
            self._loaded.popitem(last=False)
        return model

    def generate(
        self,
        prompts: Sequence[Any],
        preference: PreferenceLike | None = None,
        context: Sequence[Choice] | None = None,
        batch_size: int = 16,
        **generation_kwargs: Any,
    ) -> list[str]:
        preference = self.preference_for(preference, context)
        model = self.model_for_run(self.nearest_run(preference))
        return generate_batched(model, self.tokenizer, prompts, batch_size=batch_size, **generation_kwargs)

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        """Group the requests by nearest run, so each run is loaded once and generates in batches."""
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(preferences):
            groups.setdefault(self.nearest_run(w), []).append(i)
        out = [""] * len(prompts)
        for run, idx in groups.items():
            model = self.model_for_run(run)
            texts = generate_batched(model, self.tokenizer, [prompts[i] for i in idx], **generation_kwargs)
            for i, t in zip(idx, texts):
                out[i] = t
        return out


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> MORLHFPolicy:
    return MORLHFPolicy(model_dir, manifest, **kwargs)
