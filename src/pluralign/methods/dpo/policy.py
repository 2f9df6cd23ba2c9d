"""An unsteered policy: one model for every preference (DPO; SPO's final round)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pluralign.generation.policy import UnsteeredPolicy
from pluralign.models.manifest import Manifest


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> UnsteeredPolicy:
    """``load_policy`` hook for DPO model dirs."""
    return UnsteeredPolicy(model_dir, manifest, **kwargs)
