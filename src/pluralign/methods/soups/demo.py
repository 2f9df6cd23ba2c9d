"""Rewarded Soups on the demo world: one short RLOO run per objective from the world's SFT model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.methods.soups.config import SoupsConfig
from pluralign.methods.soups.train import train_soups
from pluralign.rl import DEMO_RL_SETTINGS, unique_prompts


def demo_config(world: Any, output_dir: Path, **overrides: Any) -> SoupsConfig:
    """The demo's settings (``DEMO_RL_SETTINGS``, the same as MORLHF's); ``overrides`` win."""
    settings = {
        **DEMO_RL_SETTINGS,
        "max_completion_length": int(world.generation_kwargs.get("max_new_tokens", 32)),
        **overrides,
    }
    return SoupsConfig(output_dir=str(output_dir), model_name_or_path=world.base_model, **settings)


def train_on_demo(
    world: Any,
    output_dir: Path,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Train one policy per demo objective; ``overrides`` set config fields (e.g. max_steps)."""
    config = demo_config(world, Path(output_dir), **overrides)
    prompts = unique_prompts([s["prompt"] for s in world.train])
    return train_soups(config, world.objectives, prompts, progress, callbacks=callbacks)
