"""An unsteered policy: one model for every preference (DPO; SPO's final round)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralign.generation import generate_batched
from pluralign.manifest import Manifest
from pluralign.steering import Choice, PreferenceLike, SteerablePolicy


class UnsteeredPolicy(SteerablePolicy):
    """Generates with one fixed model: a preference is validated against its dimensions, then (like a
    context) ignored, so evaluation over a preference grid shows the method as one point."""

    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        weights_dir: Path | None = None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int = 16,
        trust_remote_code: bool = False,
    ) -> None:
        from pluralign.modeling import load_causal_lm, load_tokenizer

        self.model_dir = Path(model_dir)
        self.manifest = manifest
        self.weights_dir = Path(weights_dir or model_dir)
        self.model = load_causal_lm(str(self.weights_dir), dtype, device, trust_remote_code)
        self.tokenizer = load_tokenizer(str(self.weights_dir), trust_remote_code)
        self.batch_size = batch_size

    def generate(
        self,
        prompts: Sequence[Any],
        preference: PreferenceLike | None = None,
        context: Sequence[Choice] | None = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        self._check_steering(preference, context)
        self.resolve_preference(preference)
        return generate_batched(self.model, self.tokenizer, prompts, self.batch_size, **generation_kwargs)

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        for w in preferences:
            self.resolve_preference(w)
        return generate_batched(self.model, self.tokenizer, prompts, self.batch_size, **generation_kwargs)


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> UnsteeredPolicy:
    """``load_policy`` hook for DPO model dirs."""
    return UnsteeredPolicy(model_dir, manifest, **kwargs)
