"""Trained reward models (BTL, NP-BTL, multi-head): :func:`load_reward_model` reads ``pluralign.json``.

Each type provides ``pluralign.methods.<type>.reward_model.load(model_dir, manifest)`` returning an
object with ``score(prompts, responses, context=None) -> list[float]``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pluralign.errors import ConfigError
from pluralign.manifest import Manifest

REWARD_MODEL_TYPES = ("btl", "npbtl", "multihead")


def load_reward_model(path: str | Path, **kwargs: Any):
    manifest = Manifest.load(path)
    if manifest.method not in REWARD_MODEL_TYPES:
        raise ConfigError(
            f"{path} holds a {manifest.method!r} model, not a reward model ({', '.join(REWARD_MODEL_TYPES)})"
        )
    module = importlib.import_module(f"pluralign.methods.{manifest.method}.reward_model")
    return module.load(Path(path), manifest, **kwargs)
