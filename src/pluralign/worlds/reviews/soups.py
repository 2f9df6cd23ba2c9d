"""Rewarded Soups on the demo world: one short RLOO run per objective from the world's SFT model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.methods.soups.config import SoupsConfig
from pluralign.methods.soups.trainer import train_soups
from pluralign.worlds.reviews.rl import demo_rl_config, world_prompts


def demo_config(world: Any, output_dir: Path, **overrides: Any) -> SoupsConfig:
    """The demo's settings (``DEMO_RL_SETTINGS``, shared by MORLHF and Soups); ``overrides`` win."""
    return demo_rl_config(SoupsConfig, world, output_dir, **overrides)


def train_on_demo(
    world: Any,
    output_dir: Path,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Train one policy per demo objective; ``overrides`` set config fields (e.g. max_steps)."""
    config = demo_config(world, Path(output_dir), **overrides)
    return train_soups(config, world.objectives, world_prompts(world), progress, callbacks=callbacks)
