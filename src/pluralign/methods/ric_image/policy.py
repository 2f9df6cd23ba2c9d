"""Steering a RiC text-to-image model: preference -> desired rewards (quantile mapping by default, or
linf / l2 / linear) -> reward tags appended to the caption (cut as in training so that the tags fit the
text encoder) -> DDIM sampling with classifier-free guidance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.generation.policy import PreferenceLike, SteerablePolicy
from pluralign.methods.ric_image.captions import tag_caption
from pluralign.models.diffusion import TextToImage
from pluralign.models.manifest import Manifest
from pluralign.objectives import ObjectiveStats
from pluralign.preferences.rewards import (
    QUANTILE_MAPPING,
    QUANTILE_TOP,
    preference_to_rewards,
    preference_to_rewards_by_quantile,
)
from pluralign.preferences.tags import TagTemplate
from pluralign.preferences.weights import Preference


class RiCImagePolicy(SteerablePolicy):
    """A RiC text-to-image model; ``generate`` returns PIL images. No preference: uniform weights."""

    modality = "image"

    def __init__(self, pipe: TextToImage, manifest: Manifest, model_dir: Path, batch_size: int = 64) -> None:
        self.pipe, self.manifest, self.model_dir, self.batch_size = pipe, manifest, Path(model_dir), batch_size
        self.template = TagTemplate(**manifest.template)
        self.stats = {n: ObjectiveStats(**manifest.stats[n]) for n in manifest.objectives}
        self.low = np.array([self.stats[n].zmin for n in manifest.objectives])
        self.high = np.array([self.stats[n].zmax for n in manifest.objectives])
        self.tables = [manifest.extra["quantile_tables"][n] for n in manifest.objectives]

    def desired_rewards(self, preference: Preference) -> np.ndarray:
        if self.manifest.mapping == QUANTILE_MAPPING:
            top = float(self.manifest.extra.get("quantile_top", QUANTILE_TOP))
            return preference_to_rewards_by_quantile(preference.weights, self.tables, top)
        return preference_to_rewards(preference.weights, self.low, self.high, self.manifest.mapping)

    def tagged_prompt(self, prompt: str, preference: PreferenceLike | None) -> str:
        """The caption the model reads: a long prompt is cut (as in training) so that its tags fit the encoder."""
        pref = Preference(tuple(self.objectives), self.weights_for(preference))
        fit = self.pipe.text_encoder.fit_caption
        return tag_caption(self.template, str(prompt), self.objectives, self.desired_rewards(pref), fit)

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list:
        """PIL images; kwargs: ``num_inference_steps``, ``guidance_scale``, ``seed`` (defaults: the manifest's)."""
        extra = self.manifest.extra
        kwargs = {
            "num_inference_steps": int(generation_kwargs.pop("num_inference_steps", extra.get("num_inference_steps", 50))),
            "guidance_scale": float(generation_kwargs.pop("guidance_scale", extra.get("guidance_scale", 7.5))),
            "seed": int(generation_kwargs.pop("seed", 0)),
            "batch_size": int(generation_kwargs.pop("batch_size", self.batch_size)),
            "seeds": generation_kwargs.pop("seeds", None),
        }
        tagged = [self.tagged_prompt(p, w) for p, w in zip(prompts, preferences)]
        return self.pipe.sample(tagged, **kwargs)


def load(model_dir: Path, manifest: Manifest, device: str | None = None, **kwargs: Any) -> RiCImagePolicy:
    kwargs.pop("trust_remote_code", None)
    pipe = TextToImage.load(model_dir, base=manifest.base_model if _needs_base(model_dir) else None, device=device)
    return RiCImagePolicy(pipe, manifest, model_dir, **kwargs)


def _needs_base(model_dir: Path) -> bool:
    """A fine-tuned Stable Diffusion dir holds only unet/ + scheduler/: encoder and VAE come from its base."""
    from pluralign.models.diffusion import T2ISpec

    spec = T2ISpec.read(str(model_dir))
    return not (spec.text_encoder and spec.vae)
