"""Steering a RiC model: preference -> desired rewards (linf / l2 / linear) -> reward tags in the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.generation.batched import generate_batched
from pluralign.generation.policy import Choice, DecodeTarget, PreferenceLike, SteerablePolicy
from pluralign.generation.prompts import render_prompt
from pluralign.models.loading import load_causal_lm, load_tokenizer
from pluralign.objectives import ObjectiveSet, ObjectiveStats
from pluralign.preferences.rewards import preference_to_rewards
from pluralign.preferences.tags import TagTemplate
from pluralign.preferences.weights import Preference
from pluralign.training.manifest import Manifest


class RiCPolicy(SteerablePolicy):
    """A RiC model. Without a preference it uses uniform weights; with ``context`` it infers weights."""

    token_streaming = True

    def __init__(self, model, tokenizer, manifest: Manifest, model_dir: Path, batch_size: int = 32) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.template = TagTemplate(**manifest.template)
        self.stats = {n: ObjectiveStats(**manifest.stats[n]) for n in manifest.objectives}
        # the desired-reward bounds training used (methods/ric/bounds.py); older models: the data's z min/max
        extra = manifest.extra or {}
        self.low = np.array(extra.get("desired_low") or [self.stats[n].zmin for n in manifest.objectives], dtype=float)
        self.high = np.array(extra.get("desired_high") or [self.stats[n].zmax for n in manifest.objectives], dtype=float)

    def desired_rewards(self, preference: Preference) -> np.ndarray:
        return preference_to_rewards(preference.weights, self.low, self.high, self.manifest.mapping)

    def tagged_prompt(self, prompt: Any, preference: PreferenceLike | None) -> Any:
        pref = Preference(tuple(self.objectives), self.weights_for(preference))
        if isinstance(prompt, list) and self.template.position == "response_start":
            # tags at the start of the assistant's turn: render the chat (as training did), then tag the text
            prompt = render_prompt(self.tokenizer, prompt)
        return self.template.apply(prompt, self.objectives, self.desired_rewards(pref))

    def rendered_prompt(self, prompt: Any, preference: PreferenceLike | None = None) -> str:
        return render_prompt(self.tokenizer, self.tagged_prompt(prompt, preference))

    def decode_target(self, prompt: Any, preference: PreferenceLike | None, mixing: str | None = None) -> DecodeTarget:
        return DecodeTarget(self.model, self.tokenizer, self.rendered_prompt(prompt, preference))

    def preference_from_context(self, context: Sequence[Choice]) -> Preference:
        from pluralign.preferences.inference import infer_preference

        objectives = ObjectiveSet.from_specs(self.manifest.objective_specs)
        objectives.stats = dict(self.stats)
        return infer_preference(context, objectives)

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        tagged = [self.tagged_prompt(p, w) for p, w in zip(prompts, preferences)]
        return generate_batched(self.model, self.tokenizer, tagged, batch_size=self.batch_size, **generation_kwargs)


def load(model_dir: Path, manifest: Manifest, device: str | None = None, **kwargs: Any) -> RiCPolicy:
    trust = bool(kwargs.pop("trust_remote_code", False))
    model = load_causal_lm(str(model_dir), device=device, trust_remote_code=trust)
    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust)
    return RiCPolicy(model, tokenizer, manifest, model_dir, **kwargs)
