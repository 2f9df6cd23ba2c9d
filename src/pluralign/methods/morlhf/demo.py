"""MORLHF on the demo world: one short RLOO run per grid point from the world's SFT model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.methods.morlhf.config import MORLHFConfig
from pluralign.methods.morlhf.train import train_morlhf
from pluralign.rl import DEMO_RL_SETTINGS, unique_prompts


def demo_config(world: Any, output_dir: Path, **overrides: Any) -> MORLHFConfig:
    """The demo's settings (``DEMO_RL_SETTINGS``, the world's completion length); ``overrides`` win."""
    settings = {
        **DEMO_RL_SETTINGS,
        "max_completion_length": int(world.generation_kwargs.get("max_new_tokens", 32)),
        **overrides,
    }
    return MORLHFConfig(output_dir=str(output_dir), model_name_or_path=world.base_model, **settings)


def train_on_demo(
    world: Any,
    output_dir: Path,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Train the MORLHF grid on the demo world; ``overrides`` set config fields (e.g. grid_points, max_steps)."""
    config = demo_config(world, Path(output_dir), **overrides)
    prompts = unique_prompts([s["prompt"] for s in world.train])
    return train_morlhf(config, world.objectives, prompts, progress, callbacks=callbacks)
