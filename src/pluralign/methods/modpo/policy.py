"""MODPO's artifact: one model per trained weight vector, steered by the nearest one (or interpolated).

A request's preference picks the member whose weights are nearest (Euclidean). With
``interpolate=True`` the policy instead mixes the parameters of that member and the member whose
segment passes closest to the request: theta = (1 - t) theta_a + t theta_b, t the projection of the
request onto the segment (exact for K = 2 between neighbouring trained weights). No preference means
equal weights. One steered model is kept in memory at a time. Members trained as LoRA adapters of one
base are served as one LoRA bank (``mix_adapters=False``: merged models): the blend is applied per row
inside the LoRA layers, theta = base + (1 - t) s_a B_a A_a + t s_b B_b A_b.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.generation.lora_mix import LoRAMix, lora_bank_dirs
from pluralign.generation.model_bank import ModelBankPolicy
from pluralign.models.manifest import Manifest

Blend = tuple[int, int, float]  # (member a, member b, t): theta = (1 - t) theta_a + t theta_b


class MODPOPolicy(ModelBankPolicy):
    def __init__(
        self,
        model_dir: Path,
        manifest: Manifest,
        interpolate: bool = False,
        batch_size: int = 16,
        mix_adapters: bool = True,
        **load_kwargs: Any,
    ) -> None:
        """``load_kwargs`` (``device``, ``dtype``, ``trust_remote_code``) apply to every member's weights."""
        from pluralign.models.loading import load_tokenizer

        self.model_dir = Path(model_dir)
        self.manifest = manifest
        members = manifest.extra.get("members") or []
        if not members:
            raise ConfigError(f"{model_dir}: pluralign.json lists no MODPO members; retrain with --weights")
        self.member_dirs = [self.model_dir / m["dir"] for m in members]
        self.member_weights = np.array([m["weights"] for m in members], dtype=np.float64)
        self.interpolate = interpolate
        self.load_kwargs = {"dtype": "float32", "device": None, "trust_remote_code": False, **load_kwargs}
        self.tokenizer = load_tokenizer(str(self.model_dir), self.load_kwargs["trust_remote_code"])
        self.batch_size = batch_size
        if mix_adapters and lora_bank_dirs(self.member_dirs):
            self.lora = LoRAMix.load(self.member_dirs, **self.load_kwargs)

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

    def adapter_weights(self, weights: tuple[float, ...]) -> tuple[float, ...]:
        """The blend as member weights: 1 - t on member a, t on member b."""
        a, b, t = self.blend_for(weights)
        out = [0.0] * len(self.member_dirs)
        out[a] += 1.0 - t
        out[b] += t
        return tuple(out)

    def key_for(self, weights: tuple[float, ...]) -> Blend:
        a, b, t = self.blend_for(weights)
        return (a, b, round(t, 4))

    def build(self, blend: Blend):
        """The (possibly interpolated) model of ``blend``."""
        from pluralign.models.loading import load_causal_lm

        a, b, t = blend
        model = load_causal_lm(str(self.member_dirs[a]), **self.load_kwargs)
        if t > 0:
            other = load_causal_lm(str(self.member_dirs[b]), **self.load_kwargs).state_dict()
            mixed = {
                k: (1 - t) * v + t * other[k] if v.is_floating_point() else v for k, v in model.state_dict().items()
            }
            model.load_state_dict(mixed)
            del other
        return model

    def model_for(self, blend: Blend):
        """The (possibly interpolated) model of ``blend``; the previous one is released."""
        return self.bank_model((blend[0], blend[1], round(blend[2], 4)))

def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> MODPOPolicy:
    """``load_policy`` hook; pass ``interpolate=True`` to mix neighbouring members' weights."""
    return MODPOPolicy(model_dir, manifest, **kwargs)
