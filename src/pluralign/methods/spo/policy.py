"""SPO's artifact is its last round: an unsteered policy over every dimension it was aligned to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pluralign.generation.policy import UnsteeredPolicy
from pluralign.models.manifest import Manifest


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> UnsteeredPolicy:
    """``load_policy`` hook: the run dir's ``final`` round (or a round dir itself)."""
    return UnsteeredPolicy(
        model_dir, manifest, weights_dir=Path(model_dir) / manifest.extra.get("final", "."), **kwargs
    )
