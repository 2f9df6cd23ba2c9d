"""Steerable policies: the interface every method's policy implements, and the unsteered one (one fixed model).

:func:`pluralign.policies.load_policy`, above the methods, reads ``pluralign.json`` and returns the right one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pluralign.errors import ConfigError, PreferenceError
from pluralign.generation.batched import generate_batched
from pluralign.generation.prompts import render_prompt
from pluralign.models.manifest import Manifest
from pluralign.preferences.weights import Preference

PreferenceLike = Preference | Mapping[str, float] | Sequence[float] | str
Choice = tuple[Any, str, str]  # (prompt, chosen, rejected)


@dataclass
class DecodeTarget:
    """What generates one steered request token by token: the model, its tokenizer, the exact prompt text
    it sees (steering tags included), and on a LoRA bank the mix (``mix``, a
    :class:`pluralign.generation.lora_mix.LoRAMix`) with the request's adapter weights (weight-space) or
    logit weights (MOD)."""

    model: Any
    tokenizer: Any
    text: str
    mix: Any = None
    adapter_weights: tuple[float, ...] | None = None
    logit_weights: tuple[float, ...] | None = None


class SteerablePolicy(ABC):
    """A trained model that generates steered by a preference (or by a user's choices)."""

    manifest: Manifest
    model_dir: Path
    # generate_many passes ``on_token`` (streaming) through to generate_batched with the caller's row indices
    token_streaming: bool = False
    # ways a request may ask its LoRA bank to be mixed ("weights", "logits"); empty: the method's own only
    mixings: tuple[str, ...] = ()

    @property
    def objectives(self) -> list[str]:
        return list(self.manifest.objectives)

    @property
    def method(self) -> str:
        return self.manifest.method

    def resolve_preference(self, preference: PreferenceLike | None) -> Preference | None:
        if preference is None:
            return None
        return Preference.from_any(preference, self.objectives)

    # how a preference inferred from a user's choices drives this policy: "mean", the inferred weights, or
    # "corner", all weight on their largest (Preference.corner): right for a policy whose answers change
    # little until a weight nears 1, as Rewarded Soups' do (docs/personalisation.md)
    context_driver = "mean"

    def preference_from_context(self, context: Sequence[Choice]) -> Preference:
        """Infer weights from a user's ``(prompt, chosen, rejected)`` choices, scored by the objectives the
        model was trained with (the manifest's specs and statistics), then apply ``context_driver``."""
        from pluralign.objectives import ObjectiveSet, ObjectiveStats
        from pluralign.preferences.inference import infer_preference

        specs, stats = self.manifest.objective_specs, self.manifest.stats or {}
        if not specs or any(n not in stats for n in self.objectives):
            raise ConfigError(
                f"method {self.method!r}: this model's pluralign.json does not record its objectives' scorers and "
                "statistics, so it cannot be steered by context; pass preference= instead"
            )
        objectives = ObjectiveSet.from_specs(specs)
        objectives.stats = {n: ObjectiveStats(**stats[n]) for n in self.objectives}
        preference = infer_preference(context, objectives)
        return preference.corner() if self.context_driver == "corner" else preference

    def weights_for(self, preference: PreferenceLike | None) -> tuple[float, ...]:
        """The preference's weights in objective order; no preference means equal weights."""
        pref = self.resolve_preference(preference)
        k = len(self.objectives)
        return tuple([1.0 / k] * k) if pref is None else tuple(pref.weights)

    def generate(
        self,
        prompts: Sequence[Any],
        preference: PreferenceLike | None = None,
        context: Sequence[Choice] | None = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        """Generate one response per prompt, steered by ``preference`` (or by the one ``context`` implies)."""
        preference = self.preference_for(preference, context)
        return self.generate_many(prompts, [preference] * len(prompts), **generation_kwargs)

    @abstractmethod
    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        """One response per (prompt, preference) pair, batched where the method can."""

    def rendered_prompt(self, prompt: Any, preference: PreferenceLike | None = None) -> str:
        """The exact text the model sees for this request (chat template and steering included)."""
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is not None:
            return render_prompt(tokenizer, prompt)
        return prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)

    def decode_target(self, prompt: Any, preference: PreferenceLike | None, mixing: str | None = None) -> DecodeTarget | None:
        """The model and exact prompt that generate this request token by token (continuous batching);
        None when the policy only generates whole responses (it is then served through ``generate_many``)."""
        return None

    def _check_steering(self, preference: Any, context: Any) -> None:
        if preference is not None and context is not None:
            raise PreferenceError("give either preference= or context=, not both")

    def preference_for(self, preference: PreferenceLike | None, context: Sequence[Choice] | None) -> Any:
        """The preference to steer by: the one given, or the one inferred from the user's choices."""
        self._check_steering(preference, context)
        return self.preference_from_context(context) if context is not None else preference


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
        from pluralign.models.loading import load_causal_lm, load_tokenizer

        self.model_dir = Path(model_dir)
        self.manifest = manifest
        self.weights_dir = Path(weights_dir or model_dir)
        self.model = load_causal_lm(str(self.weights_dir), dtype, device, trust_remote_code)
        self.tokenizer = load_tokenizer(str(self.weights_dir), trust_remote_code)
        self.batch_size = batch_size

    token_streaming = True

    def decode_target(self, prompt: Any, preference: PreferenceLike | None, mixing: str | None = None) -> DecodeTarget:
        self.resolve_preference(preference)
        return DecodeTarget(self.model, self.tokenizer, self.rendered_prompt(prompt, preference))

    def preference_from_context(self, context: Sequence[Choice]) -> None:
        """A user's choices cannot move one fixed model: the context is ignored."""
        return None

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        for w in preferences:
            self.resolve_preference(w)
        return generate_batched(self.model, self.tokenizer, prompts, self.batch_size, **generation_kwargs)
