"""Steering a MOSLIM model: preference weights -> intensity targets -> the preference block in the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralign.generation.batched import generate_batched
from pluralign.generation.policy import DecodeTarget, PreferenceLike, SteerablePolicy
from pluralign.generation.prompts import render_prompt
from pluralign.methods.moslim.mapping import preference_targets
from pluralign.methods.moslim.template import PreferenceTemplate
from pluralign.models.loading import load_causal_lm, load_tokenizer
from pluralign.models.manifest import Manifest


class MoslimPolicy(SteerablePolicy):
    """A MOSLIM policy. A preference w asks for level round(f(w_i) (K_i - 1)) of each objective
    (``manifest.mapping``: linear, linf or l2); w_i = 0 leaves objective i unspecified (or asks for its
    lowest level with ``zero_weight: lowest`` in the manifest); no preference leaves every objective unspecified."""

    def __init__(self, model: Any, tokenizer: Any, manifest: Manifest, model_dir: Path, batch_size: int = 32) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.template = PreferenceTemplate.from_dict(manifest.template)

    def targets(self, preference: PreferenceLike | None) -> list[int | None]:
        """Intensity targets for a preference (None: every objective unspecified)."""
        pref = self.resolve_preference(preference)
        if pref is None:
            return [None] * len(self.objectives)
        zero = (self.manifest.extra or {}).get("zero_weight", "unspecified")
        return preference_targets(pref.weights, self.template.num_classes, self.manifest.mapping, zero)

    def steered_prompt(self, prompt: Any, preference: PreferenceLike | None) -> Any:
        return self.template.apply(prompt, self.targets(preference))

    token_streaming = True

    def rendered_prompt(self, prompt: Any, preference: PreferenceLike | None = None) -> str:
        return render_prompt(self.tokenizer, self.steered_prompt(prompt, preference))

    def decode_target(self, prompt: Any, preference: PreferenceLike | None, mixing: str | None = None) -> DecodeTarget:
        return DecodeTarget(self.model, self.tokenizer, self.rendered_prompt(prompt, preference))

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        steered = [self.steered_prompt(p, w) for p, w in zip(prompts, preferences)]
        return generate_batched(self.model, self.tokenizer, steered, batch_size=self.batch_size, **generation_kwargs)


def load(model_dir: Path, manifest: Manifest, device: str | None = None, **kwargs: Any) -> MoslimPolicy:
    """``pluralign.load_policy`` hook."""
    trust = bool(kwargs.pop("trust_remote_code", False))
    model = load_causal_lm(str(model_dir), device=device, trust_remote_code=trust)
    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust)
    return MoslimPolicy(model, tokenizer, manifest, model_dir, **kwargs)
