"""SPO on the demo world: a sentiment round, then a conciseness round that keeps sentiment via the margin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluralign.methods.spo.config import SPOConfig
from pluralign.methods.spo.trainer import train_spo
from pluralign.worlds.reviews.dpo import DEMO_PAIRS, demo_settings


def train_on_demo(world: Any, output_dir: Path, progress: Callable[[str], None] | None = print) -> Path:
    config = SPOConfig(output_dir=str(output_dir), alpha=[1.0], **demo_settings(world))
    pairs = {name: world.pairs(name, DEMO_PAIRS) for name in world.objectives.names}
    return train_spo(config, pairs, progress)
