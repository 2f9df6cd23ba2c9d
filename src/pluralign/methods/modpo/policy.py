"""MODPO's artifact: one model per trained weight vector, steered by the nearest one (or interpolated).

A request's preference picks the member whose weights are nearest (Euclidean). With
``interpolate=True`` the policy instead mixes the parameters of that member and the member whose
segment passes closest to the request: theta = (1 - t) theta_a + t theta_b, t the projection of the
request onto the segment (exact for K = 2 between neighbouring trained weights). No preference means
equal weights. One steered model is kept in memory at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.generation.batched import generate_batched
from pluralign.generation.policy import Choice, PreferenceLike, SteerablePolicy
from pluralign.training.manifest import Manifest

Blend = tuple[int, int, float]  # (member a, member b, t): theta = (1 - t) theta_a + t theta_b


class MODPOPolicy(SteerablePolicy):
    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        interpolate: bool = False,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int = 16,
        trust_remote_code: bool = False,
    ) -> None:
        from pluralign.models.loading import load_tokenizer

        self.model_dir = Path(model_dir)
        self.manifest = manifest
        members = manifest.extra.get("members") or []
        if not members:
            raise ConfigError(f"{model_dir}: pluralign.json lists no MODPO members; retrain with --weights")
        self.member_dirs = [self.model_dir / m["dir"] for m in members]
        self.member_weights = np.array([m["weights"] for m in members], dtype=np.float64)
        self.interpolate = interpolate
        self.load_kwargs = {"dtype": dtype, "device": device, "trust_remote_code": trust_remote_code}
        self.tokenizer = load_tokenizer(str(self.model_dir), trust_remote_code)
        self.batch_size = batch_size
        self._loaded: tuple[Blend, Any] | None = None

    def blend_for(self, weights: Sequence[float]) -> Blend:
        """Which member(s) serve ``weights``: the nearest, or the nearest segment when interpolating."""
        w = np.asarray(weights, dtype=np.float64)
        dist = np.linalg.norm(self.member_weights - w, axis=1)
        a = int(np.argmin(dist))
        if not self.interpolate or len(self.member_dirs) == 1:
            return (a, a, 0.0)
        best: Blend = (a, a, 0.0)
        best_dist = dist[a]
        wa = self.member_weights[a]
        for b, wb in enumerate(self.member_weights):
            seg = wb - wa
            if b == a or not seg.any():
                continue
            t = float(np.clip(np.dot(w - wa, seg) / np.dot(seg, seg), 0.0, 1.0))
            d = float(np.linalg.norm(wa + t * seg - w))
            if t > 0 and d < best_dist - 1e-12:
                best, best_dist = (a, b, t), d
        return best

    def model_for(self, blend: Blend):
        """The (possibly interpolated) model of ``blend``; the previous one is released."""
        from pluralign.models.loading import load_causal_lm

        blend = (blend[0], blend[1], round(blend[2], 4))
        if self._loaded is not None and self._loaded[0] == blend:
            return self._loaded[1]
        self._loaded = None
        a, b, t = blend
        model = load_causal_lm(str(self.member_dirs[a]), **self.load_kwargs)
        if t > 0:
            other = load_causal_lm(str(self.member_dirs[b]), **self.load_kwargs).state_dict()
            mixed = {
                k: (1 - t) * v + t * other[k] if v.is_floating_point() else v for k, v in model.state_dict().items()
            }
            model.load_state_dict(mixed)
            del other
        self._loaded = (blend, model)
        return model

    def _weights(self, preference: PreferenceLike | None) -> tuple[float, ...]:
        pref = self.resolve_preference(preference)
        return pref.weights if pref is not None else tuple([1.0 / len(self.objectives)] * len(self.objectives))

    def generate(
        self,
        prompts: Sequence[Any],
        preference: PreferenceLike | None = None,
        context: Sequence[Choice] | None = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        preference = self.preference_for(preference, context)
        model = self.model_for(self.blend_for(self._weights(preference)))
        return generate_batched(model, self.tokenizer, prompts, self.batch_size, **generation_kwargs)

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        """Requests grouped by the model that serves them, one batched call per group."""
        groups: dict[Blend, list[int]] = {}
        for i, w in enumerate(preferences):
            blend = self.blend_for(self._weights(w))
            groups.setdefault((blend[0], blend[1], round(blend[2], 4)), []).append(i)
        out = [""] * len(prompts)
        for blend, idx in groups.items():
            texts = generate_batched(
                self.model_for(blend), self.tokenizer, [prompts[i] for i in idx], self.batch_size, **generation_kwargs
            )
            for i, text in zip(idx, texts):
                out[i] = text
        return out


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> MODPOPolicy:
    """``load_policy`` hook; pass ``interpolate=True`` to mix neighbouring members' weights."""
    return MODPOPolicy(model_dir, manifest, **kwargs)
