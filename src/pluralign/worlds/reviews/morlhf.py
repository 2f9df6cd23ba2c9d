"""MORLHF on the demo world: one short RLOO run per grid point from the world's SFT model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.methods.morlhf.config import MORLHFConfig
from pluralign.methods.morlhf.trainer import train_morlhf
from pluralign.worlds.reviews.rl import demo_rl_config, world_prompts


def demo_config(world: Any, output_dir: Path, **overrides: Any) -> MORLHFConfig:
    """The demo's settings (``DEMO_RL_SETTINGS``, shared by MORLHF and Soups); ``overrides`` win."""
    return demo_rl_config(MORLHFConfig, world, output_dir, **overrides)


def train_on_demo(
    world: Any,
    output_dir: Path,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Train the MORLHF grid on the demo world; ``overrides`` set config fields (e.g. grid_points, max_steps)."""
    config = demo_config(world, Path(output_dir), **overrides)
    return train_morlhf(config, world.objectives, world_prompts(world), progress, callbacks=callbacks)
