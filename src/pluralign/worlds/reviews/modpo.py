"""MODPO on the demo world: DPO on sentiment pairs with a conciseness margin, five weight vectors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluralign.methods.modpo.config import MODPOConfig
from pluralign.methods.modpo.trainer import train_modpo
from pluralign.worlds.reviews.dpo import DEMO_PAIRS, demo_settings

DEMO_WEIGHTS = ["1,0", "0.75,0.25", "0.5,0.5", "0.25,0.75", "0.1,0.9"]


def train_on_demo(world: Any, output_dir: Path, progress: Callable[[str], None] | None = print) -> Path:
    trained, *_ = world.objectives.names
    config = MODPOConfig(output_dir=str(output_dir), weights=DEMO_WEIGHTS, **demo_settings(world))
    return train_modpo(config, {trained: world.pairs(trained, DEMO_PAIRS)}, world.objectives, progress)
