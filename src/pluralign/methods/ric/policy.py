"""Steering a RiC model: preference -> desired rewards (linf / l2 / linear) -> reward tags in the prompt.

A prompt reaches the model in the form its training data had (:func:`model_prompt`): a model trained on
chat prompts (``pluralign.json``: ``prompt_format: chat``) reads a plain string as one user turn (an
HH-style string as its turns) through its chat template, with the tags where training put them; a
message list given to a model trained on text without a chat template is a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.generation.batched import generate_batched
from pluralign.generation.policy import DecodeTarget, PreferenceLike, SteerablePolicy
from pluralign.generation.prompts import (
    assistant_marker,
    chat_messages,
    has_chat_template,
    is_chat_prompt,
    is_rendered_chat,
    render_prompt,
)
from pluralign.models.loading import load_causal_lm, load_tokenizer
from pluralign.models.manifest import Manifest
from pluralign.objectives import ObjectiveStats
from pluralign.preferences.rewards import middle_floor_flags, preference_to_rewards
from pluralign.preferences.tags import GUIDANCE_NEGATIVES, TagTemplate, negative_rewards
from pluralign.preferences.weights import Preference


def trained_on_chat(tokenizer: Any, prompts: Sequence[Any]) -> bool:
    """True when the training prompts were conversational or rendered through the chat template."""
    return any(is_chat_prompt(tokenizer, p) for p in prompts)


def model_prompt(tokenizer: Any, template: TagTemplate, prompt: Any, chat: bool = False) -> Any:
    """``prompt`` in the form the model's training prompts had, ready for its tags.

    ``chat``: the model was trained on chat prompts, so a plain string is a user turn (HH-style: its turns).
    With ``tag_position: response_start`` a conversational prompt is rendered first (the tags open the
    assistant's turn, as in training)."""
    if chat and isinstance(prompt, str) and not is_rendered_chat(tokenizer, prompt):
        prompt = chat_messages(prompt)
    if isinstance(prompt, list):
        if not has_chat_template(tokenizer):
            raise ConfigError("this RiC model has no chat template: give prompts as text, not lists of messages")
        if template.position == "response_start":
            prompt = render_prompt(tokenizer, prompt)
    return prompt




class RiCPolicy(SteerablePolicy):
    """A RiC model. Without a preference it uses uniform weights; with ``context`` it infers weights.

    ``guidance_scale`` > 1 decodes with classifier-free guidance on the tags
    (:mod:`pluralign.generation.guidance`): each step contrasts the preference's tags with
    ``guidance_against``'s, the ``opposite`` tags (every desired reward reflected within its bounds), the
    ``raised`` ones (only the desired rewards above their middle reflected, the others as wanted: guidance
    pushes nothing down) or the ``neutral`` ones (every desired reward at the middle of its bounds), so what the tags change is
    amplified, at one extra forward pass per token. Both default to what training stored in
    ``pluralign.json`` (``RiCConfig.guidance_scale``), else 1 (plain decoding). Guided decoding also bans
    the tags' names; ``prompt_no_repeat_ngram_size=n`` in the generation arguments bans copying n tokens
    of the prompt (:mod:`pluralign.generation.prompt_copy`; off by default). ``floor_at_middle`` names the
    objectives never asked for less than the middle of their bounds (default: what training stored)."""

    token_streaming = True

    def __init__(
        self,
        model,
        tokenizer,
        manifest: Manifest,
        model_dir: Path,
        batch_size: int = 32,
        guidance_scale: float | None = None,
        guidance_against: str | None = None,
        floor_at_middle: Sequence[str] | None = None,
    ) -> None:
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
        # models trained before the field existed: chat when the tags' marker is the chat template's
        fmt = extra.get("prompt_format")
        marker = self.template.response_marker
        self.chat_trained = fmt == "chat" or (
            fmt is None and has_chat_template(tokenizer) and bool(marker) and marker == assistant_marker(tokenizer)
        )
        self.set_guidance(
            extra.get("guidance_scale", 1.0) if guidance_scale is None else guidance_scale,
            guidance_against or extra.get("guidance_against", "opposite"),
        )
        self.set_floor(extra.get("floor_at_middle", []) if floor_at_middle is None else floor_at_middle)

    def set_floor(self, floored: Sequence[str]) -> None:
        """Ask the ``floored`` objectives for at least the middle of their bounds (``RiCConfig.floor_at_middle``);
        only the wanted tags change: guidance's negative tags still mirror within the training bounds."""
        self.floor_flags = middle_floor_flags(self.objectives, floored)
        self.floor_at_middle = [n for n, f in zip(self.objectives, self.floor_flags) if f]

    def set_guidance(self, scale: float, against: str = "opposite") -> None:
        """Decode with tag guidance ``scale`` (1: plain decoding) against the ``against`` tags."""
        if scale < 1.0:
            raise ConfigError(f"guidance_scale must be at least 1 (1: plain decoding), got {scale}")
        if against not in GUIDANCE_NEGATIVES:
            raise ConfigError(f"guidance_against {against!r} is not one of {', '.join(GUIDANCE_NEGATIVES)}")
        self.guidance_scale, self.guidance_against = float(scale), against

    def desired_rewards(self, preference: Preference) -> np.ndarray:
        return preference_to_rewards(preference.weights, self.low, self.high, self.manifest.mapping, self.floor_flags)

    def tagged_prompt(self, prompt: Any, preference: PreferenceLike | None) -> Any:
        """The steered prompt the model is fed: ``prompt`` as in training (:func:`model_prompt`) with the tags."""
        pref = Preference(tuple(self.objectives), self.weights_for(preference))
        prompt = model_prompt(self.tokenizer, self.template, prompt, self.chat_trained)
        return self.template.apply(prompt, self.objectives, self.desired_rewards(pref))

    def negative_prompt(self, prompt: Any, preference: PreferenceLike | None) -> Any:
        """The prompt that guidance steers away from: ``prompt`` with the ``guidance_against`` tags."""
        pref = Preference(tuple(self.objectives), self.weights_for(preference))
        wanted = self.desired_rewards(pref)
        values = negative_rewards(wanted, self.low, self.high, self.guidance_against)
        prompt = model_prompt(self.tokenizer, self.template, prompt, self.chat_trained)
        return self.template.apply(prompt, self.objectives, values)

    def tag_name_ids(self) -> list[list[int]]:
        """The token ids of each tag's name text, alone and after a space: guided decoding bans them."""
        texts = self.template.name_texts(self.objectives)
        ids = {tuple(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for x in texts for t in (x, " " + x)}
        return [list(i) for i in sorted(ids) if i]

    def rendered_prompt(self, prompt: Any, preference: PreferenceLike | None = None) -> str:
        return render_prompt(self.tokenizer, self.tagged_prompt(prompt, preference))

    def decode_target(self, prompt: Any, preference: PreferenceLike | None, mixing: str | None = None) -> DecodeTarget | None:
        if self.guidance_scale > 1.0:  # guided rows need their negative branch: padded batches (generate_many)
            return None
        return DecodeTarget(self.model, self.tokenizer, self.rendered_prompt(prompt, preference))

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        tagged = [self.tagged_prompt(p, w) for p, w in zip(prompts, preferences)]
        if self.guidance_scale > 1.0:
            generation_kwargs["negatives"] = [self.negative_prompt(p, w) for p, w in zip(prompts, preferences)]
            generation_kwargs["guidance_scale"] = self.guidance_scale
            generation_kwargs.setdefault("bad_words_ids", self.tag_name_ids())
        return generate_batched(self.model, self.tokenizer, tagged, batch_size=self.batch_size, **generation_kwargs)


def load(model_dir: Path, manifest: Manifest, device: str | None = None, **kwargs: Any) -> RiCPolicy:
    trust = bool(kwargs.pop("trust_remote_code", False))
    model = load_causal_lm(str(model_dir), device=device, trust_remote_code=trust)
    tokenizer = load_tokenizer(str(model_dir), trust_remote_code=trust)
    return RiCPolicy(model, tokenizer, manifest, model_dir, **kwargs)
